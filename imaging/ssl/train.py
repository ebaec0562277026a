"""Pretraining an encoder with one proxy task: the configuration and the runner behind ``contig ssl``.

The run directory follows every training command (``config.yaml``, ``metrics.csv``, ``train.log``,
``last``/``best`` safetensors). The checkpoints hold the whole task; the encoder's weights are the
entries prefixed ``encoder.``, and ``config.yaml`` holds ``encoder`` (name) and ``encoder_kwargs`` (with
``in_chans`` filled in from the data), so ``load_pretrained_encoder(run_dir)`` rebuilds the encoder.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from imaging.errors import ImagingError
from imaging.registry import TASKS, create_encoder, create_task, list_tasks
from imaging.training.config import TrainingConfig

DEFAULT_ENCODERS = {2: "unet2d", 3: "unet3d"}


@dataclass
class SslConfig(TrainingConfig):
    """``contig ssl`` configuration: the shared training fields plus task, data and encoder.

    ``task_options`` go to the task's constructor (e.g. ``{num_permutations: 1000}`` for jigsaw);
    ``encoder_kwargs`` to ``imaging.create_encoder`` (e.g. ``{base_width: 16, depth: 4}``).
    """

    out: str = "runs/ssl"
    epochs: int | None = 10
    batch_size: int = 8
    drop_last: bool = True  # the heads use BatchNorm; a last batch of 1 would fail
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    task: str = "simclr"
    dim: int = 3
    data: str = ""  # image folder: flat NIfTI/PNG, Medical Segmentation Decathlon or synthetic biobank
    encoder: str | None = None  # default unet3d (dim 3) / unet2d (dim 2)
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, ...] | None = (64, 64, 64)  # (D, H, W), or (H, W) for dim 2
    modalities: list[str] | None = None
    target_spacing: tuple[float, float, float] | None = None  # mm; None keeps each file's spacing
    normalize: str = "zscore"
    cache: bool = True  # keep prepared images in memory across epochs

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim not in (2, 3):
            from imaging.training.config import ConfigError

            raise ConfigError(f"invalid ssl config: dim must be 2 or 3 (got {self.dim})")


def open_dataset(config: SslConfig) -> Dataset:
    """The image folder of ``config.data`` as (C, *size) float tensors (``imaging.datasets``)."""
    from imaging.datasets import open_image_folder

    if not config.data:
        raise ImagingError("no image folder given; pass --data DIR (or data=DIR)")
    size = config.size
    if size is not None and len(size) == 3 and config.dim == 2:
        size = size[-2:]
    return open_image_folder(
        config.data,
        dim=config.dim,
        modalities=config.modalities,
        target_spacing=config.target_spacing,
        size=size,
        normalize=config.normalize,
        cache=config.cache,
    )


def resolve_model(config: SslConfig, in_chans: int) -> tuple[SslConfig, torch.nn.Module]:
    """Fill in the encoder name, ``in_chans`` and a patch multiple that fits the encoder; build the task.

    Returns the resolved configuration (what ``config.yaml`` records) and the task.
    """
    name = config.encoder or DEFAULT_ENCODERS[config.dim]
    kwargs = dict(config.encoder_kwargs)
    list_tasks()  # registers the built-in tasks
    # A task may feed its encoder other inputs than whole images (puzzle: single-modality tiles).
    in_chans = getattr(TASKS.get(config.task), "encoder_in_chans", None) or in_chans
    if kwargs.setdefault("in_chans", in_chans) != in_chans:
        raise ImagingError(
            f"encoder_kwargs.in_chans={kwargs['in_chans']} but the images in {config.data or 'the data'} "
            f"have {in_chans} channel(s); drop encoder_kwargs.in_chans or choose the modalities"
        )
    encoder = create_encoder(name, **kwargs)
    constructor = TASKS.get(config.task)
    if constructor is None:  # let the registry name the alternatives
        create_task(config.task, encoder=encoder, dim=config.dim)
    accepted = inspect.signature(constructor).parameters
    options = dict(config.task_options)
    if "modalities" in accepted and "modalities" not in options and config.modalities:
        options["modalities"] = list(config.modalities)
    feature_channels = getattr(encoder, "feature_channels", None)
    if "patch_multiple" in accepted and "patch_multiple" not in options and feature_channels:
        options["patch_multiple"] = 2 ** (len(feature_channels) - 1)  # a U-Net's poolings
    unknown = sorted(set(options) - set(accepted) - {"encoder", "dim"})
    if unknown:
        valid = ", ".join(p for p in accepted if p not in ("self", "encoder", "dim"))
        raise ImagingError(f"task {config.task!r} has no option(s) {', '.join(unknown)}; valid: {valid}")
    task = create_task(config.task, encoder=encoder, dim=config.dim, **options)
    resolved = dataclasses.replace(config, encoder=name, encoder_kwargs=kwargs, task_options=options)
    return resolved, task


def train_ssl(config: SslConfig, resume: bool = False, dataset: Dataset | None = None) -> dict[str, Any]:
    """Pretrain ``config.encoder`` with ``config.task`` on ``config.data`` (or on ``dataset``).

    Returns the trainer's result (step, epoch, best value/step, last logged row) plus ``config`` (the
    resolved configuration written to ``config.yaml``).
    """
    from imaging.ssl.base import TaskCollate, TaskItems, task_loss
    from imaging.training import Trainer

    dataset = open_dataset(config) if dataset is None else dataset
    if len(dataset) == 0:
        raise ImagingError(f"{config.data or 'the dataset'} holds no images")
    first = torch.as_tensor(dataset[0])
    if first.dim() != config.dim + 1:
        raise ImagingError(
            f"{config.data or 'the dataset'}: items of shape {tuple(first.shape)} are not (C, *spatial) "
            f"with {config.dim} spatial axes; check dim"
        )
    torch.manual_seed(config.seed)  # the initialisation of encoder and heads
    config, task = resolve_model(config, int(first.shape[0]))
    trainer = Trainer(task, task_loss, TaskItems(dataset), config, collate_fn=TaskCollate(task))
    return {**trainer.fit(resume=resume), "config": config}


__all__ = ["DEFAULT_ENCODERS", "SslConfig", "open_dataset", "resolve_model", "train_ssl"]
