"""Typed errors raised by the genetics package.

Every message names the file (and line or ID where there is one) and says what to do.
"""

from __future__ import annotations


class GeneticsError(Exception):
    """Base class of every error the genetics package raises on bad input."""


class PlinkFormatError(GeneticsError):
    """A PLINK .bed/.bim/.fam file is malformed or inconsistent with its siblings."""


class SampleMismatchError(GeneticsError):
    """Sample IDs between two tables do not match, are duplicated, or would be reordered silently."""


class TableFormatError(GeneticsError):
    """A phenotype, covariate, ID-list or other tabular input cannot be parsed."""


class GenotypeFormatError(PlinkFormatError):
    """A plink2 .pgen/.pvar/.psam or BGEN/.sample file is malformed or inconsistent with its siblings."""
