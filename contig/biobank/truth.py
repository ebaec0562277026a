"""truth.json of the synthetic biobank: the planted architecture and what was realized in this cohort."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from contig.biobank.genotypes import MASKS, WrittenGenotypes, streamed_chunk
from contig.biobank.images import MRI_CONTRASTS
from contig.biobank.traits import Architecture
from genetics.coalescent import CoalescentCohorts
from genetics.pgs import score

if TYPE_CHECKING:
    from contig.biobank.simulate import BiobankConfig

FORMAT = "contig-synthetic-biobank/1"
MASK_CLASSES = {
    "fundus": ["background", "optic_disc", "vessel", "lesion"],
    "mri3d": ["background", "csf", "grey_matter", "white_matter", "lesion"],
}


def _round(value: float, digits: int = 6) -> float:
    return float(np.round(value, digits))


def _pgs_accuracy(out: Path, pgs: pd.DataFrame, traits: pd.DataFrame) -> dict[str, float | None]:
    """Correlation of each PGS (scored on the written genotypes) with its latent trait, genotyped people only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = score(
            out / "genotypes", [out / f for f in pgs["file"]], chunk_size=streamed_chunk(len(traits))
        )
    merged = result.scores.merge(traits, on="IID", how="left", validate="1:1")
    accuracy = {}
    for row in pgs.itertuples():
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(merged[f"{row.pgs_id}_SUM"], merged[row.trait])[0, 1]
        accuracy[row.pgs_id] = _round(r, 4) if np.isfinite(r) else None  # None: constant score
    return accuracy


def _trait_entry(
    spec,
    k: int,
    architecture: Architecture,
    g: np.ndarray,
    base: np.ndarray,
    image: str | None,
    pgs_id: str | None,
) -> dict:
    effects = architecture.effects[architecture.effects["trait"] == spec.name]
    major = effects[effects["component"] == "major"]
    var_g, var_e = np.var(g[:, k]), np.var(base[:, k] - g[:, k])
    return {
        "image": image,
        "architecture": spec.architecture,
        "source": spec.source,
        "h2_expected": _round(architecture.genetic_variance()[k]),
        "h2_realized": _round(var_g / (var_g + var_e)),
        "major_variants": [
            {
                "ID": r.ID,
                "CHROM": r.CHROM,
                "POS": int(r.POS),
                "effect_allele": r.effect_allele,
                "AF": _round(r.AF),
                "beta": _round(r.beta),
                "variance_explained": _round(r.variance),
            }
            for r in major.itertuples()
        ],
        "polygenic": {
            "h2": spec.polygenic_h2,
            "n_variants": int((effects["component"] == "polygenic").sum()),
        },
        "burden": {
            "genes": architecture.genes.loc[architecture.genes["trait"] == spec.name, "GENE"].tolist(),
            "plof_effect": spec.plof_effect,
            "missense_effect": spec.missense_effect,
            "n_causal_variants": int((effects["component"] == "burden").sum()),
            "variance_expected": _round(effects.loc[effects["component"] == "burden", "variance"].sum()),
        },
        "age_effect_per_year": spec.age_effect,
        "sex_effect_male": spec.sex_effect,
        "pgs_id": pgs_id,
    }


def truth_document(
    config: BiobankConfig,
    architecture: Architecture,
    cohorts: CoalescentCohorts,
    people: pd.DataFrame,
    written: WrittenGenotypes,
    g_target: np.ndarray,
    base: np.ndarray,
    pgs: pd.DataFrame,
    burden_counts: dict[str, int],
    out: Path,
    labels: dict[str, tuple[str, tuple[float, ...]]],
    table: pd.DataFrame,
    fractions: np.ndarray,
    traits: pd.DataFrame,
) -> dict:
    """Everything planted (causal variants, genes, effects, heritabilities, trait → image mapping) and realized.

    Args:
        g_target, base: (N, T) genetic values and covariate-adjusted traits (G + E) of the cohort.
        labels: downstream label name → (source trait, class frequencies).
        table: downstream labels (one row per image); fractions: (images, classes) mask class fractions.
        traits: truth/traits.parquet (IID, traits with covariates), against which PGS accuracy is measured.
    """
    kind = config.image_kind
    renderer = "render_fundus" if kind == "fundus" else "render_mri"
    image_names = {s.name for s in config.traits}
    pgs_by_trait = dict(zip(pgs["trait"], pgs["pgs_id"], strict=True))
    accuracy = _pgs_accuracy(out, pgs, traits)
    pairs = cohorts.pedigree.pairs
    iids = people["IID"].to_numpy()
    source = cohorts.variants["source"].to_numpy()[written.rows]
    return {
        "format": FORMAT,
        "seed": config.seed,
        "image_kind": kind,
        "trait_definition": "trait = G + E + age_effect*(age - mean age) + sex_effect*(male - P(male)); "
        "Var(G) + Var(E) = 1, so h2 = Var(G) of the covariate-adjusted trait; truth/traits.parquet holds the "
        "traits at the first image's age and g_<trait> = G; betas are per ALT (derived) allele.",
        "cohort": {
            "n_individuals": len(people),
            "n_images": len(table),
            "n_genotyped": int(people["genotyped"].sum()),
            "n_burden": int(people["burden"].sum()),
            "n_discovery": cohorts.n_discovery,
            "related_pairs": [
                {"IID1": iids[r.row1], "IID2": iids[r.row2], "relationship": r.relationship}
                for r in pairs.itertuples()
            ],
        },
        "genotypes": {
            "n_variants": len(written.bim),
            "n_array": int((source == "array").sum()),
            "n_exome": int((source == "exome").sum()),
            "missing_call_fraction": _round(written.n_missing / max(written.n_calls, 1)),
            "allele_coding": "ALT (.bim column 5) = derived allele, REF = ancestral allele",
        },
        "traits": {
            spec.name: _trait_entry(
                spec,
                k,
                architecture,
                g_target,
                base,
                f"{renderer}:{spec.name}" if spec.name in image_names else None,
                pgs_by_trait.get(spec.name),
            )
            for k, spec in enumerate(architecture.specs)
        },
        "pgs": [
            {**row._asdict(), "r_with_trait": accuracy[row.pgs_id]} for row in pgs.itertuples(index=False)
        ],
        "burden": {"masks": {name: list(a) for name, a in MASKS}, "annotation_counts": burden_counts},
        "downstream": {
            name: {
                "trait": trait,
                "class_frequencies": list(prevalence),
                "visible_share_of_liability": config.grade_visible,
                "counts": np.bincount(table[name], minlength=len(prevalence)).tolist(),
            }
            for name, (trait, prevalence) in labels.items()
        }
        | {
            "mask_classes": MASK_CLASSES[kind],
            "mean_mask_fractions": np.round(fractions.mean(axis=0), 4).tolist(),
            "split_fractions": list(config.split_fractions),
            "contrasts": list(MRI_CONTRASTS) if kind == "mri3d" else None,
        },
        "config": _config_dict(config),
    }


def _config_dict(config: BiobankConfig) -> dict:
    values = asdict(config)
    values.pop("progress", None)
    return values
