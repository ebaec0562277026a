"""The demo's comparison encoders: an image-only SimCLR trained with ContIG's budget, and random init."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from contig.dataset import MultimodalDataset
from imaging.registry import create_encoder, create_task
from imaging.ssl.base import TaskCollate, TaskItems, task_loss
from imaging.training import Trainer, TrainingConfig


class ImagesOnly(Dataset):
    """The (C, H, W) image tensors of a :class:`MultimodalDataset` (no IDs, no augmentation)."""

    def __init__(self, images: MultimodalDataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]["image"]


def random_encoder(name: str, in_chans: int, seed: int) -> nn.Module:
    """A freshly initialised encoder (the 'no pretraining' baseline)."""
    torch.manual_seed(seed)
    return create_encoder(name, in_chans=in_chans)


def train_simclr(
    images: MultimodalDataset,
    out: Path,
    encoder_name: str,
    in_chans: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
) -> nn.Module:
    """2D SimCLR (NT-Xent, colour jitter per channel) for ``steps`` steps; returns the trained encoder.

    A finished run in ``out`` is reused (``resume``)."""
    torch.manual_seed(seed)
    task = create_task(
        "simclr",
        encoder=create_encoder(encoder_name, in_chans=in_chans),
        dim=2,
        per_channel=True,
        rotate=False,
    )
    config = TrainingConfig(
        out=str(out),
        max_steps=steps,
        epochs=None,
        batch_size=batch_size,
        drop_last=True,
        lr=lr,
        weight_decay=1e-4,
        warmup_steps=max(1, steps // 10),
        seed=seed,
        log_every=max(1, steps // 10),
        checkpoint_every=0,
        progress=progress,
    )
    Trainer(task, task_loss, TaskItems(ImagesOnly(images)), config, collate_fn=TaskCollate(task)).fit(
        resume=True
    )
    return task.encoder
