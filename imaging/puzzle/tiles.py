"""Vectorised puzzle construction: cut co-registered images into a grid, pick a modality per tile, shuffle.

Every function works on whole batches with tensor indexing (no loops over voxels or samples).
Shapes: images (B, M, *S) with M co-registered modalities and ``dim = len(S)`` spatial axes (2 or 3);
a grid of n cells per axis gives K = n**dim tiles.

>>> import torch
>>> images = torch.arange(16.0).reshape(1, 1, 4, 4)
>>> grid_cells(images, 2)[0, 0, :, 0, 0].tolist()  # top-left voxel of each cell, row-major
[0.0, 2.0, 8.0, 10.0]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_cells(images: torch.Tensor, n: int) -> torch.Tensor:
    """(B, M, *S) → (B, M, K, *cell): the n**dim cells of a grid, in row-major order of their positions.

    Each axis is centre-cropped to n × (S // n) voxels first.
    """
    b, m, *spatial = images.shape
    dim = len(spatial)
    cell = [s // n for s in spatial]
    if min(cell) < 1:
        raise ValueError(f"images of spatial shape {tuple(spatial)} are too small for a {n}-cell grid")
    crops = [slice((s - n * c) // 2, (s - n * c) // 2 + n * c) for s, c in zip(spatial, cell, strict=True)]
    images = images[(slice(None), slice(None), *crops)]
    view = [b, m]
    for c in cell:
        view += [n, c]
    order = [0, 1] + [2 + 2 * i for i in range(dim)] + [3 + 2 * i for i in range(dim)]
    return images.reshape(view).permute(order).reshape(b, m, n**dim, *cell)


def pick_modality(cells: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
    """(B, M, K, *cell) and (B, K) long modality indices → (B, K, *cell), each cell from its modality."""
    b, _, k = cells.shape[:3]
    rows = torch.arange(b, device=cells.device)[:, None]
    positions = torch.arange(k, device=cells.device)[None, :]
    return cells[rows, modality, positions]


def crop_cells(cells: torch.Tensor, tile: tuple[int, ...], offsets: torch.Tensor) -> torch.Tensor:
    """(B, K, *cell) → (B, K, *tile): each cell cropped at its own offset ``offsets`` (B, K, dim) long.

    Random offsets (a "gap" between tiles) stop the network from solving the puzzle by matching the
    voxels along the edges of neighbouring tiles.
    """
    b, k, *cell = cells.shape
    dim = len(cell)
    index: list[torch.Tensor] = [
        torch.arange(b, device=cells.device).reshape(b, 1, *([1] * dim)),
        torch.arange(k, device=cells.device).reshape(1, k, *([1] * dim)),
    ]
    for axis in range(dim):
        span = offsets[..., axis, None] + torch.arange(tile[axis], device=cells.device)  # (B, K, t)
        shape = [b, k] + [1] * dim
        shape[2 + axis] = tile[axis]
        index.append(span.reshape(shape))
    return cells[tuple(index)]


def resize_tiles(tiles: torch.Tensor, size: int | tuple[int, ...]) -> torch.Tensor:
    """(B, K, *tile) → (B, K, *size) by (bi/tri)linear interpolation; an int ``size`` means a square/cube."""
    b, k, *tile = tiles.shape
    size = (size,) * len(tile) if isinstance(size, int) else tuple(size)
    if tuple(tile) == size:
        return tiles
    mode = "bilinear" if len(tile) == 2 else "trilinear"
    flat = F.interpolate(tiles.reshape(b * k, 1, *tile), size=size, mode=mode, align_corners=False)
    return flat.reshape(b, k, *flat.shape[2:])


def shuffle_tiles(tiles: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, ...) → (shuffled (B, K, ...), target (B, K) long) with ``shuffled[b, i] = tiles[b, target[b, i]]``.

    ``target[b, i]`` is the grid position of shuffled tile i, so ``one_hot(target)`` is the permutation
    matrix P with P[b, i, j] = 1 when shuffled tile i belongs at position j.
    """
    b, k = tiles.shape[:2]
    target = torch.argsort(torch.rand(b, k, generator=generator), dim=1).to(tiles.device)
    rows = torch.arange(b, device=tiles.device)[:, None]
    return tiles[rows, target], target


def unshuffle(shuffled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Inverse of ``shuffle_tiles``: put shuffled tile i back at position ``target[b, i]``."""
    rows = torch.arange(shuffled.shape[0], device=shuffled.device)[:, None]
    ordered = torch.empty_like(shuffled)
    ordered[rows, target] = shuffled
    return ordered


__all__ = ["crop_cells", "grid_cells", "pick_modality", "resize_tiles", "shuffle_tiles", "unshuffle"]
