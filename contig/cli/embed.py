"""``contig embed``: trunk image features of a pretraining run, per person and per image."""

from __future__ import annotations

import click

EPILOG = """\b
Examples:
  contig embed --run runs/contig --manifest biobank/manifest.parquet --out features.parquet
  contig embed --run runs/contig --manifest biobank/manifest.parquet --split test --out test.parquet
"""


@click.command("embed", epilog=EPILOG)
@click.option(
    "--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Run directory."
)
@click.option(
    "--manifest", required=True, type=click.Path(exists=True, dir_okay=False), help="Image manifest."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Per-person features (parquet).")
@click.option("--split", default=None, help="Only people of this split of the run's split table.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(run_dir, manifest, out, split, batch_size, num_workers, device, quiet) -> None:
    """Write IID × feat_000… (mean over a person's images) to OUT and per-image rows to OUT's
    sibling <stem>.images.parquet. Features are the image tower's pooled output (before projection)."""
    from contig.embed import embed_run, load_run
    from contig.pretrain import person_splits

    people = None
    if split is not None:
        splits = person_splits(load_run(run_dir).config)
        if split not in set(splits["split"]):
            raise click.BadParameter(
                f"{split!r} is not a split of the run's table; its splits are {sorted(set(splits['split']))}",
                param_hint="--split",
            )
        people = set(splits.loc[splits["split"] == split, "IID"])
    per_person, per_image = embed_run(
        run_dir,
        manifest,
        out,
        people=people,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=not quiet,
    )
    click.echo(f"wrote {per_person} and {per_image}")
