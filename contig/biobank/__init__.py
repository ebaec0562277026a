"""The built-in synthetic biobank with planted truth: ``simulate_biobank(out, BiobankConfig())``.

One module per concept, in the order a simulation runs them:

- ``traits``: the genetic architecture of the latent image traits (specs, calibration, effects);
- ``genotypes``: coalescent genotypes to PLINK files, PGS scoring files, burden inputs;
- ``images``: fundus photographs or brain MRI rendered from the traits;
- ``truth``: ``truth.json`` and ``truth/`` (causal variants, genes, heritabilities, latent traits);
- ``simulate``: the whole folder, ``BiobankConfig`` and ``simulate_biobank``.

Layout of the folder and the source of every default: docs/synthetic_biobank.md.
"""

from contig.biobank.simulate import BiobankConfig, BiobankSummary, simulate_biobank

__all__ = ["BiobankConfig", "BiobankSummary", "simulate_biobank"]
