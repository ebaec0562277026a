"""``contig demo``: the main job on the built-in synthetic cohort."""

from __future__ import annotations

import click

EXAMPLES = """\b
Examples:
  contig demo --out demo-out            # default size: at most 15 minutes on 2 CPU cores
  contig demo --out demo-quick --quick  # smaller cohort: at most 3 minutes
"""


@click.command("demo", epilog=EXAMPLES)
@click.option(
    "--out", default="demo-out", show_default=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--quick", is_flag=True, help="A smaller cohort.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(out: str, quick: bool, seed: int, quiet: bool) -> None:
    """Simulate a biobank, pretrain ContIG, GWAS its features, benchmark downstream; write report.html.

    simulate → pretrain (SNP, PGS, burden; some people missing some) → embed → PCA → covariate
    residuals → rank-INT → GWAS → loci vs truth.json → linear probe and fine-tuning at 1/10/100% labels
    for ContIG, an image-only SimCLR with the same budget and random init → report.html + report.json.
    Re-running with the same --out reuses finished stages.
    """
    from contig.demo import run_demo

    report = run_demo(out, quick=quick, seed=seed, progress=not quiet)
    loci = report["loci"]
    click.echo(
        f"loci: {loci['recovered']}/{loci['planted']} planted variants recovered, {loci['false']} other loci; "
        f"report: {out}/report.html"
    )
