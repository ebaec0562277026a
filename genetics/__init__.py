"""genetics: genotype files (.bed, .pgen, BGEN), QC, LD, and the three genetic modalities (SNP, PGS,
burden) with their encoders. Imports only third-party packages (a leaf of the dependency graph).

Names are re-exported lazily, so ``import genetics.plink`` stays fast (torch loads only for encoders).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PlinkFileset": "genetics.plink",
    "write_plink": "genetics.plink",
    "PgenFileset": "genetics.pgen",
    "BgenFileset": "genetics.bgen",
    "open_genotypes": "genetics.genotypes",
    "read_sample_table": "genetics.samples",
    "match_samples": "genetics.samples",
    "QCConfig": "genetics.qc",
    "QCResult": "genetics.qc",
    "apply_qc": "genetics.qc",
    "hwe_pvalue": "genetics.hwe",
    "indep_pairwise": "genetics.ld",
    "r2_matrix": "genetics.ld",
    "read_scoring_file": "genetics.pgs_catalog",
    "score_pgs": ("genetics.pgs", "score"),
    "compute_burdens": "genetics.burden",
    "write_burdens": "genetics.burden",
    "SnpMatrix": "genetics.snp_modality",
    "create_encoder": "genetics.encoders",
    "list_encoders": "genetics.encoders",
    "register_encoder": "genetics.encoders",
    "GeneticRecord": "genetics.record",
    "GeneticsError": "genetics.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'genetics' has no attribute {name!r}")
    target = _EXPORTS[name]
    module, attribute = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(module), attribute)
