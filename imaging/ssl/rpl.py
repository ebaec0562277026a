"""Relative patch location (Doersch et al. 2015; 3D as in Taleb et al. 2020).

The image is split into a 3 × 3 (× 3) grid of cells, each holding a jittered patch. The centre patch and
one of its 8 (2D) or 26 (3D) neighbours go through the shared encoder; a head on the concatenated
features names the neighbour's position. Class ``c`` is the offset ``OFFSETS[dim][c]`` (in cells, along
the spatial axes) from the centre to the neighbour, in lexicographic order of {-1, 0, 1}^dim without 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imaging.augment import grid_offsets
from imaging.registry import TASKS
from imaging.ssl import _grid
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import accuracy, encode_patches, mlp, pooled_width

OFFSETS = {2: grid_offsets(2), 3: grid_offsets(3)}


@TASKS.register("rpl")
class RelativePatchLocation(ProxyTask):
    """Classify the position of a neighbour patch relative to the centre patch (26 classes 3D, 8 in 2D).

    Args:
        encoder: shared encoder, fed (B·2, C, *patch).
        dim: 2 or 3.
        patch_size: patch side(s); default: the largest multiple of ``patch_multiple`` leaving a gap.
        patch_multiple: default patch sides are multiples of this (e.g. 2**(depth−1) of a U-Net).
        jitter: random patch position inside its cell (else centred).
        hidden: hidden width of the head on the two concatenated feature vectors.
        pool_grid: cells per axis of each patch's pooled deepest map (1: global average).
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        patch_size: int | Sequence[int] | None = None,
        patch_multiple: int = 8,
        jitter: bool = True,
        hidden: int = 256,
        pool_grid: int = 2,
    ):
        super().__init__(encoder, dim)
        self.patch_size, self.patch_multiple, self.jitter = patch_size, patch_multiple, jitter
        self.grid = (3,) * dim
        self.register_buffer("offsets", OFFSETS[dim].clone(), persistent=False)
        self.num_classes = len(OFFSETS[dim])
        self.pool_grid = pool_grid
        self.head = mlp(2 * pooled_width(encoder, dim, pool_grid), hidden, self.num_classes)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, C, *spatial) → {"patches": (B, 2, C, *patch) centre then neighbour, "label": (B,)}."""
        b, spatial = images.shape[0], images.shape[2:]
        patch = _grid.grid_patch_size(spatial, self.grid, self.patch_size, self.patch_multiple)
        origins = _grid.jittered_origins(spatial, self.grid, patch, b, generator, self.jitter)
        labels = torch.randint(0, self.num_classes, (b,), generator=generator)
        centre = torch.ones(self.dim, dtype=torch.long)
        neighbour = centre + OFFSETS[self.dim][labels]  # (B, dims) grid index
        flat = torch.stack([_flat(centre.expand(b, -1)), _flat(neighbour)], 1)  # (B, 2) cell numbers
        chosen = origins[torch.arange(b)[:, None], flat]  # (B, 2, dims)
        return {"patches": _grid.extract(images, chosen, patch), "label": labels}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = encode_patches(self.encoder, batch["patches"], self.pool_grid)  # (B, 2, F·g^dim)
        logits = self.head(features.flatten(1))
        return {"loss": F.cross_entropy(logits, batch["label"]), "accuracy": accuracy(logits, batch["label"])}

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """1 / number of neighbour positions."""
        return 1.0 / self.num_classes


def _flat(index: torch.Tensor) -> torch.Tensor:
    """(..., dims) index in a 3^dims grid → lexicographic cell number."""
    weights = 3 ** torch.arange(index.shape[-1] - 1, -1, -1)
    return (index * weights).sum(-1)
