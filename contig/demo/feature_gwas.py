"""The demo's feature GWAS: embeddings → PCA → covariate residuals → inverse-normal → GWAS → loci vs truth.

Planted loci are the major causal variants of the traits that the image renderer draws (``truth.json``:
traits whose ``image`` is set). A locus recovers a planted variant when the variant lies inside the
locus span widened by ``window_bp``; a locus that recovers none is counted as false (it may still sit
near a small polygenic effect, which the count does not credit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gwas.pipeline import ClumpSettings, run_gwas
from gwas.prepare import inverse_normal_transform, pca, residualize
from gwas.runner import GwasOptions

COVARIATES = ("age", "sex", *(f"PC{i}" for i in range(1, 11)))


@dataclass
class FeatureGwasResult:
    """Loci comparison, the GWAS summary table and the output folder of one method's features."""

    loci: dict
    summary: pd.DataFrame
    folder: Path
    explained_variance: list[float]


def planted_variants(truth: dict) -> list[dict]:
    """Major causal variants of image-rendered traits: ``trait ID CHROM POS``."""
    return [
        {"trait": trait, "ID": v["ID"], "CHROM": str(v["CHROM"]), "POS": int(v["POS"])}
        for trait, spec in truth["traits"].items()
        if spec.get("image")
        for v in spec.get("major_variants", [])
    ]


def compare_loci(loci: pd.DataFrame, planted: list[dict], window_bp: int = 250_000) -> dict:
    """Which planted variants a locus covers, and how many loci cover none."""
    recovered, used = [], set()
    for variant in planted:
        for i, locus in loci.iterrows():
            if (
                str(locus["CHROM"]) == variant["CHROM"]
                and locus["START"] - window_bp <= variant["POS"] <= locus["END"] + window_bp
            ):
                recovered.append(variant["ID"])
                used.add(i)
                break
    return {
        "planted": len(planted),
        "recovered": len(recovered),
        "false": int(len(loci) - len(used)),
        "recovered_ids": recovered,
        "planted_ids": [v["ID"] for v in planted],
        "window_bp": window_bp,
    }


def phenotypes_from_features(
    features: pd.DataFrame, covariates: pd.DataFrame, k: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """IID + ``PC_1..k`` of the (standardised) features, residualised on the covariates, rank-INT.

    Returns the phenotype table and the PCs' explained-variance ratios.
    """
    table = features.merge(covariates, on="IID", how="inner", validate="one_to_one")
    values = table.filter(like="feat_").to_numpy(np.float64)
    values = values[:, values.std(axis=0) > 0]
    result = pca(values, min(k, values.shape[1]), scale=True)
    design = table[list(COVARIATES)].assign(sex=(table["sex"] == "M").astype(float)).to_numpy(np.float64)
    phenotypes = inverse_normal_transform(residualize(result.scores, design))
    frame = pd.DataFrame(phenotypes, columns=[f"PC_{i + 1}" for i in range(phenotypes.shape[1])])
    frame.insert(0, "IID", table["IID"].to_numpy())
    return frame, result.explained_variance_ratio


def feature_gwas(
    features: pd.DataFrame,
    biobank: Path,
    out: Path,
    truth: dict,
    k: int,
    p_threshold: float = 5e-8,
    progress: bool = False,
) -> FeatureGwasResult:
    """GWAS of the first ``k`` PCs of per-person ``features`` (IID + feat_*) of genotyped people."""
    covariates = pd.read_parquet(biobank / "covariates.parquet").astype({"IID": str})
    covariates = covariates.dropna(subset=list(COVARIATES))  # people without genotypes have no PCs
    phenotypes, explained = phenotypes_from_features(features, covariates, k)
    outputs = run_gwas(
        biobank / "genotypes",
        phenotypes,
        out,
        covar=covariates[["IID", *COVARIATES]],
        options=GwasOptions(progress=progress),
        clump=ClumpSettings(p1=p_threshold, p2=1e-4, r2=0.1, kb=250),
        max_plots=2,
    )
    loci = outputs.loci if outputs.loci is not None else pd.DataFrame(columns=["CHROM", "START", "END"])
    comparison = compare_loci(loci, planted_variants(truth))
    comparison["n_people"] = int(len(phenotypes))
    return FeatureGwasResult(comparison, outputs.summary, out, [float(v) for v in explained])
