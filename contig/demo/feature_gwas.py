"""The demo's feature GWAS: features → PCA → covariate residuals → rank-INT → GWAS → loci vs truth.

The preparation and the GWAS are one ``gwas.run_gwas`` call (what ``contig gwas`` runs); this module only
chooses the features and reads the loci against the planted truth.

One protocol (:func:`feature_gwas`) serves every method and the oracle: :func:`oracle_gwas` runs it on
the true rendered image traits of the same people, the ceiling a method's loci are read against.

Planted loci are the major causal variants of the traits that the image renderer draws (``truth.json``:
traits whose ``image`` is set).

Locus matching is one-to-one (:func:`compare_loci`). A locus is placed at its lead variant (``LEAD_POS``
of ``loci.tsv``: the clump index with the smallest P), never at its span. A planted variant and a locus
on the same chromosome can pair when ``|LEAD_POS − POS| ≤ window``; pairs are taken greedily, closest
first (ties: planted order, then locus order), and each locus credits at most one planted variant and
each planted variant at most one locus. The window is ``WINDOW_FRACTION`` (0.45) × the minimum distance
between planted variants (``BiobankConfig.major_spacing``, recorded in ``truth.json``): 90 kb for the
default 200 kb. Strictly below half the spacing, no lead can sit within the window of two planted
variants. A locus that credits nothing is false (it may still sit near a small polygenic effect, which the
count does not credit); a second locus near an already credited variant is false too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gwas.pipeline import ClumpConfig, PreparationConfig, run_gwas
from gwas.runner import GwasConfig

COVARIATES = ("age", "sex", *(f"PC{i}" for i in range(1, 11)))
WINDOW_FRACTION = 0.45  # matching window as a share of the minimum planted spacing (< 0.5)
DEFAULT_SPACING_BP = 200_000  # BiobankConfig.major_spacing, for truth documents that do not record it


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


def match_window(spacing_bp: int) -> int:
    """Matching window (bp) for planted variants at least ``spacing_bp`` apart: strictly below half of it."""
    return int(WINDOW_FRACTION * spacing_bp)


def truth_window(truth: dict) -> int:
    """:func:`match_window` of the planted spacing recorded in ``truth.json`` (200 kb when absent)."""
    return match_window(int(truth.get("config", {}).get("major_spacing", DEFAULT_SPACING_BP)))


def _candidate_pairs(loci: pd.DataFrame, planted: list[dict], window_bp: int) -> list[tuple[int, int, int]]:
    """(distance bp, planted index, locus row) of every same-chromosome pair within the window, sorted."""
    chrom = loci["CHROM"].astype(str).to_numpy()
    lead = loci["LEAD_POS"].to_numpy(np.int64)
    pairs = []
    for v, variant in enumerate(planted):
        distance = np.abs(lead - variant["POS"])
        for row in np.flatnonzero((chrom == variant["CHROM"]) & (distance <= window_bp)):
            pairs.append((int(distance[row]), v, int(row)))
    return sorted(pairs)


def match_loci(loci: pd.DataFrame, planted: list[dict], window_bp: int) -> list[tuple[int, int, int]]:
    """One-to-one matching of planted variants to loci by lead position, closest pairs first.

    Args:
        loci: one row per locus with ``CHROM`` and ``LEAD_POS`` (``gwas.clump.merge_loci`` output).
        planted: ``trait ID CHROM POS`` dicts (:func:`planted_variants`).

    Returns:
        (planted index, locus row (positional), distance bp) per match, in planted order.
    """
    used_variants, used_loci, matches = set(), set(), []
    for distance, v, row in _candidate_pairs(loci, planted, window_bp):
        if v not in used_variants and row not in used_loci:
            used_variants.add(v)
            used_loci.add(row)
            matches.append((v, row, distance))
    return sorted(matches)


def compare_loci(loci: pd.DataFrame, planted: list[dict], window_bp: int) -> dict:
    """Planted variants recovered one-to-one by locus leads, false loci, and the same per trait.

    Returns a JSON-ready dict: ``planted recovered false n_loci`` (counts), ``recovered_ids planted_ids
    false_leads`` (variant IDs), ``window_bp``, ``per_trait`` {trait: {planted, recovered, recovered_ids}}
    and ``matches`` [{ID, trait, LEAD_ID, LEAD_POS, distance_bp}].
    """
    loci = loci.reset_index(drop=True)
    matches = match_loci(loci, planted, window_bp) if len(loci) else []
    credited = {row for _, row, _ in matches}
    recovered = [planted[v] for v, _, _ in matches]
    per_trait: dict[str, dict] = {}
    for variant in planted:
        entry = per_trait.setdefault(variant["trait"], {"planted": 0, "recovered": 0, "recovered_ids": []})
        entry["planted"] += 1
    for variant in recovered:
        per_trait[variant["trait"]]["recovered"] += 1
        per_trait[variant["trait"]]["recovered_ids"].append(variant["ID"])
    leads = loci["LEAD_ID"].astype(str).tolist() if "LEAD_ID" in loci else [str(i) for i in range(len(loci))]
    return {
        "planted": len(planted),
        "recovered": len(recovered),
        "false": len(loci) - len(credited),
        "n_loci": len(loci),
        "recovered_ids": [v["ID"] for v in recovered],
        "planted_ids": [v["ID"] for v in planted],
        "false_leads": [leads[row] for row in range(len(loci)) if row not in credited],
        "window_bp": int(window_bp),
        "per_trait": per_trait,
        "matches": [
            {
                "ID": planted[v]["ID"],
                "trait": planted[v]["trait"],
                "LEAD_ID": leads[row],
                "LEAD_POS": int(loci["LEAD_POS"].iat[row]),
                "distance_bp": distance,
            }
            for v, row, distance in matches
        ],
    }


def feature_gwas(
    features: pd.DataFrame,
    biobank: Path,
    out: Path,
    truth: dict,
    k: int | None,
    p_threshold: float = 5e-8,
    progress: bool = False,
) -> FeatureGwasResult:
    """GWAS of the first ``k`` PCs (``None``: each column) of per-person ``features`` (IID + feat_*).

    The phenotypes are prepared by ``run_gwas`` itself, as ``contig gwas --pheno-pca K
    --pheno-residualize --pheno-quantile-normalize`` would: PCA of the standardised non-constant features
    (``k=None``: the features themselves, named without the prefix), residuals on the covariates, rank-INT.
    Only genotyped people enter; the loci are matched one-to-one to the planted variants
    (:func:`compare_loci`, window from ``truth``). ``loci`` also holds ``n_people`` and ``n_phenotypes``.
    """
    covariates = pd.read_parquet(biobank / "covariates.parquet").astype({"IID": str})
    covariates = covariates.dropna(subset=list(COVARIATES))  # people without genotypes have no PCs
    columns = features.filter(like="feat_")
    varying = [c for c in columns.columns if columns[c].to_numpy(np.float64).std() > 0]
    phenotypes = features[["IID", *varying]].rename(columns=lambda c: c.removeprefix("feat_"))
    phenotypes = phenotypes[phenotypes["IID"].astype(str).isin(set(covariates["IID"]))]
    steps = PreparationConfig(
        pca_components=None if k is None else min(k, len(varying)),
        residualize_covariates=True,
        quantile_normalize=True,
        standardize=True,
    )
    outputs = run_gwas(
        biobank / "genotypes",
        phenotypes,
        out,
        covar=covariates[["IID", *COVARIATES]],
        options=GwasConfig(progress=progress),
        clump=ClumpConfig(p1=p_threshold, p2=max(1e-4, p_threshold), r2=0.1, kb=250),
        max_plots=2,
        preparation=steps,
    )
    loci = outputs.loci if outputs.loci is not None else pd.DataFrame(columns=["CHROM", "LEAD_POS"])
    comparison = compare_loci(loci, planted_variants(truth), truth_window(truth))
    comparison["n_people"] = int(outputs.summary["n"].max())
    comparison["n_phenotypes"] = int(len(outputs.summary))
    return FeatureGwasResult(comparison, outputs.summary, out, outputs.pca_explained)


def image_trait_names(truth: dict) -> list[str]:
    """Traits that the renderer draws (``image`` set in ``truth.json``), in truth order."""
    return [name for name, spec in truth["traits"].items() if spec.get("image")]


def person_image_traits(biobank: Path, people: Iterable[str], truth: dict) -> pd.DataFrame:
    """IID + ``feat_<trait>``: each person's rendered image traits averaged over their images.

    Reads ``truth/image_traits.parquet`` (one row per image, the renderer's inputs); people without an
    image are absent. Returns (people, 1 + image traits), sorted by IID.
    """
    images = pd.read_parquet(biobank / "truth" / "image_traits.parquet").astype({"IID": str})
    names = [n for n in image_trait_names(truth) if n in images.columns]
    wanted = images[images["IID"].isin(set(map(str, people)))]
    means = wanted.groupby("IID", sort=True)[names].mean()
    return means.add_prefix("feat_").reset_index()


def oracle_gwas(
    biobank: Path,
    people: Iterable[str],
    out: Path,
    truth: dict,
    k: int | None,
    p_threshold: float = 5e-8,
    progress: bool = False,
) -> FeatureGwasResult:
    """The ceiling: :func:`feature_gwas` on the true rendered image traits of ``people``.

    Same protocol as a method's features (PCA to min(k, traits) → covariate residuals → rank-INT → GWAS →
    one-to-one matching); ``k=None`` tests each trait directly instead of PCs.
    """
    traits = person_image_traits(biobank, people, truth)
    return feature_gwas(traits, biobank, out, truth, k, p_threshold, progress)
