"""Patch grids shared by the patch tasks (RPL, jigsaw, CPC): cell geometry, jittered origins, extraction.

A grid of ``n`` cells per axis splits each spatial side into cells of ``side // n`` voxels (the remainder
is left as an even border); each cell holds one patch whose origin is jittered inside the cell, which
leaves a gap between neighbouring patches so the network cannot solve the task from edge continuity.
Cells are numbered in lexicographic (C) order of their grid index.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from imaging.augment import gather_boxes
from imaging.errors import ImagingError


def cell_index(grid: Sequence[int]) -> torch.Tensor:
    """(K, dims) grid indices of the K = prod(grid) cells in lexicographic order."""
    return torch.tensor(list(itertools.product(*(range(n) for n in grid))), dtype=torch.long)


def _default_patch(cell: int, multiple: int) -> int:
    """Default patch side in a cell of ``cell`` voxels: the largest multiple leaving a gap of cell // 8 (≥ 1)."""
    return ((cell - max(1, cell // 8)) // multiple) * multiple


def smallest_grid_side(cells: int, multiple: int) -> int:
    """The smallest image side whose default patches (``cells`` per side) span ≥ 2 × ``multiple`` voxels.

    >>> smallest_grid_side(3, 4), smallest_grid_side(3, 8)
    (27, 54)
    """
    side = cells
    while _default_patch(side // cells, multiple) < 2 * multiple:
        side += 1
    return side


def grid_patch_size(
    spatial: Sequence[int], grid: Sequence[int], patch_size: int | Sequence[int] | None, multiple: int
) -> tuple[int, ...]:
    """The patch size of a grid: ``patch_size`` if given, else the largest multiple of ``multiple``
    that leaves a gap of at least ``cell // 8`` (≥ 1 voxel) in each cell.

    Raises:
        ImagingError: the patches do not fit their cells, or (default patches, ``multiple`` > 1) an encoder
            pooling by ``multiple`` would see each patch as one voxel at its deepest level, where nothing
            can be learnt; the message names the smallest workable image size.
    """
    cells = [n // k for n, k in zip(spatial, grid, strict=True)]
    if patch_size is not None:
        size = (patch_size,) * len(cells) if isinstance(patch_size, int) else tuple(patch_size)
    else:
        size = tuple(_default_patch(c, multiple) for c in cells)
    if any(s < 1 or s > c for s, c in zip(size, cells, strict=True)):
        raise ImagingError(
            f"images of size {tuple(spatial)} split into a {tuple(grid)} grid give cells of {tuple(cells)} "
            f"voxels, too small for patches of {size}; use larger images (size=...), a smaller "
            "patch_size or a smaller patch_multiple"
        )
    if patch_size is None and multiple > 1 and all(s // multiple <= 1 for s in size):
        # Seen at 24³ with depth 3: one voxel per patch at the deepest level, instance norm outputs a
        # constant there and the encoder gets no gradient at all. Refused rather than trained for nothing.
        smallest = tuple(smallest_grid_side(k, multiple) for k in grid)
        raise ImagingError(
            f"patches of {size} voxels reach an encoder pooling by {multiple} as one voxel, where it cannot "
            f"learn; use images of at least {smallest} voxels (size=...), a shallower encoder or a smaller grid"
        )
    return size


def jittered_origins(
    spatial: Sequence[int],
    grid: Sequence[int],
    patch: Sequence[int],
    batch: int,
    generator: torch.Generator,
    jitter: bool = True,
) -> torch.Tensor:
    """(B, K, dims) patch origins: cell start + a random (or, without jitter, centred) offset in the cell."""
    cells = torch.tensor([n // k for n, k in zip(spatial, grid, strict=True)])
    border = (torch.tensor(list(spatial)) - cells * torch.tensor(list(grid))) // 2
    room = cells - torch.tensor(list(patch))  # (dims,)
    index = cell_index(grid)  # (K, dims)
    if jitter:
        offset = (torch.rand(batch, len(index), len(cells), generator=generator) * (room + 1)).long()
    else:
        offset = (room // 2).expand(batch, len(index), len(cells))
    return border + index * cells + offset


def sliding_origins(
    spatial: Sequence[int],
    patch: Sequence[int],
    stride: Sequence[int],
    batch: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Overlapping grid (CPC): origins (B, K, dims) with one random shift of the whole grid per sample.

    Returns the origins and the grid shape (K = prod(grid)).
    """
    grid = tuple((n - p) // s + 1 for n, p, s in zip(spatial, patch, stride, strict=True))
    if any(k < 2 for k in grid):
        raise ImagingError(
            f"images of size {tuple(spatial)} hold fewer than 2 patches of {tuple(patch)} (stride "
            f"{tuple(stride)}) along an axis; use larger images or a smaller patch_size"
        )
    span = torch.tensor([(k - 1) * s + p for k, p, s in zip(grid, patch, stride, strict=True)])
    room = torch.tensor(list(spatial)) - span
    shift = (torch.rand(batch, 1, len(grid), generator=generator) * (room + 1)).long()
    return shift + cell_index(grid) * torch.tensor(list(stride)), grid


def extract(images: torch.Tensor, origins: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """(B, C, *spatial) and origins (B, K, dims) → patches (B, K, C, *patch)."""
    return gather_boxes(images, origins, patch)
