"""``contig demo``: the main job on the built-in synthetic cohort."""

from __future__ import annotations

import click

EXAMPLES = """\b
Examples:
  contig demo --out demo-out            # default size, a few minutes on 2 CPU cores
  contig demo --out demo-quick --quick  # smaller cohort, under a minute
"""


@click.command("demo", epilog=EXAMPLES)
@click.option(
    "--out", default="demo-out", show_default=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--quick", is_flag=True, help="A smaller cohort.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(out: str, quick: bool, seed: int, quiet: bool) -> None:
    """Simulate a cohort, run the feature GWAS, compare loci with the planted truth, write report.html."""
    from contig.demo import run_demo

    report = run_demo(out, quick=quick, seed=seed, progress=not quiet)
    loci = report["loci"]
    click.echo(
        f"loci: {loci['recovered']}/{loci['planted']} planted variants recovered, {loci['false']} other loci; "
        f"report: {out}/report.html"
    )
