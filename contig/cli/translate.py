"""`contig translate`: train a cross-modal translation model, or write synthetic volumes with one.

Library code lives in ``imaging.translation``; this module only turns flags into keyword arguments.
"""

from __future__ import annotations

from pathlib import Path

import click

from contig.cli._training import resolve_training_config, start_run, training_options
from imaging.errors import ImagingError

EPILOG = """\b
Examples:
  contig simulate --out bb --image-kind mri3d --image-size 32
  contig translate --data bb --source t1 --target flair --mode paired --out runs/t1-flair --max-steps 500
  contig translate --data bb --source t1 --target flair --mode unpaired --out runs/cyc cycle_weight=5
  contig translate --run runs/t1-flair --data bb --write bb-synthetic
  contig ssl --task puzzle --data bb-synthetic --modalities t1,flair --grid 3 --out runs/puzzle
"""


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(" ".join(str(error).split()))


@click.command("translate", epilog=EPILOG)
@click.option("--data", default=None, metavar="DIR", help="Biobank folder with manifest.parquet.")
@click.option("--source", default=None, metavar="NAME", help="Source modality (manifest column image_NAME).")
@click.option("--target", default=None, metavar="NAME", help="Target modality to synthesise.")
@click.option("--mode", type=click.Choice(["paired", "unpaired"]), default=None, help="pix2pix or CycleGAN.")
@click.option(
    "--run", "run_dir", default=None, type=click.Path(file_okay=False), help="Trained run (with --write)."
)
@click.option(
    "--write",
    default=None,
    type=click.Path(file_okay=False),
    help="Write synthetic volumes here (with --run).",
)
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@training_options
def command(data, source, target, mode, run_dir, write, checkpoint, **kwargs) -> None:
    """Synthesise a missing modality: train (--data --source --target --out) or write (--run --data --write).

    Paired mode (pix2pix) needs co-registered source/target volumes of the same people; unpaired mode
    (CycleGAN) does not. Synthetic volumes are for puzzle pretraining (contig ssl --task puzzle) only.
    """
    if write or run_dir:
        _write(run_dir, data, write, checkpoint, kwargs.get("device") or "auto")
        return
    values = {"data": data, "source": source, "target": target, "pairing": mode}
    extra = [f"{key}={value}" for key, value in values.items() if value is not None]
    kwargs["overrides"] = (*extra, *(kwargs.get("overrides") or ()))
    from imaging.translation.train import TranslateConfig, train_translation

    config = resolve_training_config(TranslateConfig, kwargs)
    if not config.data:
        raise click.UsageError("give the biobank folder with --data DIR (or data=DIR)")
    start_run(config, kwargs, "translate")
    try:
        result = train_translation(config, kwargs["resume"])
    except ImagingError as error:
        raise _fail(error) from None
    click.echo(f"trained to step {result['step']}; run directory {Path(config.out)}")


def _write(run_dir, data, write, checkpoint, device) -> None:
    from imaging.training.distributed import resolve_device
    from imaging.translation.runner import translate_folder

    if not (run_dir and data and write):
        raise click.UsageError("writing synthetic volumes needs --run RUN --data DIR --write DIR")
    try:
        table = translate_folder(run_dir, data, write, checkpoint, str(resolve_device(device)))
    except ImagingError as error:
        raise _fail(error) from None
    count = int(table.filter(like="synthetic_").iloc[:, 0].sum())
    click.echo(f"wrote {count} synthetic volumes and {Path(write) / 'manifest.parquet'}")
