"""Pretraining an encoder with one proxy task: the configuration and the runner behind ``contig ssl``.

The run directory follows every training command (``config.yaml``, ``metrics.csv``, ``train.log``,
``last``/``best`` safetensors). The checkpoints hold the whole task; the encoder's weights are the
entries prefixed ``encoder.``, and ``config.yaml`` holds ``encoder`` (name) and ``encoder_kwargs`` (with
``in_chans`` filled in from the data), so ``load_pretrained_encoder(run_dir)`` rebuilds the encoder.

A ``val_fraction`` of the images is held out: every evaluation (``eval_every`` steps and at the end) writes
the held-out proxy loss and accuracy next to chance into ``metrics.csv``, and ``proxy_summary.json`` says
whether the run got above chance (``imaging.ssl.proxy_eval``); a run that did not says so in one
``warning:`` line (``train.log`` and a Python warning).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from imaging.errors import ImagingError
from imaging.registry import TASKS, create_encoder, create_task, list_tasks
from imaging.training.config import TrainingConfig

DEFAULT_ENCODERS = {2: "unet2d", 3: "unet3d"}


@dataclass
class SslConfig(TrainingConfig):
    """``contig ssl`` configuration: the shared training fields plus task, data and encoder.

    ``task_options`` go to the task's constructor (e.g. ``{num_permutations: 1000}`` for jigsaw), over
    the task's ``ssl_defaults`` (the puzzle's: ``HARD_PUZZLES``, puzzles a fixed template cannot solve);
    ``encoder_kwargs`` to ``imaging.create_encoder`` (e.g. ``{base_width: 16, depth: 4}``).
    """

    out: str = "runs/ssl"
    epochs: int | None = 10
    batch_size: int = 8
    drop_last: bool = True  # the heads use BatchNorm; a last batch of 1 would fail
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    eval_every: int = 100  # held-out proxy loss/accuracy every so many steps (and at the end)
    val_fraction: float = 0.1  # share of the images held out to measure the proxy task (0: none)
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
        from imaging.training.config import ConfigError

        if self.dim not in (2, 3):
            raise ConfigError(f"invalid ssl config: dim must be 2 or 3 (got {self.dim})")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"invalid ssl config: val_fraction must be in [0, 1) (got {self.val_fraction})")


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
    options = {**getattr(constructor, "ssl_defaults", {}), **config.task_options}
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
    resolved configuration written to ``config.yaml``) and ``proxy`` (the contents of
    ``proxy_summary.json``).
    """
    from imaging.ssl.base import TaskCollate, TaskItems, task_loss
    from imaging.ssl.proxy_eval import ProxyEvaluation, held_out_indices
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
    ids = getattr(dataset, "ids", None)
    batch = config.batch_size if config.drop_last else 1
    train_rows, held_rows = held_out_indices(len(dataset), config.val_fraction, batch, config.seed, ids)
    train_images, held_out = _subset(dataset, train_rows), _subset(dataset, held_rows)
    evaluation = ProxyEvaluation(task, held_out, config.batch_size, config.seed)  # builds held-out batches
    evaluation.start(task)  # the untrained model: the control of tasks without an accuracy
    eval_fn = evaluation if len(held_rows) else None
    trainer = Trainer(
        task, task_loss, TaskItems(train_images), config, eval_fn=eval_fn, collate_fn=TaskCollate(task)
    )
    fit = trainer.fit(resume=resume)
    summary, warning = evaluation.summary(config.task, len(train_rows), int(fit["step"]))
    if trainer.is_main:
        _write_summary(Path(config.out), summary, warning)
    if warning:
        warnings.warn(warning, stacklevel=2)
    return {**fit, "config": config, "proxy": summary}


def _subset(dataset: Dataset, rows: Any) -> Dataset:
    """The items ``rows`` of ``dataset`` (its own ``subset`` when it has one)."""
    rows = [int(r) for r in rows]
    if len(rows) == len(dataset) and rows == list(range(len(dataset))):  # type: ignore[arg-type]
        return dataset
    if hasattr(dataset, "subset"):
        return dataset.subset(rows)
    return Subset(dataset, rows)


def _write_summary(run: Path, summary: dict[str, Any], warning: str | None) -> None:
    """``proxy_summary.json`` (atomic) and, for a run at chance, one ``warning:`` line in ``train.log``."""
    from imaging.io import atomic_target
    from imaging.ssl.proxy_eval import SUMMARY

    with atomic_target(run / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    if warning:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(run / "train.log", "a", encoding="utf-8") as log:
            log.write(f"{stamp} WARNING warning: {warning}\n")


__all__ = ["DEFAULT_ENCODERS", "SslConfig", "open_dataset", "resolve_model", "train_ssl"]
