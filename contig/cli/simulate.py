"""``contig simulate``: write the built-in synthetic biobank (genotypes, images, PGS, burden, labels, truth)."""

from __future__ import annotations

import click

from contig.cli._out_folder import OVERWRITE_OPTION, begin_out_folder

EPILOG = """\b
Examples:
  contig simulate --out biobank                      # 2,000 people, 64-px fundus photographs
  contig simulate --out mri --image-kind mri3d --image-size 32 --n-individuals 500
  contig simulate --out big --n-individuals 100000 --seed 7 --missing-genotypes 0.1

\b
Then, e.g.:
  contig gwas --bfile biobank/genotypes --pheno biobank/truth/traits.parquet \\
      --covar biobank/covariates.parquet --out gwas-out
  contig pgs --bfile biobank/genotypes --score biobank/pgs/SYN_disc_size.txt --out pgs.parquet
  contig burden --bfile biobank/genotypes --anno biobank/burden/annotations.tsv \\
      --masks biobank/burden/masks.txt --out burdens.parquet

\b
The folder layout, the genetic architecture and the source of every default are in
docs/synthetic_biobank.md; the planted truth is in OUT/truth.json.
"""


@click.command("simulate", epilog=EPILOG)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option(
    "--n-individuals",
    default=2_000,
    show_default=True,
    type=click.IntRange(min=20),
    help="People in the cohort.",
)
@click.option(
    "--image-kind",
    type=click.Choice(["fundus", "mri3d"]),
    default="fundus",
    show_default=True,
    help="2D fundus photographs (PNG) or 3D brain MRI (NIfTI: t1, t2, flair).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=16),
    default=None,
    help="Pixels (fundus) or voxels (MRI) per side  [default: 64 fundus, 32 MRI]",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed → identical files.")
@click.option(
    "--missing-genotypes",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.03,
    show_default=True,
    help="Fraction of people without genotypes (absent from the .fam, present in the manifest).",
)
@click.option(
    "--missing-burden",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.07,
    show_default=True,
    help="Fraction of people without burden (exome) data.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@OVERWRITE_OPTION
def command(
    out: str,
    n_individuals: int,
    image_kind: str,
    image_size: int | None,
    seed: int,
    missing_genotypes: float,
    missing_burden: float,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Simulate a synthetic biobank whose truth is known: genotypes, images, PGS files, burden inputs."""
    from contig.biobank import BiobankConfig, simulate_biobank

    config = BiobankConfig(
        n_individuals=n_individuals,
        image_kind=image_kind,
        image_size=image_size,
        seed=seed,
        missing_genotypes=missing_genotypes,
        missing_burden=missing_burden,
        progress=not quiet,
    )
    begin_out_folder(out, "simulate", overwrite=overwrite)
    try:
        summary = simulate_biobank(out, config)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    seconds = sum(summary.seconds.values())
    click.echo(
        f"{summary.n_individuals} people ({summary.n_genotyped} genotyped, {summary.n_burden} with burden data), "
        f"{summary.n_images} images, {summary.n_variants} variants ({summary.n_exome_variants} rare exome), "
        f"{len(summary.pgs)} PGS files in {seconds:.1f} s → {out}"
    )
