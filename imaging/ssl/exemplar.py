"""Exemplar networks (Dosovitskiy et al. 2014; 3D as in Taleb et al. 2020).

Every image is its own class: two augmented views of the same image (flips, 90° rotations,
brightness/contrast, zoom in and out) must embed closer to each other than to a view of another image.
One *shared* embedding head serves anchor, positive and negative (the original 3D code accidentally
built three). Loss: triplet with margin (the original) or InfoNCE/NT-Xent over the batch. The head reads
the deepest map pooled to a ``pool_grid`` grid (``imaging.ssl.heads.pooled_features``). ``accuracy`` is the
share of anchors closer to their positive than to their negative (chance 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from imaging.augment import ViewAugment
from imaging.registry import TASKS
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import check_choice, mlp, pooled_features, pooled_width
from imaging.ssl.losses import nt_xent, triplet


@TASKS.register("exemplar")
class Exemplar(ProxyTask):
    """Anchor/positive = two views of one image; negative = a view of another image of the batch.

    Args:
        encoder: shared encoder.
        dim: 2 or 3.
        embed_dim, hidden: the shared embedding head (2-layer MLP).
        loss: ``"triplet"`` or ``"infonce"``.
        margin: triplet margin on L2-normalised embeddings; temperature: InfoNCE temperature.
        zoom: crop volume-fraction range; above 1 zooms out (zero border).
        flip, rotate, brightness, contrast: the other augmentations (0/False drops one).
        pool_grid: cells per axis of the pooled deepest map (1: global average).
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        embed_dim: int = 128,
        hidden: int = 512,
        loss: Literal["triplet", "infonce"] = "triplet",
        margin: float = 0.5,
        temperature: float = 0.1,
        zoom: tuple[float, float] = (0.6, 1.4),
        flip: float = 0.5,
        rotate: bool = True,
        brightness: float = 0.3,
        contrast: float = 0.3,
        pool_grid: int = 2,
    ):
        super().__init__(encoder, dim)
        check_choice("exemplar", "loss", loss, ("triplet", "infonce"))
        self.loss_kind, self.margin, self.temperature = loss, margin, temperature
        self.pool_grid = pool_grid
        self.head = mlp(pooled_width(encoder, dim, pool_grid), hidden, embed_dim)
        self.augment = ViewAugment(
            crop_scale=tuple(zoom),
            flip=flip,
            rotate=rotate,
            brightness=brightness,
            contrast=contrast,
            blur=0.0,
            noise=0.0,
            cutout=0.0,
        )

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """→ {"anchor", "positive": (B, C, *spatial) views, "negative_index": (B,) another sample}."""
        b = images.shape[0]
        shift = torch.randint(1, max(b, 2), (b,), generator=generator)
        return {
            "anchor": self.augment(images, generator),
            "positive": self.augment(images, generator),
            "negative_index": (torch.arange(b) + shift) % b,  # ≠ own index whenever b ≥ 2
        }

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["anchor"].shape[0]
        views = torch.cat([batch["anchor"], batch["positive"]])
        embedded = self.head(pooled_features(self.encoder, views, self.pool_grid))  # one head for all
        anchor, positive = embedded[:b], embedded[b:]
        negative = positive[batch["negative_index"]]
        if self.loss_kind == "triplet":
            loss = triplet(anchor, positive, negative, self.margin)
        else:
            loss = nt_xent(anchor, positive, self.temperature)
        with torch.no_grad():
            a, p, n = (F.normalize(e.detach(), dim=1) for e in (anchor, positive, negative))
            closer = ((a - p).pow(2).sum(1) < (a - n).pow(2).sum(1)).float().mean()
        return {"loss": loss, "accuracy": closer}

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """0.5: a random embedding puts the positive or the negative closer with equal odds."""
        return 0.5
