"""A no-learning control for the puzzle task: place each tile where the mean tile looks most like it.

``TemplateMatcher.fit`` averages the tiles that training puzzles put at each grid position, per modality
(the templates, (M, K, V)); ``scores`` compares every shuffled tile with every template — Pearson
correlation or negative mean squared error, the best over modalities — and the Hungarian algorithm
turns the (B, K, K) scores into a permutation, exactly as the learned task decodes its own scores.
When people are centred and alike this solves most puzzles; a puzzle task is only worth its name when
its learned accuracy stands above this control on the same held-out puzzles.

>>> import torch
>>> from imaging.puzzle.task import MultimodalPuzzle
>>> class Mean(torch.nn.Module):
...     num_features = 1
...     def forward_features(self, x):
...         return x.flatten(1).mean(1, keepdim=True)
>>> task = MultimodalPuzzle(Mean(), dim=2, grid=2, modalities=1, head="mean", gap=0.0)
>>> images = torch.arange(16.0).reshape(1, 1, 4, 4).expand(3, 1, 4, 4)
>>> matcher = TemplateMatcher("mse").fit(task, images, seed=0)
>>> matcher.evaluate(task, images, seed=1)["tile_accuracy"]
1.0
"""

from __future__ import annotations

from typing import Literal

import torch

from imaging.errors import ImagingError
from imaging.puzzle.sinkhorn import hungarian
from imaging.puzzle.tiles import unshuffle

Metric = Literal["correlation", "mse"]


class TemplateMatcher:
    """Mean-tile templates per (modality, position), matched by ``metric`` and decoded by Hungarian."""

    def __init__(self, metric: Metric = "correlation"):
        if metric not in ("correlation", "mse"):
            raise ImagingError(f"template metric must be 'correlation' or 'mse', got {metric!r}")
        self.metric = metric
        self.templates: dict[int, torch.Tensor] = {}  # K → (M, K, V)

    @torch.no_grad()
    def fit(self, task, images: torch.Tensor, seed: int = 0, repeats: int = 4) -> TemplateMatcher:
        """Average ``repeats`` rounds of the task's puzzles of ``images`` (N, M, *S) per grid in ``task.grids``."""
        saved = task.grids
        m = images.shape[1]
        try:
            for grid in saved:
                task.grids = (grid,)
                sums, counts = None, None
                for r in range(repeats):
                    batch = task.make_batch(images, torch.Generator().manual_seed(seed * 1000 + r))
                    target, modality = batch["target"], batch["modality"]
                    tiles = unshuffle(batch["tiles"].flatten(2).double(), target)  # (B, K, V) ordered
                    ordered_modality = unshuffle(modality, target)  # (B, K)
                    k, v = tiles.shape[1:]
                    if sums is None:
                        sums, counts = torch.zeros(m, k, v, dtype=torch.float64), torch.zeros(m, k, 1)
                    onehot = torch.nn.functional.one_hot(ordered_modality, m).double()  # (B, K, M)
                    sums += torch.einsum("bkm,bkv->mkv", onehot, tiles)
                    counts += onehot.sum(0).T[..., None].float()
                self.templates[grid**task.dim] = (sums / counts.clamp(min=1).double()).float()
        finally:
            task.grids = saved
        return self

    def scores(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, K, 1, *tile) shuffled tiles → (B, K, K) scores (tile i at position j), best modality."""
        b, k = tiles.shape[:2]
        if k not in self.templates:
            raise ImagingError(f"no templates for puzzles of {k} tiles; fit the matcher on the same grids")
        templates = self.templates[k]  # (M, K, V)
        flat = tiles.reshape(b, k, -1).float()
        if flat.shape[-1] != templates.shape[-1]:
            raise ImagingError("tile size differs from the templates'; fit the matcher with the same task")
        if self.metric == "correlation":
            a = flat - flat.mean(-1, keepdim=True)
            a = a / a.norm(dim=-1, keepdim=True).clamp(min=1e-8)
            t = templates - templates.mean(-1, keepdim=True)
            t = t / t.norm(dim=-1, keepdim=True).clamp(min=1e-8)
            per_modality = torch.einsum("biv,mjv->bmij", a, t)
        else:
            per_modality = -(
                torch.cdist(flat[:, None].expand(b, len(templates), k, -1), templates[None]) ** 2
            )
        return per_modality.max(dim=1).values

    @torch.no_grad()
    def evaluate(self, task, images: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Accuracy on the task's puzzles of ``images`` (N, M, *S): one batch per grid, pooled.

        Returns tile_accuracy, puzzle_accuracy, tiles (count) and puzzles (count).
        """
        saved = task.grids
        correct_tiles, tiles, solved, puzzles = 0, 0, 0, 0
        try:
            for grid in saved:
                task.grids = (grid,)
                batch = task.make_batch(images, torch.Generator().manual_seed(seed))
                correct = hungarian(self.scores(batch["tiles"])) == batch["target"]
                correct_tiles, tiles = correct_tiles + int(correct.sum()), tiles + correct.numel()
                solved, puzzles = solved + int(correct.all(1).sum()), puzzles + correct.shape[0]
        finally:
            task.grids = saved
        return {
            "tile_accuracy": correct_tiles / tiles,
            "puzzle_accuracy": solved / puzzles,
            "tiles": tiles,
            "puzzles": puzzles,
        }


__all__ = ["TemplateMatcher"]
