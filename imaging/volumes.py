"""Preparing a NIfTI volume for a network: canonical orientation, resampling, crop/pad, normalisation.

``load_volume`` does, in this order:

1. read the file (``imaging.io.read_volume``; typed errors name the file);
2. reorient to the closest canonical (RAS+) orientation, so voxel axes D, H, W point to the patient's
   right, anterior and superior whatever the scanner's orientation;
3. resample to ``target_spacing`` (mm along D, H, W): trilinear for images, nearest for labels (never
   interpolate label values);
4. normalise each channel over its foreground (non-zero voxels; all voxels when none are zero):
   ``zscore`` (mean 0, sd 1 over the foreground) or ``minmax`` (foreground mapped to [0, 1]); the
   background stays 0;
5. centre crop / zero-pad to ``size``.

Labels skip step 4 and keep their integer values.

>>> import tempfile, pathlib
>>> from imaging.io import write_nifti
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t1.nii.gz"
>>> write_nifti(path, np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6), spacing=(2.0, 1.0, 1.0))
>>> volume = load_volume(path, target_spacing=(1.0, 1.0, 1.0), size=(8, 4, 4))
>>> volume.shape, volume.dtype
((8, 4, 4), dtype('float32'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from imaging.errors import ImagingError
from imaging.io import read_volume

Normalize = Literal["zscore", "minmax", "none"]
NORMALIZE_CHOICES = ("zscore", "minmax", "none")


def load_volume(
    path: str | os.PathLike,
    target_spacing: Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    normalize: Normalize = "zscore",
    is_label: bool = False,
) -> np.ndarray:
    """Read and prepare one NIfTI volume.

    Args:
        path: ``.nii`` or ``.nii.gz``; 3D, or 4D with channels (co-registered modalities) last.
        target_spacing: voxel size in mm along D, H, W after resampling; None keeps the file's grid.
        size: (D, H, W) after centre crop / zero-pad; None keeps the resampled shape.
        normalize: ``zscore``, ``minmax`` or ``none`` (per channel, over the non-zero voxels).
        is_label: nearest-neighbour resampling and no normalisation (integer class labels).

    Returns:
        float32 (D, H, W), or (C, D, H, W) for a 4D file.
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ImagingError(f"normalize must be one of {', '.join(NORMALIZE_CHOICES)}, not {normalize!r}")
    volume = read_volume(path)
    data, spacing = reorient_canonical(volume.data, volume.spacing, volume.affine)
    if target_spacing is not None:
        data = resample(data, spacing, target_spacing, is_label=is_label)
    if not is_label:
        data = normalize_intensity(data, normalize)
    elif not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
        raise ImagingError(
            f"{path}: a label volume must hold integer class values; is this an image, not a mask?"
        )
    if size is not None:
        data = crop_or_pad(data, size)
    return np.ascontiguousarray(data, dtype=np.float32)


def reorient_canonical(
    data: np.ndarray, spacing: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(D, H, W) or (C, D, H, W) in file order → the same in RAS+ order, with the permuted spacing."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt("RAS")
    )
    channels_last = np.moveaxis(data, 0, -1) if data.ndim == 4 else data
    out = nib.orientations.apply_orientation(channels_last, transform)
    out = np.moveaxis(out, -1, 0) if data.ndim == 4 else out
    new_spacing = np.empty(3, dtype=np.float64)
    for axis, (target_axis, _) in enumerate(transform):
        new_spacing[int(target_axis)] = spacing[axis]
    return np.ascontiguousarray(out), new_spacing


def resample(
    data: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    is_label: bool = False,
) -> np.ndarray:
    """Resample (D, H, W) or (C, D, H, W) from ``spacing`` to ``target_spacing`` (mm).

    The new shape is ``round(shape * spacing / target_spacing)`` (at least 1); images use trilinear
    interpolation, labels nearest neighbour (``nearest-exact``: voxel centres, no half-voxel shift).
    """
    target = np.asarray(target_spacing, dtype=np.float64)
    if target.shape != (3,) or np.any(~np.isfinite(target)) or np.any(target <= 0):
        raise ImagingError(f"target_spacing must be three positive sizes in mm, got {list(target_spacing)}")
    spatial = np.asarray(data.shape[-3:])
    shape = tuple(int(v) for v in np.maximum(1, np.round(spatial * np.asarray(spacing) / target)))
    if shape == tuple(spatial):
        return data
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    tensor = tensor.reshape(1, -1, *tensor.shape[-3:])
    if is_label:
        out = F.interpolate(tensor, size=shape, mode="nearest-exact")
    else:
        out = F.interpolate(tensor, size=shape, mode="trilinear", align_corners=False)
    return out.reshape(*data.shape[:-3], *shape).numpy()


def resize_2d(data: np.ndarray, size: Sequence[int], is_label: bool = False) -> np.ndarray:
    """Resize (H, W) or (C, H, W) to ``size`` (H, W): bilinear for images, nearest for labels."""
    size = tuple(int(v) for v in size)
    if tuple(data.shape[-2:]) == size:
        return data
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    tensor = tensor.reshape(1, -1, *tensor.shape[-2:])
    if is_label:
        out = F.interpolate(tensor, size=size, mode="nearest-exact")
    else:
        out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*data.shape[:-2], *size).numpy()


def normalize_intensity(
    data: np.ndarray, method: Normalize = "zscore", channel_axis: bool | None = None
) -> np.ndarray:
    """Normalise each channel over its foreground (non-zero voxels); background stays 0.

    Args:
        data: (*spatial) or (C, *spatial); ``channel_axis`` says whether axis 0 is channels (default:
            ``data.ndim == 4``, i.e. a multi-channel volume).
        method: ``zscore`` (foreground mean 0, sd 1), ``minmax`` (foreground in [0, 1]) or ``none``.
    """
    if method == "none":
        return data.astype(np.float32, copy=False)
    channels = data.ndim == 4 if channel_axis is None else channel_axis
    stack = data if channels else data[None]
    out = np.zeros(stack.shape, dtype=np.float32)
    for index, channel in enumerate(stack.astype(np.float64)):
        foreground = channel != 0
        if not foreground.any():
            continue  # an empty channel stays 0
        values = channel[foreground]
        if method == "zscore":
            scale = values.std()
            shifted = (channel - values.mean()) / (scale if scale > 0 else 1.0)
        elif method == "minmax":
            low, high = values.min(), values.max()
            shifted = (channel - low) / (high - low if high > low else 1.0)
        else:
            raise ImagingError(f"normalize must be one of {', '.join(NORMALIZE_CHOICES)}, not {method!r}")
        out[index] = np.where(foreground, shifted, 0.0)
    return out if channels else out[0]


def crop_or_pad(data: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Centre crop / zero-pad the last ``len(size)`` axes of ``data`` to ``size``.

    An odd difference puts the extra voxel at the end (crop) / the end (pad), for both images and labels.
    """
    size = tuple(int(v) for v in size)
    if any(v < 1 for v in size):
        raise ImagingError(f"size must be positive, got {size}")
    lead = data.ndim - len(size)
    if lead < 0:
        raise ImagingError(f"cannot crop a {data.ndim}D array to the {len(size)}D size {size}")
    out = data
    for axis, target in enumerate(size, start=lead):
        current = out.shape[axis]
        if current > target:
            start = (current - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif current < target:
            before = (target - current) // 2
            widths = [(0, 0)] * out.ndim
            widths[axis] = (before, target - current - before)
            out = np.pad(out, widths)
    return out


__all__ = [
    "NORMALIZE_CHOICES",
    "crop_or_pad",
    "load_volume",
    "normalize_intensity",
    "reorient_canonical",
    "resample",
    "resize_2d",
]
