"""MIL data: a folder of grayscale images with a CSV of image-level labels and optional lesion masks.

The CSV has one row per image: ``image`` (path relative to the CSV's folder, or absolute), ``label``
(the class: 0/1 for binary, 0..C-1 with classes), and optionally ``mask`` (a PNG of the same size whose
pixel value is the lesion class, 0 = none; an empty cell = no mask for that image). Column names are
configurable. Masks become patch targets through :func:`region_coverage`, the same pooling the model
applies to its feature map, so a patch's target is computed over exactly the pixels it sees.

>>> mask = torch.zeros(1, 64, 128); mask[0, :16, :16] = 1
>>> region_coverage(mask, feature_hw=(8, 16), patch_size=2, patch_stride=2)[0, :3].tolist()
[1.0, 0.0, 0.0]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from imaging.errors import ImageFormatError, ImagingError
from imaging.io import image_file_problem, read_image, spatial_shape


def region_coverage(
    mask: torch.Tensor, feature_hw: tuple[int, int], patch_size: int, patch_stride: int
) -> torch.Tensor:
    """Fraction of each patch covered by a region.

    Args:
        mask: (B, H, W) or (B, C, H, W) values in [0, 1] (bool allowed).
        feature_hw: (h, w) of the model's feature map for (H, W) images.
        patch_size, patch_stride: the model's patch window and step, in feature cells.

    Returns:
        (B, K) or (B, K, C) float32: area-average of the mask over each feature cell (exact when H, W
        are multiples of h, w), then over each patch window; K = gh · gw row-major, as the model's.
    """
    squeeze = mask.ndim == 3
    m = mask.float()[:, None] if squeeze else mask.float()
    cells = F.adaptive_avg_pool2d(m, feature_hw)
    patches = F.avg_pool2d(cells, patch_size, patch_stride).flatten(2)  # (B, C, K)
    return patches[:, 0] if squeeze else patches.transpose(1, 2)


def patch_targets(mask: torch.Tensor, model, num_classes: int = 1, min_coverage: float = 0.0) -> torch.Tensor:
    """Patch-level targets from a lesion label map.

    Args:
        mask: (B, H, W) integer lesion classes (0 none).
        model: a ``PatchMIL`` (its ``patch_coverage`` gives the geometry).
        num_classes: 1 = binary targets (any lesion class counts), else class targets.
        min_coverage: a patch is a lesion patch when more than this fraction of it is lesion.

    Returns:
        binary: (B, K) float 0/1; classes: (B, K) long, the lesion class with the largest coverage among
        lesion patches, else 0.
    """
    if num_classes == 1:
        return (model.patch_coverage(mask > 0) > min_coverage).float()
    onehot = F.one_hot(mask.long().clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    coverage = model.patch_coverage(onehot)  # (B, K, C)
    lesion = coverage[..., 1:].sum(-1) > min_coverage
    return torch.where(lesion, coverage[..., 1:].argmax(-1) + 1, torch.zeros_like(lesion, dtype=torch.long))


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8/uint16 → (1, H, W) float32, grey and per-image standardized."""
    array = image.astype(np.float32)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1) if array.shape[-1] != 2 else array[..., 0]
    array = array / (65535.0 if image.dtype == np.uint16 else 255.0)
    array = (array - array.mean()) / (array.std() + 1e-6)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


class MILFolderDataset(Dataset):
    """Images + image-level labels (+ optional masks) listed in a CSV.

    Args:
        csv: the labels CSV; relative paths inside it are relative to its folder.
        image_col, label_col, mask_col: column names (``mask_col`` may be absent from the CSV).
        num_classes: 1 (binary; labels must be 0/1) or C (labels 0..C-1).
        flip: random horizontal flips (training augmentation; image and mask together), drawn from
            numpy's global generator, which the shared trainer seeds per (seed, epoch, index).

    Items are dicts: image (1, H, W) float32, label () float32 (binary) or long, mask (H, W) long
    (zeros when absent), has_mask () bool, index () long. All images must share one size.
    """

    def __init__(
        self,
        csv: str | os.PathLike,
        image_col: str = "image",
        label_col: str = "label",
        mask_col: str = "mask",
        num_classes: int = 1,
        flip: bool = False,
    ):
        self.csv = Path(csv)
        if not self.csv.is_file():
            raise ImagingError(f"{self.csv}: labels CSV does not exist; pass the CSV listing the images")
        table = pd.read_csv(self.csv, dtype={mask_col: str}, keep_default_na=False)
        for column in (image_col, label_col):
            if column not in table.columns:
                raise ImagingError(
                    f"{self.csv}: no column {column!r} (columns: {', '.join(table.columns)}); "
                    "name the image and label columns with image_col/label_col"
                )
        labels = pd.to_numeric(table[label_col], errors="coerce")
        bad = labels.isna() | (labels % 1 != 0) | (labels < 0) | (labels >= max(num_classes, 2))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ImagingError(
                f"{self.csv}, line {row + 2}: label {table[label_col].iloc[row]!r} is not a class in "
                f"0..{max(num_classes, 2) - 1}; fix the label or set num_classes"
            )
        root = self.csv.parent
        self.images = [self._resolve(root, p) for p in table[image_col].astype(str)]
        masks = table[mask_col].astype(str) if mask_col in table.columns else [""] * len(table)
        self.masks = [self._resolve(root, p) if p.strip() else None for p in masks]
        self.labels = labels.to_numpy(dtype=np.int64)
        self.names = [Path(p).stem for p in table[image_col].astype(str)]
        self.num_classes, self.flip = num_classes, flip
        self._check_files()

    def _check_files(self) -> None:
        """Before anything trains: every image and mask opens, and every mask has its image's size (file
        headers only); all problems are reported at once, each naming the file."""
        problems = [problem for problem in map(image_file_problem, self.images) if problem]
        for image, mask in zip(self.images, self.masks, strict=True):
            if mask is None:
                continue
            problem = image_file_problem(mask)
            if (
                problem is None
                and image_file_problem(image) is None
                and spatial_shape(mask) != spatial_shape(image)
            ):
                problem = (
                    f"{mask}: mask is {spatial_shape(mask)} but its image {image} is {spatial_shape(image)}"
                )
            if problem:
                problems.append(problem)
        if problems:
            more = f"; … and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise ImageFormatError(
                f"{self.csv}: {len(problems)} file problem(s): " + "; ".join(problems[:5]) + more
            )

    @staticmethod
    def _resolve(root: Path, path: str) -> Path:
        path = Path(path)
        return path if path.is_absolute() else root / path

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pixels = read_image(self.images[index])
        image = normalize_image(pixels)
        if self.masks[index] is not None:
            mask_array = read_image(self.masks[index])
            mask_array = mask_array[..., 0] if mask_array.ndim == 3 else mask_array
            if mask_array.shape != image.shape[-2:]:
                raise ImageFormatError(
                    f"{self.masks[index]}: mask is {mask_array.shape[0]} x {mask_array.shape[1]} but its image "
                    f"{self.images[index]} is {image.shape[-2]} x {image.shape[-1]}; masks must match their image"
                )
            mask = torch.from_numpy(mask_array.astype(np.int64))
            if self.num_classes == 1:
                mask = (mask > 0).long()
        else:
            mask = torch.zeros(image.shape[-2:], dtype=torch.long)
        if self.flip and np.random.random() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        label = self.labels[index]
        return {
            "image": image,
            "label": torch.tensor(float(label)) if self.num_classes == 1 else torch.tensor(int(label)),
            "mask": mask,
            "has_mask": torch.tensor(self.masks[index] is not None),
            "index": torch.tensor(index),
        }


def load_images(paths: list[Path]) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Read and normalize images of one size: (B, 1, H, W) float32 and the raw (H, W[, C]) arrays."""
    raws = [read_image(p) for p in paths]
    shapes = {raw.shape[:2] for raw in raws}
    if len(shapes) > 1:
        raise ImageFormatError(f"images differ in size ({sorted(shapes)}); resize them to one size first")
    return torch.stack([normalize_image(raw) for raw in raws]), raws


__all__ = ["MILFolderDataset", "load_images", "normalize_image", "patch_targets", "region_coverage"]
