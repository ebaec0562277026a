"""Training a cross-modal translation model: its configuration and the runner behind ``contig translate``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imaging.errors import ImagingError
from imaging.training.config import TrainingConfig


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


def train_translation(config: TranslateConfig, resume: bool = False) -> dict[str, Any]:
    """Train the configured pix2pix (paired) or CycleGAN (unpaired) model on ``config.data``.

    With ``val_fraction`` > 0 the last rows are held out and ``val_l1`` is monitored. Writes
    ``model.yaml`` beside the checkpoints (what ``translate_folder`` rebuilds). Returns the trainer's result.
    """
    import torch

    from imaging.puzzle.data import read_manifest
    from imaging.training import Trainer
    from imaging.training.checkpoint import LAST_STATE
    from imaging.translation import create_translation_model
    from imaging.translation.data import PairedVolumes, UnpairedVolumes
    from imaging.translation.runner import make_eval_fn, save_model_config

    if config.val_fraction > 0 and config.monitor == "loss":
        config = dataclasses.replace(config, monitor="val_l1", mode="min")
    n = len(read_manifest(config.data))
    n_val = int(round(n * config.val_fraction))
    if config.val_fraction > 0 and not 0 < n_val < n:
        raise ImagingError(f"val_fraction {config.val_fraction} of {n} rows leaves no train or no val rows")
    train_rows = list(range(n - n_val))
    dataset_cls = PairedVolumes if config.pairing == "paired" else UnpairedVolumes
    train_data = dataset_cls(config.data, config.source, config.target, config.size, train_rows)
    eval_fn = None
    if n_val:
        rows = list(range(n - n_val, n))
        eval_fn = make_eval_fn(PairedVolumes(config.data, config.source, config.target, config.size, rows))
    torch.manual_seed(config.seed)  # the model's initialisation
    model_kwargs = {"dim": 3, **{key: getattr(config, key) for key in _MODEL_KEYS}}
    model = create_translation_model(config.pairing, **model_kwargs)
    if resume or not (Path(config.out) / LAST_STATE).is_file():
        spec = {
            "mode": config.pairing,
            "source": config.source,
            "target": config.target,
            "size": config.size,
        }
        save_model_config(config.out, {**spec, "model": model_kwargs})
    return Trainer(model, _loss, train_data, config, eval_fn=eval_fn).fit(resume=resume)


def _loss(model, batch):
    return model(batch)
