"""``run_gwas``: files in, every GWAS output out; ``contig gwas`` is a thin caller of it.

Order: QC → phenotype preparation (optional PCA / covariate residualization / inverse-normal) → chunked
association → sumstats.parquet → summary.tsv → optional plink2/GWAS-SSF files → loci.tsv → plots.

One call reproduces the command::

    from genetics.qc import QCConfig
    from gwas.pipeline import PreparationConfig, run_gwas
    from gwas.runner import GwasConfig
    run_gwas("geno", "features.parquet", "gwas-out", covar="covar.tsv", options=GwasConfig(threads=2),
             qc=QCConfig(maf=0.01, hwe=1e-10), preparation=PreparationConfig(pca_components=16))
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from genetics.atomic import atomic_write_text
from genetics.genotypes import open_genotypes
from genetics.plink import PlinkFileset
from genetics.qc import QCConfig, apply_qc
from gwas.clump import clump_all, merge_loci, write_loci
from gwas.phenotypes import load_covariates, load_phenotypes
from gwas.plots import ManhattanPlotter, PngWriter, QQPlotter
from gwas.runner import GwasConfig, GwasRun, prepare, run_chunks
from gwas.summary import effective_number_of_phenotypes, summarize, write_summary
from gwas.sumstats import write_gwas_ssf, write_plink2_glm

OUTPUT_FORMATS = ("plink2", "gwas-ssf")


@dataclass
class ClumpConfig:
    """plink --clump thresholds; ``enabled=False`` skips loci."""

    enabled: bool = True
    p1: float = 5e-8
    p2: float = 1e-2
    r2: float = 0.1
    kb: float = 250.0


@dataclass
class PreparationConfig:
    """Optional phenotype preparation before testing, applied in this order (``contig gwas --pheno-pca K
    --pheno-residualize --pheno-quantile-normalize``)."""

    pca_components: int | None = None
    residualize_covariates: bool = False
    quantile_normalize: bool = False
    standardize: bool = False  # divide each phenotype by its SD before the PCA (features on other scales)


@dataclass
class GwasOutputs:
    """What a finished ``run_gwas`` wrote; ``qc_report`` counts what QC removed (empty without QC)."""

    run: GwasRun
    summary: pd.DataFrame
    loci: pd.DataFrame | None
    files: dict[str, Path] = field(default_factory=dict)
    qc_report: dict[str, int] = field(default_factory=dict)
    pca_explained: list[float] = field(default_factory=list)  # variance ratio per phenotype PC, if any


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def prepare_phenotype_table(
    fileset: PlinkFileset,
    pheno: str | os.PathLike | pd.DataFrame,
    covar: str | os.PathLike | pd.DataFrame | None,
    options: GwasConfig,
    preparation: PreparationConfig,
) -> tuple[str | os.PathLike | pd.DataFrame, list[float]]:
    """Apply the optional phenotype preparation steps (PCA → covariate residualization → inverse-normal).

    Returns ``pheno`` unchanged when no step is asked for, else a table (FID, IID, one column per prepared
    phenotype) over the .fam samples, ready for :func:`run_gwas`; and the PCs' explained-variance
    ratios (empty without PCA).
    """
    steps = preparation
    if not (steps.pca_components or steps.residualize_covariates or steps.quantile_normalize):
        return pheno, []
    from gwas.prepare import inverse_normal_transform, pca, residualize  # scipy.linalg: ~0.3 s to import

    fam = fileset.fam
    table = pheno if isinstance(pheno, pd.DataFrame) else None
    phen = load_phenotypes(
        "phenotype table" if table is not None else str(pheno), fam, options.pheno_names, table=table
    )
    values, names, explained = phen.values, phen.names, []
    if steps.pca_components:
        result = pca(values, steps.pca_components, scale=steps.standardize)
        values, names = result.scores, [f"PC{i + 1}" for i in range(steps.pca_components)]
        explained = [float(v) for v in result.explained_variance_ratio]
    if steps.residualize_covariates:
        if covar is None:
            raise ValueError("--pheno-residualize needs --covar")
        cov_table = covar if isinstance(covar, pd.DataFrame) else None
        source = "covariate table" if cov_table is not None else str(covar)
        cov = load_covariates(source, fam, options.covar_names, table=cov_table)
        values = residualize(values, cov.values)
    if steps.quantile_normalize:
        values = inverse_normal_transform(values)
    keep = ~np.isnan(values).all(axis=1)
    frame = pd.DataFrame(values[keep], columns=names)
    frame.insert(0, "IID", fam["IID"].to_numpy()[keep])
    frame.insert(0, "FID", fam["FID"].to_numpy()[keep])
    return frame, explained


def find_loci(run: GwasRun, fileset: PlinkFileset, settings: ClumpConfig) -> pd.DataFrame:
    """Clump each phenotype's associations (plink --clump semantics) and merge overlapping clumps into loci."""
    bim = fileset.bim.iloc[run.variants]
    threshold = -np.log10(max(settings.p1, settings.p2))
    parts = []
    for j, name in enumerate(run.phenotype_names):
        row = np.asarray(run.log10_p[j], dtype=np.float64)
        if not np.nanmax(row, initial=-np.inf) >= -np.log10(settings.p1):
            continue
        keep = np.flatnonzero(row >= threshold)
        parts.append(
            pd.DataFrame({"phenotype": name, "ID": bim["ID"].to_numpy()[keep], "LOG10_P": row[keep]})
        )
    if not parts:
        return merge_loci(pd.DataFrame())
    candidates = pd.concat(parts, ignore_index=True)
    candidates["P"] = 10.0 ** (-candidates["LOG10_P"])
    clumps = clump_all(candidates, fileset, p1=settings.p1, p2=settings.p2, r2=settings.r2, kb=settings.kb)
    return merge_loci(clumps)


def plot_run(run: GwasRun, fileset: PlinkFileset, summary: pd.DataFrame, out: Path, max_plots: int) -> dict:
    """Manhattan and QQ PNGs for the ``max_plots`` strongest phenotypes, plus a combined Manhattan plot.

    The plots share their frames and are encoded on a background thread (see :mod:`gwas.plots`).
    """
    bim = fileset.bim.iloc[run.variants]
    manhattans = ManhattanPlotter(
        pd.DataFrame({"CHROM": bim["CHROM"].to_numpy(), "POS": bim["POS"].to_numpy()})
    )
    qqs = QQPlotter()
    files = {}
    tested = summary[summary["status"] == "ok"].sort_values("max_log10_p", ascending=False)
    index = {name: j for j, name in enumerate(run.phenotype_names)}
    with PngWriter() as writer:
        for name in tested["phenotype"].head(max_plots):
            row = np.asarray(run.log10_p[index[name]], dtype=np.float64)
            files[f"manhattan_{name}"] = out / f"manhattan_{_safe(name)}.png"
            manhattans.plot(row, files[f"manhattan_{name}"], f"{name}", writer)
            files[f"qq_{name}"] = out / f"qq_{_safe(name)}.png"
            qqs.plot(row, files[f"qq_{name}"], f"{name}", writer)
        if len(run.phenotype_names) > 1:
            best = np.full(run.variants.size, np.nan)
            for j in range(len(run.phenotype_names)):
                best = np.fmax(best, np.asarray(run.log10_p[j], dtype=np.float64))
            files["manhattan_combined"] = out / "manhattan_combined.png"
            title = f"smallest P over {len(run.phenotype_names)} phenotypes (per variant)"
            manhattans.plot(best, files["manhattan_combined"], title, writer)
    written = {Path(path).name for path in files.values()}
    for stale in [*out.glob("manhattan_*.png"), *out.glob("qq_*.png")]:
        if stale.name not in written:  # an earlier run's plot would read as this run's
            stale.unlink()
    return files


def _phenotype_frame(sumstats: Path, phenotype: str) -> pd.DataFrame:
    dataset = ds.dataset(sumstats, format="parquet")
    return dataset.to_table(filter=ds.field("phenotype") == phenotype).to_pandas()


def run_gwas(
    bfile: str | os.PathLike | PlinkFileset,
    pheno: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    covar: str | os.PathLike | pd.DataFrame | None = None,
    options: GwasConfig | None = None,
    variants: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
    formats: tuple[str, ...] = (),
    clump: ClumpConfig | None = None,
    plots: bool = True,
    max_plots: int = 8,
    *,
    qc: QCConfig | None = None,
    preparation: PreparationConfig | None = None,
    before_writing: Callable[[], None] | None = None,
) -> GwasOutputs:
    """Run a feature GWAS and write ``OUT/sumstats.parquet``, ``summary.tsv``, ``loci.tsv`` and plots.

    Args:
        bfile: a genotype path for :func:`genetics.genotypes.open_genotypes` (PLINK prefix, .pgen) or an
            open reader (:class:`PlinkFileset`, ``PgenFileset``, ``BgenFileset``).
        pheno: phenotype file or DataFrame with IID (and FID) and one column per phenotype.
        covar: covariate file or DataFrame (categorical columns are expanded to indicators).
        variants: (M,) .bim rows to test (after QC); default all.
        sample_mask: (N,) .fam samples allowed (after QC); default all.
        formats: extra per-phenotype outputs, any of ``plink2`` and ``gwas-ssf``.
        max_plots: Manhattan/QQ plots for at most this many phenotypes (those with the strongest signal),
            plus one combined Manhattan plot of the smallest P per variant over all phenotypes.
        qc: plink2-style filters applied first (instead of ``variants`` / ``sample_mask``).
        preparation: phenotype PCA / covariate residualization / inverse-normal before testing.
        before_writing: called once every input is read and checked, before anything is written to ``out``
            (``contig gwas`` clears an ``--overwrite`` folder there, so bad input loses nothing).
    """
    unknown = set(formats) - set(OUTPUT_FORMATS)
    if unknown:
        raise ValueError(f"unknown output format(s) {sorted(unknown)}; choose from {OUTPUT_FORMATS}")
    started = time.perf_counter()
    options = options or GwasConfig()
    clump = clump or ClumpConfig()
    out = Path(out)
    fileset = open_genotypes(bfile) if isinstance(bfile, (str, os.PathLike)) else bfile
    qc_report: dict[str, int] = {}
    if qc is not None:
        if variants is not None or sample_mask is not None:
            raise ValueError("give qc, or variants and sample_mask from your own QC, not both")
        variants, sample_mask, qc_report = _apply_qc(fileset, qc)
    explained: list[float] = []
    if preparation is not None:
        pheno, explained = prepare_phenotype_table(fileset, pheno, covar, options, preparation)
    prepared = prepare(fileset, pheno, covar, options, variants, sample_mask)
    if before_writing is not None:
        before_writing()
    out.mkdir(parents=True, exist_ok=True)
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
        safe = _safe(name)
        if "plink2" in formats:
            write_plink2_glm(frame, out / f"{safe}.glm.linear")
        if "gwas-ssf" in formats:
            write_gwas_ssf(frame, out / f"{safe}.gwas-ssf.tsv")

    loci = None
    if clump.enabled:
        loci = find_loci(run, fileset, clump)
        files["loci"] = out / "loci.tsv"
        write_loci(loci, files["loci"])
    if plots:
        files.update(plot_run(run, fileset, summary, out, max_plots))

    seconds = time.perf_counter() - started
    n_tests = int(run.variants.size) * len(prepared.phenotype_names)
    record = {
        "options": asdict(options),
        "qc": asdict(qc) if qc is not None else None,
        "qc_report": qc_report,
        "preparation": asdict(preparation) if preparation is not None else None,
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
    # Finished: the per-chunk files only served resumption (the LOG10_P map stays readable while open).
    shutil.rmtree(out / "chunks", ignore_errors=True)
    return GwasOutputs(run, summary, loci, files, qc_report, explained)


def _apply_qc(fileset, qc: QCConfig) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(kept variant indices, (N,) bool sample mask, report) of plink2-style QC."""
    result = apply_qc(fileset, qc)
    mask = np.zeros(fileset.n_samples, dtype=bool)
    mask[result.samples] = True
    return result.variants, mask, dict(result.report)
