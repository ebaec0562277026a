"""Benchmark inputs: the labelled images of a biobank folder and precomputed feature tables.

A biobank folder (``contig simulate`` or real data laid out the same way) holds
``downstream/labels.parquet`` with one row per image: ``IID``, ``image`` (path relative to the folder),
the target columns (``grade``, a binary finding, ...) and ``split`` (train/val/test, by person).

Images are read with ``imaging.io`` and normalised: 2D images are scaled to [0, 1] (integer pixel types
by their maximum, e.g. 255) and standardised per channel with the mean and SD of all loaded images;
3D volumes are z-scored per volume. All images must share one size, or give ``image_size`` to resize.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from contig.benchmark.errors import BenchmarkError
from imaging.io import NIFTI_SUFFIXES, read_image, read_volume

LABELS_FILE = Path("downstream") / "labels.parquet"
FEATURE_PREFIX = "feat_"
_KEY_COLUMNS = ("IID", "FID", "image", "eye", "visit", "mask", "split")


def read_labels(data: str | os.PathLike) -> pd.DataFrame:
    """The label table of a biobank folder (or a labels .parquet/.csv path); checks IID, image, split."""
    path = Path(data)
    path = path / LABELS_FILE if path.is_dir() else path
    if not path.is_file():
        raise BenchmarkError(
            f"{path}: label table not found; point data at a folder made by `contig simulate`"
        )
    table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    missing = [c for c in ("IID", "image", "split") if c not in table.columns]
    if missing:
        raise BenchmarkError(f"{path}: missing column(s) {', '.join(missing)}; it needs IID, image, split")
    table["IID"] = table["IID"].astype(str)
    return table.reset_index(drop=True)


def load_images(root: str | os.PathLike, paths: list[str], image_size: int | None = None) -> torch.Tensor:
    """Read images named relative to ``root`` → float32 (N, C, H, W), or (N, 1, D, H, W) for NIfTI volumes."""
    root = Path(root)
    arrays = [_read(root / p) for p in paths]
    if image_size is not None:
        arrays = [_resize(a, image_size) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise BenchmarkError(
            f"images under {root} differ in shape ({', '.join(map(str, sorted(shapes)[:3]))}); set image_size"
        )
    if not arrays:
        return torch.zeros((0, 1, 1, 1))
    images = torch.stack(arrays)
    if images.dim() == 4:  # 2D: standardise each channel over all images
        mean = images.mean(dim=(0, 2, 3), keepdim=True)
        sd = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        images = (images - mean) / sd
    return images.contiguous()


def _read(path: Path) -> torch.Tensor:
    if path.name.endswith(NIFTI_SUFFIXES):
        volume = torch.from_numpy(np.asarray(read_volume(path).data, dtype=np.float32))
        volume = volume[None] if volume.dim() == 3 else volume  # (C, D, H, W)
        return (volume - volume.mean()) / volume.std().clamp_min(1e-6)
    array = read_image(path)
    scale = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    image = torch.from_numpy(array.astype(np.float32) / scale)
    return image[None] if image.dim() == 2 else image.permute(2, 0, 1)  # (C, H, W)


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    mode = "bilinear" if image.dim() == 3 else "trilinear"
    spatial = (size,) * (image.dim() - 1)
    return F.interpolate(image[None], size=spatial, mode=mode, align_corners=False)[0]


def read_features(path: str | os.PathLike, labels: pd.DataFrame) -> np.ndarray:
    """Features of each label row from a feature table (e.g. ``contig embed`` output) → (N, F) float64.

    Feature columns: those named ``feat_*`` if any, else every numeric column that is not a key column.
    Rows are matched on ``image`` when both tables have it, else on ``IID`` + ``eye``/``visit`` when both
    have that, else on ``IID`` (per-person features: each image of a person gets the person's row).
    Every label row must find exactly one feature row; duplicates and missing IDs are errors.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"{path}: feature table not found; write one with `contig embed`")
    table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    if "IID" not in table.columns:
        raise BenchmarkError(f"{path}: no IID column; a feature table needs IID plus feature columns")
    table["IID"] = table["IID"].astype(str)
    columns = [c for c in table.columns if str(c).startswith(FEATURE_PREFIX)] or [
        c for c in table.columns if c not in _KEY_COLUMNS and pd.api.types.is_numeric_dtype(table[c])
    ]
    if not columns:
        raise BenchmarkError(f"{path}: no numeric feature columns besides the IDs")
    keys = ["image"] if "image" in table.columns and "image" in labels.columns else ["IID"]
    for extra in ("eye", "visit"):
        if keys == ["IID"] and extra in table.columns and extra in labels.columns:
            keys = ["IID", extra]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        first = table.loc[duplicated, keys].iloc[0].tolist()
        raise BenchmarkError(
            f"{path}: {int(duplicated.sum())} duplicated {'+'.join(keys)} rows, e.g. {first}"
        )
    merged = labels[keys].merge(table[keys + columns], on=keys, how="left", validate="many_to_one")
    missing = merged[columns[0]].isna()
    if missing.any():
        ids = labels.loc[missing.to_numpy(), "IID"].unique()[:5].tolist()
        raise BenchmarkError(
            f"{path}: no features for {int(missing.sum())} labelled image(s) (IID {', '.join(ids)}...); "
            "embed every labelled person, or drop them from the label table"
        )
    features = merged[columns].to_numpy(np.float64)
    if not np.isfinite(features).all():
        raise BenchmarkError(f"{path}: feature values contain NaN or inf")
    return features
