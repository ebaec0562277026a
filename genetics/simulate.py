"""A small, fast genotype simulator with LD blocks, for tests, benchmarks and the interim demo.

Haplotypes are thresholded Gaussian AR(1) processes along each chromosome (correlation ``rho`` between
neighbouring variants, reset at block boundaries), so LD decays with distance inside blocks and is absent
between blocks. Allele frequencies follow a U-shaped Beta(0.8, 0.8) spectrum folded to [maf_min, 0.5].
This is not a population-genetic model (a coalescent simulator is planned for the synthetic biobank).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass
class SimulatedGenotypes:
    """Genotypes (n × m float64 ALT dosage, NaN = missing) with their .bim/.fam tables."""

    dosage: np.ndarray
    bim: pd.DataFrame
    fam: pd.DataFrame


def simulate_genotypes(
    n_samples: int,
    n_variants: int,
    n_chromosomes: int = 2,
    block_size: int = 50,
    rho: float = 0.95,
    maf_min: float = 0.01,
    missing_rate: float = 0.01,
    spacing_bp: int = 2_000,
    seed: int = 0,
) -> SimulatedGenotypes:
    """Simulate hard-call genotypes in LD blocks.

    Returns:
        :class:`SimulatedGenotypes` with dosage (n_samples × n_variants).
    """
    rng = np.random.default_rng(seed)
    maf = np.clip(rng.beta(0.8, 0.8, n_variants) / 2, maf_min, 0.5)
    thresholds = stats.norm.ppf(maf)
    haplotypes = np.empty((2 * n_samples, n_variants), dtype=np.float64)
    noise_scale = np.sqrt(1 - rho**2)
    latent = rng.standard_normal(2 * n_samples)
    for j in range(n_variants):
        if j % block_size == 0:
            latent = rng.standard_normal(2 * n_samples)
        else:
            latent = rho * latent + noise_scale * rng.standard_normal(2 * n_samples)
        haplotypes[:, j] = latent < thresholds[j]
    dosage = haplotypes[0::2] + haplotypes[1::2]
    dosage[rng.random(dosage.shape) < missing_rate] = np.nan
    chrom = np.minimum(np.arange(n_variants) * n_chromosomes // n_variants + 1, n_chromosomes)
    pos = np.zeros(n_variants, dtype=np.int64)
    for c in range(1, n_chromosomes + 1):
        where = np.flatnonzero(chrom == c)
        pos[where] = np.cumsum(rng.integers(spacing_bp // 2, 3 * spacing_bp // 2, where.size))
    alleles = np.array(list("ACGT"))
    alt = rng.integers(0, 4, n_variants)
    ref = (alt + rng.integers(1, 4, n_variants)) % 4
    bim = pd.DataFrame(
        {
            "CHROM": chrom.astype(str),
            "ID": [f"{c}:{p}" for c, p in zip(chrom, pos, strict=True)],
            "CM": 0.0,
            "POS": pos,
            "ALT": alleles[alt],
            "REF": alleles[ref],
        }
    )
    iids = [f"P{i:06d}" for i in range(n_samples)]
    fam = pd.DataFrame({"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "SEX": 0, "PHENO": "-9"})
    return SimulatedGenotypes(dosage, bim, fam)
