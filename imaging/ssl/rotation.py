"""Rotation prediction (Gidaris et al. 2018; 3D as in Taleb et al. 2020).

Each image is rotated by one class of ``imaging.augment.rotation_table``: 3D has 10 classes (identity
and 90°/180°/270° about each of the three axes), 2D has 4. The encoder's deepest map, pooled to a
``pool_grid``-cell grid and flattened (``imaging.ssl.heads.pooled_features``: where things are is the
evidence of a rotation), goes to a linear (or MLP) head trained with cross-entropy to name the rotation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from imaging.augment import center_cube, rotate, rotation_table
from imaging.registry import TASKS
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import accuracy, mlp, pooled_features, pooled_width


@TASKS.register("rotation")
class RotationTask(ProxyTask):
    """Predict which of the 10 (3D) or 4 (2D) rotations was applied.

    Args:
        encoder: shared encoder (``forward_features``, ``num_features``).
        dim: 2 or 3.
        hidden: hidden width of a 2-layer head; 0 for a linear head.
        pool_grid: cells per axis of the pooled deepest map (1: global average).

    Non-cubic images are centre-cropped to equal sides (the smallest) so every rotation keeps the shape.
    """

    def __init__(self, encoder: nn.Module, dim: int = 3, hidden: int = 0, pool_grid: int = 2):
        super().__init__(encoder, dim)
        self.num_classes = len(rotation_table(dim))
        self.pool_grid = pool_grid
        width = pooled_width(encoder, dim, pool_grid)
        self.head = mlp(width, hidden, self.num_classes, layers=2 if hidden else 1)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, C, *spatial) → {"image": (B, C, *cube) rotated, "label": (B,) rotation class}."""
        cube = center_cube(images)
        labels = torch.randint(0, self.num_classes, (images.shape[0],), generator=generator)
        return {"image": rotate(cube, labels), "label": labels}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.head(pooled_features(self.encoder, batch["image"], self.pool_grid))
        return {"loss": F.cross_entropy(logits, batch["label"]), "accuracy": accuracy(logits, batch["label"])}

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """1 / number of rotations."""
        return 1.0 / self.num_classes
