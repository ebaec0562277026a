"""Multimodal jigsaw puzzles solved with the Sinkhorn operator (Taleb et al., IPMI 2021).

Each training image is a stack of M co-registered modalities (e.g. MRI T1, T2, FLAIR, or real and
synthetic contrasts). ``make_batch`` cuts it into an n×n (2D) or n×n×n (3D) grid, takes every tile from a
randomly chosen modality (modality confusion), crops each tile at a random offset inside its cell and
shuffles the tiles. ``forward`` encodes every tile with the one shared encoder — tiles are seen as
(B*K, 1, *tile), so the same weights serve every modality — scores "tile i belongs at position j" with a
head per grid size, and turns the scores into a soft permutation matrix with Gumbel-Sinkhorn. The loss is
the cross-entropy to the true permutation matrix and/or the error of the puzzle reordered by the soft
permutation; the metrics decode a hard permutation with the Hungarian algorithm.

>>> import torch
>>> from torch import nn
>>> class Tiny(nn.Module):
...     num_features = 8
...     def __init__(self):
...         super().__init__()
...         self.conv = nn.Conv2d(1, 8, 3, padding=1)
...     def forward_features(self, x):
...         return self.conv(x).mean(dim=(2, 3))
>>> task = MultimodalPuzzle(Tiny(), dim=2, grids=(2, 3), modalities=("t1", "t2"))
>>> batch = task.make_batch(torch.randn(4, 2, 24, 24), torch.Generator().manual_seed(0))
>>> batch["tiles"].shape[0], batch["tiles"].shape[2], batch["target"].shape[0]
(4, 1, 4)
>>> sorted(task(batch))
['loss', 'puzzle_accuracy', 'tile_accuracy']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from imaging.errors import ImagingError
from imaging.puzzle.pose import jitter_intensity, random_pose
from imaging.puzzle.sinkhorn import hungarian, log_sinkhorn, sample_gumbel
from imaging.puzzle.tiles import crop_cells, grid_cells, pick_modality, resize_tiles, shuffle_tiles, unshuffle
from imaging.registry import TASKS
from imaging.ssl.base import ProxyTask

LossKind = Literal["ce", "reconstruction", "both"]
HeadKind = Literal["attention", "mean"]

#: Options that make puzzles a fixed template cannot solve (benchmarks/puzzle_accuracy.py measures it):
#: per puzzle a random flip/90° turn, a rotation up to 20°, a zoom up to e^±0.3 and a shift up to 0.3 of
#: the side; 30% of each cell side cut away at a random offset; per-tile contrast/brightness/noise.
HARD_PUZZLES: dict[str, float | bool] = {
    "turns": True,
    "max_degrees": 20.0,
    "max_shift": 0.3,
    "max_zoom": 0.3,
    "gap": 0.3,
    "intensity": 0.5,
}


class PermutationHead(nn.Module):
    """Per-tile features (B, K, F) → (B, K, K) scores ``log_alpha[b, i, j]``: tile i belongs at position j.

    Each tile is scored from its own features and the mean of all tiles of its puzzle (the context), so
    the head works for any order of the tiles.
    """

    def __init__(self, num_features: int, num_tiles: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * num_features, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, num_tiles),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        context = features.mean(dim=1, keepdim=True).expand_as(features)
        return self.mlp(torch.cat([features, context], dim=-1))


class TileAttentionHead(nn.Module):
    """Per-tile features (B, K, F) → (B, K, K) scores from tiles that attend to each other.

    A small transformer without positional encodings lets every tile compare itself with every other
    tile of its puzzle before it is scored, so the head can place tiles relative to each other (needed
    once the pose of the puzzle varies). It is permutation-equivariant: permuting the input tiles
    permutes the output rows the same way.
    """

    def __init__(self, num_features: int, num_tiles: int, hidden: int = 256, layers: int = 2, heads: int = 4):
        super().__init__()
        if hidden % heads:
            raise ImagingError(
                f"puzzle head width {hidden} must be a multiple of its {heads} attention heads"
            )
        self.inp = nn.Linear(num_features, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, 2 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, num_tiles))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(features)))


def reconstruction_loss(soft: torch.Tensor, shuffled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the puzzle rebuilt by a soft permutation (Taleb et al. 2021).

    ``soft`` (B, K, K) doubly stochastic (``soft[b, i, j]``: tile i at position j), ``shuffled`` (B, K, ...)
    tiles, ``target`` (B, K) the true position of each. ``softᵀ · shuffled`` puts tiles at positions;
    the loss is 0 for the true permutation matrix (and only for a matrix that rebuilds the same puzzle).
    """
    flat = shuffled.flatten(2).float()  # (B, K, V)
    rebuilt = soft.transpose(1, 2) @ flat
    return F.mse_loss(rebuilt, unshuffle(flat, target))


@TASKS.register("puzzle")
class MultimodalPuzzle(ProxyTask):
    """Multimodal jigsaw puzzle with a permutation-matrix head and the Sinkhorn operator.

    Args:
        encoder: ``forward_features(x (N, 1, *tile)) -> (N, F)`` and ``num_features``.
        dim: 2 (images) or 3 (volumes).
        grid: cells per axis (K = grid**dim tiles); ignored when ``grids`` is given.
        grids: several grid sizes; each batch draws one (puzzles of varying complexity).
        modalities: the modality names (or their number) stacked as channels in ``make_batch``'s images;
            None accepts any number of channels.
        modality_confusion: draw every tile from a random modality; False takes all tiles of a puzzle from
            one random modality (the single-modality jigsaw baseline when there is one modality).
        gap: fraction of each cell side cut away; each tile is cropped at a random offset in its cell.
        tile_size: resize every tile to this side (voxels) so any grid fits the encoder; None keeps it.
        patch_multiple: without ``tile_size``, tile sides are cropped down to a multiple of this (a U-Net
            encoder of depth d needs 2**(d-1)) and kept at least twice it, resizing small cells up: at one
            voxel per axis the deepest instance norm would output a constant, and the encoder learn nothing.
        hidden: width of the permutation head.
        temperature, sinkhorn_iters: of the Sinkhorn operator.
        noise_factor: Gumbel noise scale added to the scores while training (0 = plain Sinkhorn).
        loss: "ce" (cross-entropy to the true permutation matrix), "reconstruction" (mean squared error of
            the puzzle reordered by the soft permutation against the ordered one) or "both".
        reconstruction_weight: weight of the reconstruction term when ``loss="both"``.
        head: "attention" (tiles attend to each other, ``TileAttentionHead``) or "mean" (each tile
            scored from itself and the mean of its puzzle's tiles, ``PermutationHead``).
        turns, max_degrees, max_shift, max_zoom: per-puzzle pose before tiling (``imaging.puzzle.pose.random_pose``).
        intensity: per-tile contrast/brightness/noise strength (``imaging.puzzle.pose.jitter_intensity``).
        ``HARD_PUZZLES`` holds values that defeat a template matcher.
    """

    dims: ClassVar[tuple[int, ...]] = (2, 3)
    encoder_in_chans: ClassVar[int | None] = 1  # the encoder sees single-modality tiles, whatever M is
    accuracy_key: ClassVar[str] = "tile_accuracy"  # held-out proxy accuracy: tiles placed right
    # What `contig ssl --task puzzle` builds unless task_options say otherwise: centred, alike synthetic
    # brains make the constructor's plain puzzles solvable by a template without learning.
    ssl_defaults: ClassVar[dict[str, float | bool]] = HARD_PUZZLES

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        grid: int = 3,
        grids: Sequence[int] | None = None,
        modalities: Sequence[str] | int | None = None,
        modality_confusion: bool = True,
        gap: float = 0.125,
        tile_size: int | None = None,
        patch_multiple: int = 1,
        hidden: int = 256,
        temperature: float = 1.0,
        sinkhorn_iters: int = 20,
        noise_factor: float = 0.1,
        loss: LossKind = "ce",
        reconstruction_weight: float = 1.0,
        head: HeadKind = "attention",
        turns: bool = False,
        max_degrees: float = 0.0,
        max_shift: float = 0.0,
        max_zoom: float = 0.0,
        intensity: float = 0.0,
    ):
        super().__init__(encoder, dim)
        self.grids = tuple(int(g) for g in (grids if grids else (grid,)))
        if not self.grids or min(self.grids) < 2:
            raise ImagingError(f"puzzle grid sizes must be >= 2 cells per axis, got {self.grids}")
        if isinstance(modalities, int):
            names: list[str] | None = [f"m{i}" for i in range(modalities)]
        else:
            names = None if modalities is None else list(modalities)
        if names is not None and not names:
            raise ImagingError("give the puzzle at least one modality (modalities=t1,t2,...)")
        if patch_multiple < 1:
            raise ImagingError(f"patch_multiple must be >= 1, got {patch_multiple}")
        if not 0.0 <= gap < 1.0:
            raise ImagingError(f"gap must be in [0, 1), got {gap}")
        if loss not in ("ce", "reconstruction", "both"):
            raise ImagingError(f"loss must be 'ce', 'reconstruction' or 'both', got {loss!r}")
        if temperature <= 0 or sinkhorn_iters < 1:
            raise ImagingError("temperature must be > 0 and sinkhorn_iters >= 1")
        if head not in ("attention", "mean"):
            raise ImagingError(f"puzzle head must be 'attention' or 'mean', got {head!r}")
        if max_degrees < 0 or not 0 <= max_shift < 0.5 or not 0 <= max_zoom < 1 or intensity < 0:
            raise ImagingError(
                f"puzzle pose needs max_degrees >= 0, 0 <= max_shift < 0.5, 0 <= max_zoom < 1, intensity >= 0; "
                f"got {max_degrees}, {max_shift}, {max_zoom}, {intensity}"
            )
        self.turns, self.max_degrees, self.max_shift = bool(turns), float(max_degrees), float(max_shift)
        self.max_zoom = float(max_zoom)
        self.intensity, self.head_kind = float(intensity), head
        self.modalities = None if names is None else tuple(names)
        self.modality_confusion, self.gap, self.tile_size = modality_confusion, gap, tile_size
        self.patch_multiple = patch_multiple
        self.temperature, self.sinkhorn_iters, self.noise_factor = temperature, sinkhorn_iters, noise_factor
        self.loss_kind, self.reconstruction_weight = loss, reconstruction_weight
        features = int(encoder.num_features)
        kind = TileAttentionHead if head == "attention" else PermutationHead
        self.heads = nn.ModuleDict({str(g): kind(features, g**dim, hidden) for g in self.grids})

    # ------------------------------------------------------------------------------------- batches
    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, M, *spatial) co-registered modalities → shuffled single-modality tiles and their targets.

        Returns:
            tiles: (B, K, 1, *tile) float, shuffled; target: (B, K) long, the grid position of each
            shuffled tile; modality: (B, K) long, the modality each shuffled tile was taken from.
        """
        expected = None if self.modalities is None else len(self.modalities)
        if images.ndim != self.dim + 2 or (expected is not None and images.shape[1] != expected):
            names = "any" if self.modalities is None else ", ".join(self.modalities)
            raise ImagingError(
                f"puzzle images must be (B, M, *{self.dim} spatial axes) with M channels for modalities "
                f"{names}; got {tuple(images.shape)}; stack the co-registered modalities as channels"
            )
        b, m = images.shape[:2]
        n = self.grids[int(torch.randint(len(self.grids), (), generator=generator))]
        images = random_pose(
            images.float(), generator, self.turns, self.max_degrees, self.max_shift, self.max_zoom
        )
        cells = grid_cells(images, n)  # (B, M, K, *cell)
        k, cell = cells.shape[2], cells.shape[3:]
        if self.modality_confusion:
            modality = torch.randint(m, (b, k), generator=generator)
        else:
            modality = torch.randint(m, (b, 1), generator=generator).expand(b, k)
        picked = pick_modality(cells, modality)  # (B, K, *cell)
        tile = tuple(max(1, round(c * (1.0 - self.gap))) for c in cell)
        size: tuple[int, ...] | int | None = self.tile_size
        if size is None and self.patch_multiple > 1:
            pm = self.patch_multiple
            size = tuple(max(2 * pm, t // pm * pm) for t in tile)
            tile = tuple(min(s, t) for s, t in zip(size, tile, strict=True))
        room = torch.tensor([c - t + 1 for c, t in zip(cell, tile, strict=True)], dtype=torch.float64)
        offsets = (torch.rand(b, k, self.dim, generator=generator, dtype=torch.float64) * room).long()
        tiles = jitter_intensity(crop_cells(picked, tile, offsets), self.intensity, generator)
        if size is not None:
            tiles = resize_tiles(tiles, size)
        shuffled, target = shuffle_tiles(tiles, generator)
        rows = torch.arange(b)[:, None]
        return {
            "tiles": shuffled.unsqueeze(2).contiguous(),
            "target": target,
            "modality": modality[rows, target],
        }

    # ------------------------------------------------------------------------------------- model
    def scores(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, K, 1, *tile) shuffled tiles → (B, K, K) scores ``log_alpha`` (tile i at position j)."""
        b, k = tiles.shape[:2]
        n = round(k ** (1.0 / self.dim))
        if str(n) not in self.heads or n**self.dim != k:
            raise ImagingError(f"{k} tiles do not form a grid this task was built for ({self.grids})")
        features = self.encoder.forward_features(tiles.flatten(0, 1))  # (B*K, F)
        return self.heads[str(n)](features.reshape(b, k, -1))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tiles, target = batch["tiles"], batch["target"]
        log_alpha = self.scores(tiles)
        noisy = log_alpha
        if self.training and self.noise_factor > 0:
            noisy = log_alpha + self.noise_factor * sample_gumbel(log_alpha.shape, None, log_alpha.device)
        log_p = log_sinkhorn(noisy.float() / self.temperature, self.sinkhorn_iters)  # (B, K, K)
        k = target.shape[1]
        loss = log_p.new_zeros(())
        if self.loss_kind in ("ce", "both"):
            # −Σ_ij P_ij log S_ij per tile: P is one-hot in each row.
            loss = loss + F.nll_loss(log_p.reshape(-1, k), target.reshape(-1))
        if self.loss_kind in ("reconstruction", "both"):
            term = reconstruction_loss(log_p.exp(), tiles, target)
            loss = loss + (self.reconstruction_weight if self.loss_kind == "both" else 1.0) * term
        with torch.no_grad():
            correct = hungarian(log_alpha) == target
        return {
            "loss": loss,
            "tile_accuracy": correct.float().mean(),
            "puzzle_accuracy": correct.all(dim=1).float().mean(),
        }

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """1 / K: the tile accuracy of a random permutation of the batch's K tiles."""
        return 1.0 / batch["target"].shape[1]

    @torch.no_grad()
    def solve(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, K, 1, *tile) shuffled tiles → (B, K) long, the decoded grid position of each tile."""
        return hungarian(self.scores(tiles))


@torch.no_grad()
def held_out_accuracy(
    task: MultimodalPuzzle, images: torch.Tensor, confusion: bool = True, seed: int = 0
) -> dict[int, tuple[float, float]]:
    """grid → (tile accuracy, exact-puzzle accuracy) on unseen ``images`` (N, M, *S), one batch per grid.

    ``confusion``: tiles drawn from random modalities (True) or all from one. The task is evaluated in eval
    mode; its grids, modality confusion and training mode are restored afterwards.
    """
    saved, training = (task.grids, task.modality_confusion), task.training
    device = next(task.parameters()).device
    task.eval()
    results = {}
    try:
        for grid in saved[0]:
            task.grids, task.modality_confusion = (grid,), confusion
            batch = task.make_batch(images, torch.Generator().manual_seed(seed))
            out = task({k: v.to(device) for k, v in batch.items()})
            results[grid] = (float(out["tile_accuracy"]), float(out["puzzle_accuracy"]))
    finally:
        task.grids, task.modality_confusion = saved
        task.train(training)
    return results


def chance_accuracy(num_tiles: int) -> tuple[float, float]:
    """(per-tile, exact-puzzle) accuracy of a random permutation of ``num_tiles`` tiles: 1/K and 1/K!."""
    import math

    return 1.0 / num_tiles, 1.0 / math.factorial(num_tiles)


__all__ = [
    "HARD_PUZZLES",
    "MultimodalPuzzle",
    "PermutationHead",
    "TileAttentionHead",
    "chance_accuracy",
    "held_out_accuracy",
    "reconstruction_loss",
]
