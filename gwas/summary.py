"""Per-phenotype run summary: sample count, lambda_GC, genome-wide hits, and the effective number of
independent phenotypes (Li & Ji 2005) for a study-wide threshold 5e-8 / P_eff.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import special

from genetics.atomic import atomic_path

GENOME_WIDE = 5e-8
# Median of the chi-square(1) distribution.
CHI2_MEDIAN = float(special.chdtri(1, 0.5))


def effective_number_of_phenotypes(phenotypes: np.ndarray) -> float:
    """Li & Ji (2005) effective number of tests from the phenotype correlation matrix.

    Args:
        phenotypes: (N, P) with NaN; correlations use the samples complete for every phenotype, or
            pairwise-complete samples when fewer than 10 are.

    Returns:
        P_eff = Σ_i [1(|λ_i| ≥ 1) + (|λ_i| − floor(|λ_i|))] over eigenvalues λ of the correlation matrix.
    """
    if phenotypes.shape[1] == 1:
        return 1.0
    complete = ~np.isnan(phenotypes).any(axis=1)
    if complete.sum() >= 10:
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.nan_to_num(np.corrcoef(phenotypes[complete], rowvar=False))
    else:
        correlation = pd.DataFrame(phenotypes).corr().fillna(0.0).to_numpy()
    np.fill_diagonal(correlation, 1.0)
    eigenvalues = np.abs(np.linalg.eigvalsh(correlation))
    return float(np.sum((eigenvalues >= 1) + (eigenvalues - np.floor(eigenvalues))))


def lambda_gc(log10_p: np.ndarray) -> float:
    """Genomic inflation: median chi-square(1) quantile of the P values / its null median (NaN ignored)."""
    values = log10_p[np.isfinite(log10_p)]
    if values.size == 0:
        return float("nan")
    median_p = 10.0 ** (-float(np.median(values)))
    return float(special.chdtri(1, median_p) / CHI2_MEDIAN)


def summarize(
    phenotype_names: list[str],
    sample_counts: list[int],
    log10_p: np.ndarray,
    p_eff: float,
    skipped: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per phenotype: n, variants tested, lambda_GC, hits below 5e-8 and 5e-8/P_eff, best LOG10_P.

    Args:
        log10_p: (P, M) LOG10_P of each phenotype over the tested variants (NaN = not testable).
    """
    study_wide = -np.log10(GENOME_WIDE / max(p_eff, 1.0))
    rows = []
    for j, name in enumerate(phenotype_names):
        values = np.asarray(log10_p[j], dtype=np.float64)
        finite = values[np.isfinite(values)]
        rows.append(
            {
                "phenotype": name,
                "status": "ok",
                "n": sample_counts[j],
                "n_variants": int(finite.size),
                "lambda_gc": lambda_gc(values),
                "n_p_below_5e-8": int((finite > -np.log10(GENOME_WIDE)).sum()),
                "n_p_below_5e-8_over_p_eff": int((finite > study_wide).sum()),
                "max_log10_p": float(finite.max()) if finite.size else float("nan"),
                "p_eff": p_eff,
            }
        )
    for name, reason in (skipped or {}).items():
        rows.append({"phenotype": name, "status": f"skipped: {reason}", "p_eff": p_eff})
    return pd.DataFrame(rows)


def write_summary(summary: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write summary.tsv atomically (tab-separated, NA for missing)."""
    with atomic_path(target) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")
