"""Jigsaw puzzles (Noroozi & Favaro 2016; 3D as in Taleb et al. 2020).

The image is split into a 3 × 3 (2D, 9 tiles) or 3 × 3 × 3 (3D, 27 tiles) grid of jittered tiles; the
tiles are shuffled by one permutation of a fixed set (``imaging.ssl.permutations``) and the network names
which one. Every tile goes through the shared encoder; a shared per-tile layer reduces its features, and
a head on the concatenation (in puzzle order) classifies the permutation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from imaging.registry import TASKS
from imaging.ssl import _grid
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import accuracy, check_choice, encode_patches, mlp, pooled_width
from imaging.ssl.permutations import hamming_permutations, random_permutations


@TASKS.register("jigsaw")
class Jigsaw(ProxyTask):
    """Classify the permutation of shuffled tiles among ``num_permutations`` classes.

    Args:
        encoder: shared encoder, fed (B·K, C, *tile) with K = 27 (3D) or 9 (2D).
        dim: 2 or 3.
        num_permutations: size of the permutation set (e.g. 100 or 1000).
        selection: ``"hamming"`` (greedy max-min Hamming distance) or ``"random"`` (the original 3D code).
        permutation_seed: seed of the permutation set (stored with the weights as a buffer).
        patch_size, patch_multiple, jitter: tile geometry as in ``rpl``.
        tile_features: width of the shared per-tile layer; hidden: width of the classifier's hidden layer.
        pool_grid: cells per axis of each tile's pooled deepest map (1: global average).
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        num_permutations: int = 100,
        selection: Literal["hamming", "random"] = "hamming",
        permutation_seed: int = 0,
        patch_size: int | Sequence[int] | None = None,
        patch_multiple: int = 8,
        jitter: bool = True,
        tile_features: int = 64,
        hidden: int = 512,
        pool_grid: int = 2,
    ):
        super().__init__(encoder, dim)
        check_choice("jigsaw", "selection", selection, ("hamming", "random"))
        self.grid = (3,) * dim
        self.num_tiles = 3**dim
        choose = {"hamming": hamming_permutations, "random": random_permutations}[selection]
        perms = torch.from_numpy(choose(self.num_tiles, num_permutations, seed=permutation_seed))
        self.register_buffer("permutations", perms)  # (P, K), saved with the weights
        self._cpu_permutations = perms.clone()  # make_batch runs in (forked) CPU workers
        self.patch_size, self.patch_multiple, self.jitter = patch_size, patch_multiple, jitter
        self.pool_grid = pool_grid
        width = pooled_width(encoder, dim, pool_grid)
        self.tile = nn.Sequential(nn.Linear(width, tile_features), nn.ReLU(inplace=True))
        self.head = mlp(self.num_tiles * tile_features, hidden, num_permutations)

    def tiles(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, *spatial) → (B, K, C, *tile) in grid (lexicographic) order."""
        b, spatial = images.shape[0], images.shape[2:]
        size = _grid.grid_patch_size(spatial, self.grid, self.patch_size, self.patch_multiple)
        origins = _grid.jittered_origins(spatial, self.grid, size, b, generator, self.jitter)
        return _grid.extract(images, origins, size)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """→ {"tiles": (B, K, C, *tile) shuffled, "label": (B,) index into ``permutations``}.

        Puzzle slot k holds original tile ``permutations[label, k]``.
        """
        tiles = self.tiles(images, generator)
        labels = torch.randint(0, len(self.permutations), (images.shape[0],), generator=generator)
        order = self._cpu_permutations[labels]  # (B, K)
        shuffled = tiles[torch.arange(len(labels))[:, None], order]
        return {"tiles": shuffled, "label": labels}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tiles = encode_patches(self.encoder, batch["tiles"], self.pool_grid)  # (B, K, F·g^dim)
        features = self.tile(tiles)  # (B, K, tile_features)
        logits = self.head(features.flatten(1))
        return {"loss": F.cross_entropy(logits, batch["label"]), "accuracy": accuracy(logits, batch["label"])}

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """1 / number of permutations."""
        return 1.0 / len(self.permutations)
