"""``contig gwas``: feature GWAS from PLINK files, identical to plink2 --glm, with loci and plots."""

from __future__ import annotations

import click

from contig.cli._options import genotype_options, open_genotype_flags, qc_config, qc_options
from contig.cli._out_folder import OVERWRITE_OPTION, begin_out_folder, check_out_folder
from gwas.pipeline import OUTPUT_FORMATS, ClumpConfig, PreparationConfig, run_gwas
from gwas.runner import GwasConfig

EXAMPLES = """\b
Examples:
  contig gwas --bfile geno --pheno features.parquet --covar covar.tsv --out gwas-out
  contig gwas --bfile geno --pheno pheno.txt --pheno-name feat0,feat1 --covar covar.txt \\
      --covar-name age,sex,PC1,PC2 --maf 0.01 --geno 0.05 --hwe 1e-10 --format plink2 --out run1
  contig gwas --bfile geno --pheno features.parquet --pheno-pca 16 --pheno-quantile-normalize \\
      --covar covar.tsv --out gwas-pcs --resume
  contig gwas --bgen ukb_imp_chr1.bgen --sample ukb_imp.sample --bgen-ref ref-first \\
      --pheno features.parquet --covar covar.tsv --out gwas-chr1   # imputed dosages (or --pfile PREFIX)
  contig gwas --bfile /shared/geno --pheno /shared/features.parquet --scheduler tcp://head:8786 \\
      --out /shared/gwas-out        # chunks run on a Dask cluster that sees the same files

\b
Outputs in OUT: sumstats.parquet (phenotype CHROM POS ID REF ALT A1 A1_FREQ OBS_CT BETA SE T_STAT P
LOG10_P ERRCODE), summary.tsv, loci.tsv, manhattan_*.png, qq_*.png, run.json.
"""


def _split(values: tuple[str, ...]) -> list[str] | None:
    names = [name for value in values for name in value.split(",") if name]
    return names or None


@click.command("gwas", epilog=EXAMPLES)
@genotype_options
@click.option(
    "--pheno", required=True, help="Phenotypes: plink-style text with #FID IID header, CSV, TSV or parquet."
)
@click.option("--pheno-name", multiple=True, help="Phenotype columns to test (comma list; default all).")
@click.option("--covar", default=None, help="Covariates file (same formats); text columns become indicators.")
@click.option("--covar-name", multiple=True, help="Covariate columns to use (comma list; default all).")
@click.option("--covar-variance-standardize", is_flag=True, help="Scale covariates to unit variance.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--missing-genotype",
    type=click.Choice(["drop", "mean"]),
    default="drop",
    show_default=True,
    help="drop: per-variant complete cases (plink2); mean: mean-impute missing calls (regenie/Hail).",
)
@qc_options
@click.option(
    "--pheno-pca", type=int, default=None, help="Replace phenotypes by their first K principal components."
)
@click.option(
    "--pheno-residualize", is_flag=True, help="Regress covariates out of phenotypes before testing."
)
@click.option(
    "--pheno-quantile-normalize", is_flag=True, help="Rank-based inverse-normal transform (plink2's)."
)
@click.option(
    "--chunk-size",
    type=int,
    default=2048,
    show_default=True,
    help="Variants per chunk: one parquet row group and one resume journal entry (decoded in blocks of "
    "at most 512 MB, so memory does not grow with it at large N).",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Chunks computed at once, one core each (default: every core this process may use).",
)
@click.option("--format", "formats", multiple=True, type=click.Choice(OUTPUT_FORMATS), help="Extra outputs.")
@click.option("--clump-p1", type=float, default=5e-8, show_default=True, help="Index variant P threshold.")
@click.option("--clump-p2", type=float, default=1e-2, show_default=True, help="Clump member P threshold.")
@click.option("--clump-r2", type=float, default=0.1, show_default=True, help="LD r² threshold for members.")
@click.option("--clump-kb", type=float, default=250.0, show_default=True, help="Clump window (kb).")
@click.option("--no-clump", is_flag=True, help="Skip loci.")
@click.option("--no-plots", is_flag=True, help="Skip Manhattan/QQ plots.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT with the same arguments.")
@OVERWRITE_OPTION
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where the genotype × phenotype products run (float64 on every device).",
)
@click.option("--scheduler", default=None, help="Dask distributed scheduler address (e.g. tcp://host:8786).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(**kw) -> None:
    """Regress phenotypes (e.g. image features) on every variant: OLS on intercept + dosage + covariates."""
    check_out_folder(kw["out"], resume=kw["resume"], overwrite=kw["overwrite"])
    steps = (kw["pheno_pca"], kw["pheno_residualize"], kw["pheno_quantile_normalize"])
    outputs = run_gwas(
        open_genotype_flags(kw),
        kw["pheno"],
        kw["out"],
        covar=kw["covar"],
        options=GwasConfig(
            pheno_names=_split(kw["pheno_name"]),
            covar_names=_split(kw["covar_name"]),
            missing_genotype=kw["missing_genotype"],
            chunk_size=kw["chunk_size"],
            threads=kw["threads"],
            covar_variance_standardize=kw["covar_variance_standardize"],
            resume=kw["resume"],
            progress=not kw["quiet"],
            device=kw["device"],
            scheduler=kw["scheduler"],
        ),
        formats=tuple(kw["formats"]),
        clump=ClumpConfig(not kw["no_clump"], kw["clump_p1"], kw["clump_p2"], kw["clump_r2"], kw["clump_kb"]),
        plots=not kw["no_plots"],
        qc=qc_config(kw),
        preparation=PreparationConfig(*steps) if any(steps) else None,
        before_writing=lambda: begin_out_folder(
            kw["out"], "gwas", resume=kw["resume"], overwrite=kw["overwrite"]
        ),
    )
    if outputs.qc_report:
        click.echo(
            "qc: " + ", ".join(f"{name} {count}" for name, count in outputs.qc_report.items()), err=True
        )
    run = outputs.run
    n_hits = int(outputs.summary.get("n_p_below_5e-8", []).fillna(0).sum()) if len(outputs.summary) else 0
    click.echo(
        f"done: {len(run.phenotype_names)} phenotype(s) × {run.variants.size} variants in {run.seconds:.1f} s "
        f"({run.variants.size / max(run.seconds, 1e-9):,.0f} variants/s); {n_hits} association(s) P < 5e-8; "
        f"{0 if outputs.loci is None else len(outputs.loci)} loci → {kw['out']}"
    )
