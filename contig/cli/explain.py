"""``contig explain``: integrated gradients of the contrastive loss w.r.t. every genetic input."""

from __future__ import annotations

import click

from contig.cli._out_folder import OVERWRITE_OPTION, begin_out_folder

EPILOG = """\b
Examples:
  contig explain --run runs/contig --out explain
  contig explain --run runs/contig --out explain --split test --steps 64 --reference 256
"""


@click.command("explain", epilog=EPILOG)
@click.option(
    "--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Run directory."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--split", default=None, help="People to explain [default: the run's validation split].")
@click.option("--steps", type=click.IntRange(min=1), default=32, show_default=True, help="Integration steps.")
@click.option(
    "--reference",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Reference people (negatives).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Features per person in people_<m>.tsv.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@OVERWRITE_OPTION
def command(run_dir, out, split, steps, reference, top, seed, quiet, overwrite) -> None:
    """Per modality: top_<m>.tsv/.png (features ranked by mean |IG|), people_<m>.tsv (each person's top
    features) and attributions_<m>.parquet (people × features), from a mean-dosage baseline."""
    from contig.explain import explain_run

    begin_out_folder(out, "explain", overwrite=overwrite)
    tops = explain_run(run_dir, out, split, reference, steps, top, seed, progress=not quiet)
    for modality, table in tops.items():
        best = table.iloc[0]
        click.echo(
            f"{modality}: top feature {best['feature']} (mean |IG| {best['mean_abs_attribution']:.4g})"
        )
    click.echo(f"wrote {out}")
