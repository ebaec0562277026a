"""The proxy-task interface every self-supervised task implements, and the collate that feeds it.

A task owns its label generation (``make_batch``: vectorised on tensors, runs on the CPU in the data-loader
workers), its heads and its loss (``forward``); the encoder is shared and transferable. The training loop
(``imaging.training.Trainer``) only sees ``loss_fn(task, batch) = task(batch)``.

Determinism: ``TaskItems`` returns each image with a per-sample seed drawn while the trainer's
``SeededDataset`` has seeded the RNGs from (seed, epoch, index); ``TaskCollate`` seeds the batch's
generator from those seeds, so the labels of a batch depend on neither the worker nor a resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from imaging.errors import ImagingError


class ProxyTask(nn.Module):
    """Base class: ``encoder`` (``forward_features(x) -> (B, F)``, ``num_features``) plus task heads.

    Subclasses set ``dims`` (the spatial dimensionalities they support) and implement ``make_batch`` and
    ``forward``. ``forward`` returns a dict with a scalar ``"loss"`` and any metrics to log (floats as
    0-d tensors, e.g. ``"accuracy"``); ``accuracy_key`` names the one held-out evaluation reads as the
    task's accuracy (scored against ``chance_accuracy``).
    """

    dims: ClassVar[tuple[int, ...]] = (2, 3)
    accuracy_key: ClassVar[str] = "accuracy"

    def __init__(self, encoder: nn.Module, dim: int):
        super().__init__()
        if dim not in self.dims:
            raise ImagingError(f"{type(self).__name__} supports dim {self.dims}, not {dim}")
        self.encoder, self.dim = encoder, dim

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, C, *spatial) float images → the model inputs and targets of one batch (CPU, vectorised)."""
        raise NotImplementedError

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float | None:
        """The accuracy (``accuracy_key``) a guess would reach on ``batch`` (e.g. 1 / classes); None: none."""
        return None

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The shared encoder's weights: what ``contig finetune`` transfers."""
        return self.encoder.state_dict()


class TaskItems(Dataset):
    """Wrap a dataset of (C, *spatial) tensors into ``{"image": tensor, "seed": int}`` items."""

    def __init__(self, images: Dataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.images[index]
        # Drawn from the RNG the trainer seeded for this (seed, epoch, index).
        return {"image": torch.as_tensor(image), "seed": int(torch.randint(0, 2**62, ()).item())}


class TaskCollate:
    """Stack the items, seed a generator from their seeds and let the task build the batch."""

    def __init__(self, task: ProxyTask):
        self.task = task

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        images = torch.stack([item["image"] for item in items]).float()
        seeds = [int(item["seed"]) for item in items]
        state = np.random.SeedSequence(seeds).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state % 2**63))
        return self.task.make_batch(images, generator)


def task_loss(task: nn.Module, batch: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The trainer's ``loss_fn`` for every proxy task (calls the DDP wrapper's forward)."""
    return task(batch)
