"""`contig translate`: train a cross-modal translation model, or write synthetic volumes with one.

Library code lives in ``imaging.translation``; this module only turns flags into keyword arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from contig.cli._training import resolve_training_config, training_options
from imaging.errors import ImagingError
from imaging.training.config import TrainingConfig

EPILOG = """\b
Examples:
  contig simulate --out bb --image-kind mri3d --image-size 32
  contig translate --data bb --source t1 --target flair --mode paired --out runs/t1-flair --max-steps 500
  contig translate --data bb --source t1 --target flair --mode unpaired --out runs/cyc cycle_weight=5
  contig translate --run runs/t1-flair --data bb --write bb-synthetic
  contig ssl --task puzzle --data bb-synthetic --modalities t1,flair --grid 3 --out runs/puzzle
"""


@dataclass
class TranslateConfig(TrainingConfig):
    """``contig translate`` configuration: the shared training fields plus data and model sizes."""

    out: str = "runs/translate"
    epochs: int | None = 50
    batch_size: int = 4
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)  # pix2pix/CycleGAN
    weight_decay: float = 0.0
    data: str = ""  # biobank folder with manifest.parquet (image_<modality> columns)
    source: str = "t1"
    target: str = "flair"
    pairing: Literal["paired", "unpaired"] = "paired"  # --mode (``mode`` is the monitor direction)
    size: int | None = None  # resample volumes to size³ (None: the files' grid)
    val_fraction: float = 0.0  # rows held out for val_l1 (paired rows); then monitor defaults to val_l1
    width: int = 16
    depth: int = 3
    disc_width: int = 16
    disc_layers: int = 2
    l1_weight: float = 100.0  # paired
    cycle_weight: float = 10.0  # unpaired
    identity_weight: float = 0.0  # unpaired
    gan: Literal["lsgan", "vanilla"] = "lsgan"


_MODEL_KEYS = (
    "width",
    "depth",
    "disc_width",
    "disc_layers",
    "l1_weight",
    "cycle_weight",
    "identity_weight",
    "gan",
)


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
    config = resolve_training_config(TranslateConfig, kwargs)
    if not config.data:
        raise click.UsageError("give the biobank folder with --data DIR (or data=DIR)")
    if config.val_fraction > 0 and config.monitor == "loss":
        config = dataclasses.replace(config, monitor="val_l1", mode="min")
    result = _train(config, kwargs["resume"])
    click.echo(f"trained to step {result['step']}; run directory {Path(config.out)}")


def _train(config: TranslateConfig, resume: bool) -> dict:
    import torch

    from imaging.puzzle.data import read_manifest
    from imaging.training import Trainer
    from imaging.translation import create_translation_model
    from imaging.translation.data import PairedVolumes, UnpairedVolumes
    from imaging.translation.runner import make_eval_fn, save_model_config

    try:
        n = len(read_manifest(config.data))
        n_val = int(round(n * config.val_fraction))
        if config.val_fraction > 0 and not 0 < n_val < n:
            raise ImagingError(
                f"val_fraction {config.val_fraction} of {n} rows leaves no train or no val rows"
            )
        train_rows = list(range(n - n_val))
        dataset_cls = PairedVolumes if config.pairing == "paired" else UnpairedVolumes
        train_data = dataset_cls(config.data, config.source, config.target, config.size, train_rows)
        eval_fn = None
        if n_val:
            rows = list(range(n - n_val, n))
            eval_fn = make_eval_fn(
                PairedVolumes(config.data, config.source, config.target, config.size, rows)
            )
        torch.manual_seed(config.seed)  # the model's initialisation
        model_kwargs = {"dim": 3, **{key: getattr(config, key) for key in _MODEL_KEYS}}
        model = create_translation_model(config.pairing, **model_kwargs)
        if resume or not (Path(config.out) / "last.state.safetensors").is_file():
            spec = {
                "mode": config.pairing,
                "source": config.source,
                "target": config.target,
                "size": config.size,
            }
            save_model_config(config.out, {**spec, "model": model_kwargs})
        return Trainer(model, _loss, train_data, config, eval_fn=eval_fn).fit(resume=resume)
    except ImagingError as error:
        raise _fail(error) from None


def _loss(model, batch):
    return model(batch)


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
