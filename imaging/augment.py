"""Batched random augmentations of 2D and 3D images on tensors, one random draw per sample.

Every function takes images (B, C, *spatial) (2 or 3 spatial axes), a ``torch.Generator`` (so a batch's
augmentation is reproducible from its seed) and returns a tensor of the same shape unless stated. Nothing
loops over voxels; the only Python loops run over the handful of rotation classes or spatial axes.

>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(4, 1, 8, 8, 8)
>>> random_flip(x, g).shape, random_resized_crop(x, g, (0.5, 1.0), (6, 6, 6)).shape
(torch.Size([4, 1, 8, 8, 8]), torch.Size([4, 1, 6, 6, 6]))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _spatial_dims(x: torch.Tensor) -> int:
    if x.dim() not in (4, 5):
        raise ValueError(f"expected images (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}")
    return x.dim() - 2


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, C) → broadcastable against x (B, C, *spatial)."""
    return values.reshape(*values.shape, *([1] * (x.dim() - values.dim()))).to(x.dtype)


def random_flip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each spatial axis of each sample independently with probability ``p``."""
    out = x.clone()
    for axis in range(2, x.dim()):
        chosen = (torch.rand(x.shape[0], generator=g) < p).nonzero().flatten()
        if chosen.numel():
            out[chosen] = out[chosen].flip(axis)
    return out


def rotation_table(dim: int) -> list[tuple[int, tuple[int, int]]]:
    """The (k, plane) of each rotation class: identity + k·90° about each axis (3D: 10, 2D: 4 classes).

    Planes index the spatial axes of (B, C, *spatial): 2D rotates (H, W); 3D rotation about D rotates
    (H, W), about H rotates (D, W), about W rotates (D, H).
    """
    if dim == 2:
        return [(k, (2, 3)) for k in range(4)]
    if dim == 3:
        planes = [(3, 4), (2, 4), (2, 3)]
        return [(0, (3, 4))] + [(k, plane) for plane in planes for k in (1, 2, 3)]
    raise ValueError(f"dim must be 2 or 3, got {dim}")


def rotate(x: torch.Tensor, classes: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate each sample by its class of ``rotation_table`` (inverse: rotate back).

    x: (B, C, *spatial) with equal sides in every rotated plane; classes: (B,) long.
    """
    table = rotation_table(_spatial_dims(x))
    out = x.clone()
    for index, (k, plane) in enumerate(table):
        chosen = (classes == index).nonzero().flatten()
        if k == 0 or chosen.numel() == 0:
            continue
        out[chosen] = torch.rot90(x[chosen], -k if inverse else k, plane)
    return out


def center_cube(x: torch.Tensor) -> torch.Tensor:
    """Centre crop (B, C, *spatial) to equal sides (the smallest), so 90° rotations keep the shape."""
    side = min(x.shape[2:])
    slices = [slice((n - side) // 2, (n - side) // 2 + side) for n in x.shape[2:]]
    return x[(slice(None), slice(None), *slices)]


def random_rot90(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Rotate each sample by a random class of ``rotation_table`` (identity included); needs equal sides."""
    if len(set(x.shape[2:])) != 1:
        raise ValueError(f"random_rot90 needs equal spatial sides, got {tuple(x.shape[2:])}")
    classes = torch.randint(0, len(rotation_table(_spatial_dims(x))), (x.shape[0],), generator=g)
    return rotate(x, classes)


def random_intensity(
    x: torch.Tensor,
    g: torch.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    per_channel: bool = False,
) -> torch.Tensor:
    """x · c + b with c ~ U(1 − contrast, 1 + contrast) and b ~ U(−brightness, brightness) × std(x)."""
    shape = (x.shape[0], x.shape[1]) if per_channel else (x.shape[0],)
    n = math.prod(shape)
    scale = _uniform(n, 1 - contrast, 1 + contrast, g).reshape(shape)
    shift = _uniform(n, -brightness, brightness, g).reshape(shape)
    std = x.flatten(1).std(dim=1).clamp_min(1e-6)
    return x * _per_sample(scale, x) + _per_sample(shift, x) * _per_sample(std, x)


def gaussian_noise(x: torch.Tensor, g: torch.Generator, std: float = 0.1, p: float = 0.5) -> torch.Tensor:
    """Add N(0, σ²) noise, σ ~ U(0, std), to a fraction ``p`` of the samples."""
    sigma = _uniform(x.shape[0], 0.0, std, g) * (torch.rand(x.shape[0], generator=g) < p)
    return x + _per_sample(sigma, x) * torch.randn(x.shape, generator=g, dtype=x.dtype)


def gaussian_blur(
    x: torch.Tensor, g: torch.Generator, sigma: tuple[float, float] = (0.1, 1.5), p: float = 0.5
) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample σ ~ U(sigma) on a fraction ``p`` of the samples."""
    dims, radius = _spatial_dims(x), max(1, math.ceil(3 * sigma[1]))
    s = _uniform(x.shape[0], *sigma, g)
    chosen = (torch.rand(x.shape[0], generator=g) < p).nonzero().flatten()
    if chosen.numel() == 0:
        return x
    out = x.clone()
    out[chosen] = _blur(x[chosen], s[chosen], radius, dims)
    return out


def _blur(x: torch.Tensor, s: torch.Tensor, radius: int, dims: int) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, *spatial) with σ = s (B,), kernel radius ``radius``."""
    b, c = x.shape[:2]
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t[None] / s[:, None].to(x.dtype)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    out = x.reshape(1, b * c, *x.shape[2:])
    conv = F.conv2d if dims == 2 else F.conv3d
    for axis in range(dims):
        shape = [1] * dims
        shape[axis] = kernel.shape[1]
        pad = [0, 0] * dims
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="replicate"), kernel.reshape(b * c, 1, *shape), groups=b * c)
    return out.reshape(x.shape)


def cutout(
    x: torch.Tensor, g: torch.Generator, size: tuple[float, float] = (0.1, 0.3), p: float = 0.5
) -> torch.Tensor:
    """Zero one random box per sample (side fraction ~ U(size) per axis) on a fraction ``p`` of samples."""
    b, spatial = x.shape[0], x.shape[2:]
    box = torch.ones(b, *spatial, dtype=torch.bool)
    hit = torch.rand(b, generator=g) < p
    for axis, n in enumerate(spatial):
        side = (_uniform(b, *size, g) * n).round().long().clamp(1, n)
        start = (torch.rand(b, generator=g) * (n - side + 1)).long()
        coord = torch.arange(n)
        inside = (coord >= start[:, None]) & (coord < (start + side)[:, None])  # (B, n)
        view = [b] + [1] * len(spatial)
        view[axis + 1] = n
        box = box & inside.reshape(view)
    keep = ~box | ~hit.reshape(b, *([1] * len(spatial)))
    return x * keep[:, None].to(x.dtype)


def random_resized_crop(
    x: torch.Tensor,
    g: torch.Generator,
    scale: tuple[float, float] = (0.5, 1.0),
    out_size: Sequence[int] | None = None,
    aspect: float = 0.2,
) -> torch.Tensor:
    """Crop a random box (volume fraction ~ U(scale), side ratios within ±``aspect``) and resize it.

    A scale above 1 zooms out (the border is zero-padded). Linear interpolation through
    ``grid_sample``; returns (B, C, *out_size) (default: the input size).
    """
    b, dims = x.shape[0], _spatial_dims(x)
    out_size = tuple(out_size or x.shape[2:])
    fraction = _uniform(b, *scale, g) ** (1.0 / dims)  # side fraction per axis
    sides = fraction[:, None] * _uniform(b * dims, 1 - aspect, 1 + aspect, g).reshape(b, dims)
    sides = sides.clamp(max=max(1.0, scale[1] ** (1.0 / dims) * (1 + aspect)))
    room = (1 - sides).clamp(min=0)
    centers = (torch.rand(b, dims, generator=g) * 2 - 1) * room  # in [-1, 1] normalised coordinates
    theta = torch.zeros(b, dims, dims + 1, dtype=x.dtype)
    # affine_grid orders coordinates (x=W, y=H[, z=D]): reverse the spatial axes.
    theta[:, range(dims), range(dims)] = sides.flip(1).to(x.dtype)
    theta[:, :, dims] = centers.flip(1).to(x.dtype)
    grid = F.affine_grid(theta, [b, x.shape[1], *out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(x: torch.Tensor, g: torch.Generator, size: Sequence[int]) -> torch.Tensor:
    """A random (B, C, *size) crop at one integer offset per sample (gathered, no interpolation)."""
    spatial = x.shape[2:]
    if any(s > n for s, n in zip(size, spatial, strict=True)):
        raise ValueError(f"crop {tuple(size)} is larger than the images {tuple(spatial)}")
    origins = torch.stack(
        [torch.randint(0, n - s + 1, (x.shape[0],), generator=g) for s, n in zip(size, spatial, strict=True)],
        1,
    )
    return gather_boxes(x, origins[:, None], size)[:, 0]


def gather_boxes(x: torch.Tensor, origins: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Boxes of ``size`` at integer ``origins`` (B, K, dims): (B, C, *spatial) → (B, K, C, *size)."""
    b, k, dims = origins.shape
    channels_last = x.movedim(1, -1)  # (B, *spatial, C)
    index: list[torch.Tensor] = [torch.arange(b).reshape(b, 1, *([1] * dims))]
    for axis in range(dims):
        coord = origins[:, :, axis, None] + torch.arange(size[axis])  # (B, K, s)
        shape = [b, k] + [1] * dims
        shape[2 + axis] = size[axis]
        index.append(coord.reshape(shape))
    boxes = channels_last[tuple(index)]  # (B, K, *size, C)
    return boxes.movedim(-1, 2).contiguous()


@dataclass
class ViewAugment:
    """The SimCLR/exemplar view pipeline: crop-resize, flips, 90° rotations, intensity, blur, noise, cutout.

    Set a probability or strength to 0 to drop a step. ``__call__(x, g)`` maps (B, C, *spatial) to one
    augmented view of the same shape (or (B, C, *out_size)).
    """

    crop_scale: tuple[float, float] = (0.4, 1.0)
    out_size: tuple[int, ...] | None = None
    flip: float = 0.5
    rotate: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    per_channel: bool = False
    blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    noise: float = 0.5
    noise_std: float = 0.1
    cutout: float = 0.3
    cutout_size: tuple[float, float] = (0.1, 0.3)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.crop_scale != (1.0, 1.0) or self.out_size is not None:
            x = random_resized_crop(x, g, self.crop_scale, self.out_size)
        if self.flip > 0:
            x = random_flip(x, g, self.flip)
        if self.rotate and len(set(x.shape[2:])) == 1:
            x = random_rot90(x, g)
        if self.brightness > 0 or self.contrast > 0:
            x = random_intensity(x, g, self.brightness, self.contrast, self.per_channel)
        if self.blur > 0:
            x = gaussian_blur(x, g, self.blur_sigma, self.blur)
        if self.noise > 0:
            x = gaussian_noise(x, g, self.noise_std, self.noise)
        if self.cutout > 0:
            x = cutout(x, g, self.cutout_size, self.cutout)
        return x


def grid_offsets(dim: int, include_center: bool = False) -> torch.Tensor:
    """All neighbour offsets in {-1, 0, 1}^dim in lexicographic order: (3^dim − 1, dim) (26 in 3D, 8 in 2D)."""
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=dim) if include_center or any(o)]
    return torch.tensor(offsets, dtype=torch.long)


__all__ = [
    "ViewAugment",
    "center_cube",
    "cutout",
    "gather_boxes",
    "gaussian_blur",
    "gaussian_noise",
    "grid_offsets",
    "random_crop",
    "random_flip",
    "random_intensity",
    "random_resized_crop",
    "random_rot90",
    "rotate",
    "rotation_table",
]
