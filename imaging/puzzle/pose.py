"""Per-puzzle pose and per-tile intensity changes, so a puzzle cannot be solved by a fixed template.

Synthetic (and registered real) brains are centred and alike: the mean tile at each grid position is
a good enough template to place almost every tile without learning anything. ``random_pose`` moves the
whole image before it is tiled — a random flip/90° turn (a signed permutation of the axes: 8 poses in
2D, 48 in 3D), a small rotation, a zoom and a shift — with one resampling, the same for all modalities of a
puzzle (they stay co-registered). ``jitter_intensity`` changes each tile's contrast, brightness and noise
on its own. Both are vectorised over the batch and draw from the caller's generator (reproducible).

Shapes: images (B, M, *S) with ``dim = len(S)`` spatial axes (2 or 3); tiles (B, K, *tile).

>>> import torch
>>> images = torch.arange(16.0).reshape(1, 1, 4, 4)
>>> turned = random_pose(images, torch.Generator().manual_seed(0), turns=True)
>>> sorted(turned.flatten().tolist()) == list(range(16))  # a pure turn/flip moves voxels, exactly
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def signed_permutations(b: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(B, dim, dim) random signed permutation matrices: every flip and 90° turn of a square/cube."""
    perm = torch.argsort(torch.rand(b, dim, generator=generator), dim=1)
    signs = torch.randint(0, 2, (b, dim), generator=generator).float() * 2 - 1
    return torch.zeros(b, dim, dim).scatter_(2, perm[..., None], signs[..., None])


def small_rotations(b: int, dim: int, max_degrees: float, generator: torch.Generator) -> torch.Tensor:
    """(B, dim, dim) rotations by angles uniform in ±``max_degrees`` (about each axis in 3D, composed)."""
    if max_degrees <= 0:
        return torch.eye(dim).expand(b, dim, dim).clone()
    planes = [(0, 1)] if dim == 2 else [(0, 1), (0, 2), (1, 2)]
    angles = (torch.rand(b, len(planes), generator=generator) * 2 - 1) * math.radians(max_degrees)
    out = torch.eye(dim).expand(b, dim, dim).clone()
    for p, (i, j) in enumerate(planes):
        rot = torch.eye(dim).expand(b, dim, dim).clone()
        c, s = torch.cos(angles[:, p]), torch.sin(angles[:, p])
        rot[:, i, i], rot[:, i, j], rot[:, j, i], rot[:, j, j] = c, -s, s, c
        out = rot @ out
    return out


def random_pose(
    images: torch.Tensor,
    generator: torch.Generator,
    turns: bool = False,
    max_degrees: float = 0.0,
    max_shift: float = 0.0,
    max_zoom: float = 0.0,
) -> torch.Tensor:
    """(B, M, *S) → (B, M, *S), each image (all its modalities alike) in a random pose.

    Args:
        turns: a random flip/90° turn per image (axes of unequal length are stretched onto each other).
        max_degrees: a further rotation by up to this many degrees (about every axis in 3D).
        max_shift: a shift of up to this fraction of each side, per axis.
        max_zoom: a scaling by exp(u), u uniform in ±``max_zoom`` (the same on every axis).

    Resampling is (bi/tri)linear with the border value outside the image; with no option set the
    images come back unchanged.
    """
    b, dim = images.shape[0], images.ndim - 2
    if not turns and max_degrees <= 0 and max_shift <= 0 and max_zoom <= 0:
        return images
    linear = small_rotations(b, dim, max_degrees, generator)
    if max_zoom > 0:  # the grid samples the input: a factor < 1 enlarges the anatomy
        zoom = torch.exp((torch.rand(b, 1, 1, generator=generator) * 2 - 1) * max_zoom)
        linear = linear * zoom
    if turns:
        linear = linear @ signed_permutations(b, dim, generator)
    shift = (torch.rand(b, dim, 1, generator=generator) * 2 - 1) * 2 * max_shift  # grid units span 2
    theta = torch.cat([linear, shift], dim=2).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter_intensity(tiles: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """(B, K, *tile) → same shape: each tile scaled by exp(±s), offset by ±s and given N(0, (s/2)²) noise.

    ``strength`` s = 0 returns the tiles unchanged; the values are drawn per tile, uniform in the ranges.
    """
    if strength <= 0:
        return tiles
    b, k = tiles.shape[:2]
    view = (b, k) + (1,) * (tiles.ndim - 2)
    scale = torch.exp((torch.rand(b, k, generator=generator) * 2 - 1) * strength).reshape(view)
    offset = ((torch.rand(b, k, generator=generator) * 2 - 1) * strength).reshape(view)
    noise = torch.randn(tiles.shape, generator=generator) * (strength / 2)
    return tiles * scale.to(tiles) + offset.to(tiles) + noise.to(tiles)


__all__ = ["jitter_intensity", "random_pose", "signed_permutations", "small_rotations"]
