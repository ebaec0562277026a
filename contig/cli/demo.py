"""``contig demo``: the main job on the built-in synthetic cohort."""

from __future__ import annotations

import click

from contig.cli._out_folder import OVERWRITE_OPTION, check_out_folder, clear_out_folder

EXAMPLES = """\b
Examples:
  contig demo --out demo-out            # default size: at most 15 minutes on 2 CPU cores
  contig demo --out demo-quick --quick  # smaller cohort: at most 3 minutes
  contig demo --out demo-quick --quick --seed 1 --overwrite   # replace a folder made with seed 0
"""


@click.command("demo", epilog=EXAMPLES)
@click.option(
    "--out", default="demo-out", show_default=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--quick", is_flag=True, help="A smaller cohort.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@OVERWRITE_OPTION
def command(out: str, quick: bool, seed: int, quiet: bool, overwrite: bool) -> None:
    """Simulate a biobank, pretrain ContIG beside its controls, GWAS the features, benchmark downstream.

    simulate → pretrain ContIG (SNP, PGS, burden; some people missing some) and, with the same budget,
    ContIG on permuted genetics and an image-only SimCLR (plus random init) → loss − chance on training
    and held-out people → embed → PCA → covariate residuals → rank-INT → GWAS → loci matched one-to-one to
    truth.json, against the oracle (the true traits) → linear probes and early-stopped fine-tuning at
    label fractions → report.html + report.json. Re-running with the same --out and settings reuses
    finished stages; a folder made with another seed or size is refused (--overwrite replaces it).
    """
    from contig.demo import run_demo

    if overwrite:
        check_out_folder(out, overwrite=True)
        clear_out_folder(out)

    report = run_demo(out, quick=quick, seed=seed, progress=not quiet)
    for name, evaluation in report["alignment"].items():
        held_out = evaluation["splits"].get("test", evaluation["splits"].get("val", {}))
        terms = ", ".join(
            f"{m} {v['excess']:+.3f} [{v['excess_ci'][0]:+.3f}, {v['excess_ci'][1]:+.3f}]"
            for m, v in held_out.items()
        )
        click.echo(f"{name}: held-out loss − chance {terms}")
    for name, loci in report["loci_by_method"].items():
        click.echo(
            f"loci of {name}: {loci['recovered']}/{loci['planted']} planted variants, {loci['false']} false"
        )
    click.echo(f"report: {out}/report.html")
