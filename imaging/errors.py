"""Typed errors of the imaging package; messages name the file and say what to do."""

from __future__ import annotations


class ImagingError(Exception):
    """Base class of every error the imaging package raises on bad input."""


class ImageFormatError(ImagingError):
    """An image or volume file is missing, corrupt, or has an unexpected shape or type."""


class UnknownNameError(ImagingError, KeyError):
    """A registry lookup (encoder, task) for a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
