"""``contig pgs``: polygenic scores from PGS Catalog scoring files (plink2 ``--score`` semantics)."""

from __future__ import annotations

import warnings

import click

from contig.cli._options import genotype_options, open_genotype_flags
from genetics.errors import GeneticsError
from genetics.pgs import MATCH_MODES, score

EPILOG = """\b
Example:
  contig pgs --bfile data/cohort --score PGS000018.txt.gz --score PGS000335.txt \\
      --out scores.parquet --match position

\b
Output: one row per sample, columns IID FID then <pgs_id>_SUM and <pgs_id>_AVG
(AVG = SUM / (2 x matched variants), as plink2 --score). Missing genotypes are
mean-imputed from founder allele frequencies. The match report is printed.
"""


@click.command("pgs", epilog=EPILOG)
@genotype_options
@click.option(
    "--score",
    "score_files",
    required=True,
    multiple=True,
    metavar="FILE",
    help="PGS Catalog scoring file (.txt or .txt.gz); repeat for several scores.",
)
@click.option("--out", required=True, metavar="FILE", help="Output parquet table of scores.")
@click.option(
    "--match",
    type=click.Choice(MATCH_MODES),
    default="id",
    show_default=True,
    help="Match variants by rsID/.bim ID, or by chromosome:position (harmonized hm_chr/hm_pos if present).",
)
@click.option("--allow-ambiguous", is_flag=True, help="Keep strand-ambiguous A/T and C/G variants.")
@click.option(
    "--chunk-size", default=1024, show_default=True, type=click.IntRange(min=1), help="Variants per block."
)
@click.option("--nonfounders", is_flag=True, help="Estimate imputation allele frequencies from all samples.")
def command(
    bfile: str | None,
    pfile: str | None,
    bgen: str | None,
    sample: str | None,
    bgen_ref: str | None,
    score_files: tuple[str, ...],
    out: str,
    match: str,
    allow_ambiguous: bool,
    chunk_size: int,
    nonfounders: bool,
) -> None:
    """Compute polygenic scores for every sample of a PLINK fileset, a .pgen or a BGEN file (dosages)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            genotypes = {"bfile": bfile, "pfile": pfile, "bgen": bgen, "sample": sample, "bgen_ref": bgen_ref}
            result = score(
                open_genotype_flags(genotypes),
                list(score_files),
                match=match,
                allow_ambiguous=allow_ambiguous,
                chunk_size=chunk_size,
                out=out,
                nonfounders=nonfounders,
            )
    except GeneticsError as error:
        raise click.ClickException(" ".join(str(error).split())) from None
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    report = result.report.drop(columns=["file"])
    click.echo(report.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    n_samples, n_scores = len(result.scores), len(result.report)
    click.echo(f"Wrote {n_scores} score(s) for {n_samples} samples to {out}")
