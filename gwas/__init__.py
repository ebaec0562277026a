"""gwas: phenotype preparation, the regression kernel, the chunked runner, summary statistics, loci and
plots. Imports ``genetics`` and third-party packages only.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run_gwas": "gwas.pipeline",
    "ClumpConfig": "gwas.pipeline",
    "GwasConfig": "gwas.runner",
    "associate_chunk": "gwas.kernel",
    "covariate_basis": "gwas.kernel",
    "t_test_pvalues": "gwas.pvalues",
    "pca": "gwas.prepare",
    "residualize": "gwas.prepare",
    "inverse_normal_transform": "gwas.prepare",
    "clump": "gwas.clump",
    "clump_all": "gwas.clump",
    "merge_loci": "gwas.clump",
    "manhattan": "gwas.plots",
    "qq": "gwas.plots",
    "lambda_gc": "gwas.summary",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gwas' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
