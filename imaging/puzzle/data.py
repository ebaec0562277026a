"""Co-registered multimodal images as (M, *spatial) tensors: from a biobank folder, or rendered in memory.

``MultimodalVolumes`` reads a folder whose ``manifest.parquet`` (or ``manifest.csv``) lists one NIfTI per
modality in columns ``image_<modality>`` (paths relative to the folder, as ``contig simulate`` writes
them; ``contig translate --write`` adds synthetic ones the same way). ``SyntheticMultimodal`` renders
brains with ``imaging.synthetic.mri`` directly, for tests and benchmarks.

Every channel is standardised on its own (zero mean, unit variance per image and modality), so the
intensity scale of a contrast or a scanner is not a cue for the puzzle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from imaging.errors import ImageFormatError, ImagingError
from imaging.io import read_volume
from imaging.synthetic.mri import CONTRASTS, render_mri


def standardize_channels(image: torch.Tensor, dim: int, eps: float = 1e-6) -> torch.Tensor:
    """(M, *spatial) or (B, M, *spatial) with ``dim`` spatial axes → each channel standardised."""
    axes = tuple(range(-dim, 0))
    mean = image.mean(dim=axes, keepdim=True)
    std = image.std(dim=axes, keepdim=True)
    return (image - mean) / (std + eps)


def read_manifest(root: str | os.PathLike) -> pd.DataFrame:
    """The image table of a biobank folder: ``manifest.parquet``, else ``manifest.csv``."""
    root = Path(root)
    for name, reader in (("manifest.parquet", pd.read_parquet), ("manifest.csv", pd.read_csv)):
        if (root / name).is_file():
            return reader(root / name)
    raise ImagingError(
        f"{root}: holds no manifest.parquet or manifest.csv; point --data at a biobank folder "
        "(e.g. one written by `contig simulate --image-kind mri3d`)"
    )


def modality_columns(table: pd.DataFrame, modalities: Sequence[str], where: str | os.PathLike) -> list[str]:
    """Column names ``image_<m>`` of ``modalities``; a missing one is an error naming the alternatives."""
    columns = [f"image_{m}" for m in modalities]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        present = sorted(c.removeprefix("image_") for c in table.columns if c.startswith("image_"))
        raise ImagingError(
            f"{where}: the manifest has no column(s) {', '.join(missing)}; modalities available: "
            f"{', '.join(present) or 'none'}"
        )
    return columns


class MultimodalVolumes(Dataset):
    """(M, D, H, W) float32 tensors of co-registered modalities listed in a biobank manifest.

    Args:
        root: the folder with the manifest; image paths are relative to it (or absolute).
        modalities: names whose ``image_<name>`` columns to stack, in this order.
        size: resize every volume to size³ (trilinear); None keeps the file's grid.
        standardize: standardise each channel (see the module docstring).
        rows: manifest row positions to use (e.g. a split); None uses every row with all modalities.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        modalities: Sequence[str],
        size: int | None = None,
        standardize: bool = True,
        rows: Sequence[int] | None = None,
    ):
        self.root, self.modalities = Path(root), tuple(modalities)
        if not self.modalities:
            raise ImagingError("give at least one modality")
        table = read_manifest(self.root)
        columns = modality_columns(table, self.modalities, self.root)
        if rows is not None:
            table = table.iloc[list(rows)]
        table = table.dropna(subset=columns)
        table = table[(table[columns].astype(str) != "").all(axis=1)]
        if table.empty:
            raise ImagingError(f"{self.root}: no manifest row has all of {', '.join(columns)}")
        self.table = table.reset_index(drop=True)
        self.columns, self.size, self.standardize = columns, size, standardize

    def __len__(self) -> int:
        return len(self.table)

    def path(self, index: int, modality: str) -> Path:
        path = Path(str(self.table.loc[index, f"image_{modality}"]))
        return path if path.is_absolute() else self.root / path

    def volume(self, index: int, modality: str):
        """The ``imaging.io.Volume`` (data, spacing, affine) of one row and modality."""
        return read_volume(self.path(index, modality))

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} is out of range for {len(self)} rows")
        arrays, first = [], None
        for modality in self.modalities:
            path = self.path(index, modality)
            data = read_volume(path).data
            if data.ndim != 3:
                raise ImageFormatError(f"{path}: expected a single-channel 3D volume, got shape {data.shape}")
            if first is None:
                first = (path, data.shape)
            elif data.shape != first[1]:
                raise ImageFormatError(
                    f"{path}: grid {data.shape} differs from {first[0]} {first[1]}; the modalities of a row "
                    "must be co-registered on one grid (resample them first)"
                )
            arrays.append(data)
        image = torch.from_numpy(np.stack(arrays))
        if self.size is not None and tuple(image.shape[1:]) != (self.size,) * 3:
            grid = (self.size,) * 3
            image = F.interpolate(image[None], size=grid, mode="trilinear", align_corners=False)[0]
        return standardize_channels(image, 3) if self.standardize else image


class SyntheticMultimodal(Dataset):
    """Synthetic co-registered brains rendered in memory: (M, D, H, W), or the middle axial slice (M, H, W).

    ``labels`` holds the tissue labels (N, *spatial) (0 background, 1 CSF, 2 GM, 3 WM, 4 lesion) for
    segmentation benchmarks. Traits are drawn N(0, 1) per person from ``seed``.
    """

    def __init__(
        self,
        n: int,
        size: int = 16,
        contrasts: Sequence[str] = CONTRASTS,
        dim: int = 3,
        seed: int = 0,
        standardize: bool = True,
    ):
        if dim not in (2, 3):
            raise ImagingError(f"dim must be 2 or 3, got {dim}")
        rng = np.random.default_rng(seed)
        traits = {
            name: rng.standard_normal(n)
            for name in ("brain_volume", "ventricle_size", "cortical_thickness", "wm_lesion_load")
        }
        volumes, labels = render_mri(traits, shape=(size,) * 3, contrasts=contrasts, seed=seed)
        images = torch.from_numpy(np.stack([volumes[c] for c in contrasts], axis=1))  # (N, M, D, H, W)
        labels_t = torch.from_numpy(labels.astype(np.int64))
        if dim == 2:
            images, labels_t = images[:, :, size // 2], labels_t[:, size // 2]
        self.images = standardize_channels(images, dim) if standardize else images
        self.labels, self.contrasts, self.dim = labels_t, tuple(contrasts), dim

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


__all__ = [
    "MultimodalVolumes",
    "SyntheticMultimodal",
    "modality_columns",
    "read_manifest",
    "standardize_channels",
]
