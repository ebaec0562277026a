"""``run_gwas``: files in, every GWAS output out (the library form of ``contig gwas``).

Order: QC → phenotype preparation (optional PCA / covariate residualization / inverse-normal) → chunked
association → sumstats.parquet → summary.tsv → optional plink2/GWAS-SSF files → loci.tsv → plots.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from genetics._atomic import atomic_write_text
from genetics.plink import PlinkFileset
from gwas.runner import GwasOptions, GwasRun, prepare, run_chunks
from gwas.sumstats import write_gwas_ssf, write_plink2_glm
from gwas.summary import effective_number_of_phenotypes, summarize, write_summary

OUTPUT_FORMATS = ("plink2", "gwas-ssf")


@dataclass
class ClumpSettings:
    """plink --clump thresholds; ``enabled=False`` skips loci."""

    enabled: bool = True
    p1: float = 5e-8
    p2: float = 1e-2
    r2: float = 0.1
    kb: float = 250.0


@dataclass
class GwasOutputs:
    """What a finished ``run_gwas`` wrote."""

    run: GwasRun
    summary: pd.DataFrame
    loci: pd.DataFrame | None
    files: dict[str, Path] = field(default_factory=dict)


def _phenotype_frame(sumstats: Path, phenotype: str) -> pd.DataFrame:
    dataset = ds.dataset(sumstats, format="parquet")
    return dataset.to_table(filter=ds.field("phenotype") == phenotype).to_pandas()


def run_gwas(
    bfile: str | os.PathLike | PlinkFileset,
    pheno: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    covar: str | os.PathLike | pd.DataFrame | None = None,
    options: GwasOptions | None = None,
    variants: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
    formats: tuple[str, ...] = (),
    clump: ClumpSettings | None = None,
    plots: bool = True,
    max_plots: int = 8,
) -> GwasOutputs:
    """Run a feature GWAS and write ``OUT/sumstats.parquet``, ``summary.tsv``, ``loci.tsv`` and plots.

    Args:
        bfile: PLINK prefix or an open :class:`PlinkFileset`.
        pheno: phenotype file or DataFrame with IID (and FID) and one column per phenotype.
        covar: covariate file or DataFrame (categorical columns are expanded to indicators).
        variants: (M,) .bim rows to test (after QC); default all.
        sample_mask: (N,) .fam samples allowed (after QC); default all.
        formats: extra per-phenotype outputs, any of ``plink2`` and ``gwas-ssf``.
        max_plots: Manhattan/QQ plots for at most this many phenotypes (those with the strongest signal),
            plus one combined Manhattan plot of the smallest P per variant over all phenotypes.
    """
    unknown = set(formats) - set(OUTPUT_FORMATS)
    if unknown:
        raise ValueError(f"unknown output format(s) {sorted(unknown)}; choose from {OUTPUT_FORMATS}")
    started = time.perf_counter()
    options = options or GwasOptions()
    clump = clump or ClumpSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fileset = bfile if isinstance(bfile, PlinkFileset) else PlinkFileset(bfile)
    prepared = prepare(fileset, pheno, covar, options, variants, sample_mask)
    run = run_chunks(prepared, out, options)

    sample_counts = [0] * len(prepared.phenotype_names)
    for group in prepared.groups:
        for j in group.phenotypes:
            sample_counts[j] = int(group.samples.size)
    residual_phenotypes = np.full((fileset.n_samples, len(prepared.phenotype_names)), np.nan)
    for group, y in zip(prepared.groups, prepared.residuals, strict=True):
        residual_phenotypes[np.ix_(group.samples, group.phenotypes)] = y
    p_eff = effective_number_of_phenotypes(residual_phenotypes)
    summary = summarize(prepared.phenotype_names, sample_counts, run.log10_p, p_eff, prepared.skipped)
    files = {"sumstats": run.sumstats, "summary": out / "summary.tsv"}
    write_summary(summary, files["summary"])

    for name in prepared.phenotype_names if formats else []:
        frame = _phenotype_frame(run.sumstats, name)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        if "plink2" in formats:
            write_plink2_glm(frame, out / f"{safe}.glm.linear")
        if "gwas-ssf" in formats:
            write_gwas_ssf(frame, out / f"{safe}.gwas-ssf.tsv")

    loci = None
    if clump.enabled:
        from gwas.loci import find_loci

        loci = find_loci(run, fileset, clump)
        files["loci"] = out / "loci.tsv"
    if plots:
        from gwas.report_plots import plot_run

        files.update(plot_run(run, fileset, summary, out, max_plots))

    seconds = time.perf_counter() - started
    n_tests = int(run.variants.size) * len(prepared.phenotype_names)
    record = {
        "options": asdict(options),
        "formats": list(formats),
        "clump": asdict(clump),
        "n_samples_used": prepared.n_samples_used,
        "n_variants": int(run.variants.size),
        "n_phenotypes": len(prepared.phenotype_names),
        "seconds": seconds,
        "variants_per_second": run.variants.size / max(run.seconds, 1e-9),
        "tests_per_second": n_tests / max(run.seconds, 1e-9),
    }
    atomic_write_text(out / "run.json", json.dumps(record, indent=2, default=str))
    return GwasOutputs(run, summary, loci, files)
