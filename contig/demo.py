"""``contig demo``: the main job on a built-in synthetic cohort, end to end.

Current scope (until the imaging side lands): simulate genotypes with LD and image-feature-like
phenotypes with planted causal variants → inverse-normal transform → feature GWAS → loci → compare with
the planted truth → ``report.json`` + ``report.html``.
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genetics._atomic import atomic_write_text
from genetics.plink import write_plink
from genetics.simulate import simulate_genotypes
from gwas.pipeline import ClumpSettings, run_gwas
from gwas.prepare import inverse_normal_transform
from gwas.runner import GwasOptions


@dataclass
class DemoSize:
    n_samples: int
    n_variants: int
    n_features: int
    n_traits: int


QUICK = DemoSize(n_samples=1_000, n_variants=4_000, n_features=8, n_traits=3)
FULL = DemoSize(n_samples=3_000, n_variants=20_000, n_features=16, n_traits=4)


def simulate_cohort(folder: Path, size: DemoSize, seed: int = 0) -> dict:
    """Write genotypes, features, covariates and truth.json for a synthetic cohort into ``folder``."""
    rng = np.random.default_rng(seed)
    geno = simulate_genotypes(size.n_samples, size.n_variants, n_chromosomes=4, seed=seed)
    write_plink(folder / "genotypes", geno.dosage, geno.bim, geno.fam)
    filled = np.where(np.isnan(geno.dosage), np.nanmean(geno.dosage, axis=0), geno.dosage)
    maf = np.minimum(np.nanmean(geno.dosage, 0) / 2, 1 - np.nanmean(geno.dosage, 0) / 2)
    candidates = np.flatnonzero(maf > 0.1)
    causal = rng.choice(candidates, size=3 * size.n_traits, replace=False).reshape(size.n_traits, 3)
    age = rng.normal(60, 8, size.n_samples)
    sex = rng.integers(0, 2, size.n_samples)
    traits = np.empty((size.n_samples, size.n_traits))
    for t in range(size.n_traits):
        standardized = (filled[:, causal[t]] - filled[:, causal[t]].mean(0)) / filled[:, causal[t]].std(0)
        genetic = standardized @ np.sqrt(np.full(3, 0.04))  # each causal variant explains 4% of variance
        traits[:, t] = genetic + 0.02 * (age - 60) + 0.3 * sex + rng.normal(0, np.sqrt(0.88), size.n_samples)
    mixing = rng.normal(size=(size.n_traits, size.n_features))
    features = traits @ mixing + rng.normal(0, 0.5, (size.n_samples, size.n_features))
    iids = geno.fam["IID"]
    feature_table = pd.DataFrame(
        {"IID": iids, **{f"feature_{k}": features[:, k] for k in range(size.n_features)}}
    )
    feature_table.to_parquet(folder / "features.parquet")
    pd.DataFrame({"IID": iids, "age": age.round(2), "sex": np.where(sex == 1, "F", "M")}).to_csv(
        folder / "covariates.tsv", sep="\t", index=False
    )
    truth = {
        "causal_variants": [
            {
                "trait": t,
                "ID": geno.bim["ID"].iloc[j],
                "CHROM": geno.bim["CHROM"].iloc[j],
                "POS": int(geno.bim["POS"].iloc[j]),
            }
            for t in range(size.n_traits)
            for j in causal[t]
        ],
        "variance_explained_per_variant": 0.04,
    }
    atomic_write_text(folder / "truth.json", json.dumps(truth, indent=2))
    return truth


def compare_loci(loci: pd.DataFrame, truth: dict, window_bp: int = 250_000) -> dict:
    """Planted variants recovered by a locus (inside START−window … END+window) and loci matching none."""
    planted = truth["causal_variants"]
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
    }


def _embed_png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_report(out: Path, report: dict, images: list[Path]) -> None:
    """Write report.json (every number) and a self-contained report.html."""
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    loci = report["loci"]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in report["timing_seconds"].items()
    )
    figures = "".join(
        f'<figure><img src="data:image/png;base64,{_embed_png(p)}" style="max-width:100%"><figcaption>{html.escape(p.name)}</figcaption></figure>'
        for p in images
        if p.exists()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>contig demo</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}td{{padding:2px 12px}}</style></head><body>
<h1>contig demo report</h1>
<p>{report["cohort"]["n_samples"]} people × {report["cohort"]["n_variants"]} variants, {report["cohort"]["n_features"]} image-feature phenotypes.</p>
<h2>Loci vs planted truth</h2>
<p>planted causal variants: <b>{loci["planted"]}</b>, recovered: <b>{loci["recovered"]}</b>, loci matching no planted variant: <b>{loci["false"]}</b></p>
<h2>Timing (s)</h2><table>{rows}</table>
<h2>Plots</h2>{figures}
</body></html>"""
    atomic_write_text(out / "report.html", page)


def run_demo(out: str | Path, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Run the demo into ``out`` and return the report dictionary."""
    out = Path(out)
    size = QUICK if quick else FULL
    timing = {}
    start = time.perf_counter()
    biobank = out / "biobank"
    biobank.mkdir(parents=True, exist_ok=True)
    truth = simulate_cohort(biobank, size, seed)
    timing["simulate"] = time.perf_counter() - start
    features = pd.read_parquet(biobank / "features.parquet")
    columns = [c for c in features.columns if c != "IID"]
    features[columns] = inverse_normal_transform(features[columns].to_numpy(dtype=np.float64))
    start = time.perf_counter()
    outputs = run_gwas(
        biobank / "genotypes",
        features,
        out / "gwas",
        covar=biobank / "covariates.tsv",
        options=GwasOptions(progress=progress),
        clump=ClumpSettings(p1=5e-8, p2=1e-4, r2=0.1, kb=250),
    )
    timing["gwas"] = time.perf_counter() - start
    loci = outputs.loci if outputs.loci is not None else pd.DataFrame(columns=["CHROM", "START", "END"])
    report = {
        "cohort": {"n_samples": size.n_samples, "n_variants": size.n_variants, "n_features": size.n_features},
        "loci": compare_loci(loci, truth),
        "gwas_summary": outputs.summary.to_dict(orient="records"),
        "timing_seconds": {k: round(v, 2) for k, v in timing.items()},
    }
    images = sorted((out / "gwas").glob("manhattan_*.png"))[:2] + sorted((out / "gwas").glob("qq_*.png"))[:1]
    write_report(out, report, images)
    return report
