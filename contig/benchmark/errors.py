"""Typed error of the benchmark harness (an ``ImagingError``, so the CLI reports it in one line)."""

from __future__ import annotations

from imaging.errors import ImagingError


class BenchmarkError(ImagingError, ValueError):
    """A benchmark configuration, label table, feature table or encoder source that cannot be used."""
