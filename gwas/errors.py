"""Typed errors of the gwas package; messages name the file/column/ID and what to do."""

from __future__ import annotations

from genetics.errors import GeneticsError


class GwasInputError(GeneticsError):
    """Phenotype or covariate input that cannot be analysed (NaN-only, non-numeric, collinear...)."""


class CollinearCovariatesError(GwasInputError):
    """The covariate design matrix is rank-deficient."""
