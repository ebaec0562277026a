"""Datasets over image folders: a flat folder, the Medical Segmentation Decathlon layout, a synthetic biobank.

``open_image_folder(path, dim=3)`` recognises the layout:

* **biobank**: ``manifest.parquet`` (``IID``, ``image``, for MRI ``image_t1 image_t2 image_flair``) with
  masks in ``downstream/labels.parquet`` (column ``mask``, joined on ``image``) and the person split in
  ``downstream/splits.tsv``; ``ids`` are the ``IID``s (a person with two images appears twice).
* **MSD**: ``dataset.json``, ``imagesTr/`` (4D NIfTI: channels = the modalities of ``dataset.json``) and
  ``labelsTr/``; ``ids`` are the case names.
* **flat**: ``*.nii``/``*.nii.gz`` (dim 3) or ``*.png``/``*.jpg`` (dim 2); labels, when asked for, in a
  ``labels/`` subfolder under the same file names; with ``modalities=["t1", "t2"]`` the files
  ``<id>_t1.nii.gz``, ``<id>_t2.nii.gz`` become the channels of item ``<id>``. An optional ``labels.csv``
  with an ``id`` column adds per-item columns (e.g. ``grade``) to ``dataset.table``.

Items are ``torch.float32 (C, D, H, W)`` (or ``(C, H, W)``), with ``with_labels=True`` a pair
``(image, label int64 (D, H, W))``. Volumes go through ``imaging.volumes.load_volume`` (canonical
orientation, resampling, per-channel normalisation, crop/pad); 2D images are resized (bilinear; nearest
for labels) and normalised per channel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from imaging.errors import ImageFormatError, ImagingError
from imaging.io import check_image_files, read_image, spatial_shape
from imaging.volumes import crop_or_pad, load_volume, normalize_intensity, resize_2d

SUFFIXES = {3: (".nii.gz", ".nii"), 2: (".png", ".jpg", ".jpeg", ".dcm")}
BIOBANK_MRI_CLASSES = ["background", "CSF", "grey matter", "white matter", "lesion"]
BIOBANK_FUNDUS_CLASSES = ["background", "optic disc", "vessel", "lesion"]


@dataclass(frozen=True)
class ImageRecord:
    """One item: its ID, one file per modality (or one multi-channel file) and an optional label file."""

    id: str
    paths: tuple[Path, ...]
    label: Path | None = None


def _check_files(records: Sequence[ImageRecord], with_labels: bool) -> None:
    """Every image (and label) file exists and its header opens, before anything trains; all problems
    are reported at once (``imaging.io.check_image_files``: about 0.2 ms a file)."""
    paths = [path for record in records for path in record.paths]
    paths += [record.label for record in records if with_labels and record.label is not None]
    check_image_files(paths, noun="files")


def _check_label_shapes(records: Sequence[ImageRecord]) -> None:
    """Every label has its image's stored shape (file headers only), checked before any resampling,
    cropping or padding could hide a mismatch; all mismatches are reported at once."""
    problems = []
    for record in records:
        stored, image_stored = spatial_shape(record.label), spatial_shape(record.paths[0])
        if stored != image_stored:
            problems.append(f"{record.label}: label shape {stored} differs from its image's {image_stored}")
    if problems:
        more = f"; … and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ImageFormatError(
            "; ".join(problems[:3]) + more + "; check that labels and images belong together"
        )


class ImageFolderDataset(Dataset):
    """Map-style dataset of prepared images (see the module docstring).

    Attributes:
        ids: item IDs (IID or file stem), one per item.
        modalities: channel names.
        table: one row per item: ``id`` plus any per-item columns (``grade``, ``split``, ...).
        class_names: segmentation class names when the layout says them, else None.
        layout: ``biobank``, ``msd`` or ``flat``.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        dim: int,
        modalities: Sequence[str],
        target_spacing: Sequence[float] | None = None,
        size: Sequence[int] | None = (32, 32, 32),
        normalize: str = "zscore",
        with_labels: bool = False,
        channels: Sequence[int] | None = None,
        table: pd.DataFrame | None = None,
        class_names: Sequence[str] | None = None,
        layout: str = "flat",
        cache: bool = False,
    ):
        if dim not in (2, 3):
            raise ImagingError(f"dim must be 2 or 3, not {dim}")
        self.records = list(records)
        self.dim, self.modalities = dim, list(modalities)
        self.target_spacing = None if target_spacing is None else tuple(float(v) for v in target_spacing)
        if size is not None:
            size = tuple(int(v) for v in size)
            size = size[-2:] if dim == 2 and len(size) == 3 else size
            if len(size) != dim:
                raise ImagingError(f"size {size} does not have {dim} entries for dim={dim}")
        self.size, self.normalize, self.with_labels = size, normalize, with_labels
        self.channels = None if channels is None else list(channels)
        self.ids = [record.id for record in self.records]
        self.table = table.reset_index(drop=True) if table is not None else pd.DataFrame({"id": self.ids})
        self.class_names = None if class_names is None else list(class_names)
        self.layout, self.cache = layout, cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        _check_files(self.records, with_labels)
        if with_labels:
            missing = [record.id for record in self.records if record.label is None]
            if missing:
                raise ImagingError(
                    f"{len(missing)} item(s) have no label file (e.g. {', '.join(missing[:5])}); "
                    "add their masks or open the folder with with_labels=False"
                )
            _check_label_shapes(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        image, label = self._load(int(index))
        image_t = torch.from_numpy(image.copy() if self.cache else image)
        if not self.with_labels:
            return image_t
        return image_t, torch.from_numpy(label.astype(np.int64))

    def subset(self, indices: Sequence[int], with_labels: bool | None = None) -> ImageFolderDataset:
        """A dataset over the items at ``indices`` (same preparation; items already cached are kept)."""
        indices = [int(i) for i in indices]
        out = object.__new__(ImageFolderDataset)
        out.__dict__.update(self.__dict__)
        out.records = [self.records[i] for i in indices]
        out.ids = [self.ids[i] for i in indices]
        out.table = self.table.iloc[indices].reset_index(drop=True)
        out.with_labels = self.with_labels if with_labels is None else with_labels
        out._cache = {new: self._cache[old] for new, old in enumerate(indices) if old in self._cache}
        return out

    @property
    def in_chans(self) -> int:
        return len(self.modalities)

    # ----------------------------------------------------------------------------------------- loading
    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index in self._cache:
            return self._cache[index]
        record = self.records[index]
        image = self._load_image(record)
        label = self._load_label(record, image.shape[1:]) if self.with_labels else None
        if self.cache:
            self._cache[index] = (image, label)
        return image, label

    def _load_image(self, record: ImageRecord) -> np.ndarray:
        parts = [self._load_channels(path) for path in record.paths]
        shapes = {part.shape[1:] for part in parts}
        if len(shapes) > 1:
            raise ImageFormatError(
                f"{record.id}: modalities {', '.join(map(str, record.paths))} have different shapes {sorted(shapes)}; "
                "co-register them or set size=... to crop/pad to one shape"
            )
        image = np.concatenate(parts, axis=0)
        if self.channels is not None:
            image = image[self.channels]
        if image.shape[0] != len(self.modalities):
            raise ImageFormatError(
                f"{record.paths[0]}: has {image.shape[0]} channel(s), expected {len(self.modalities)} "
                f"({', '.join(self.modalities)}); check the file or the modalities"
            )
        return np.ascontiguousarray(image, dtype=np.float32)

    def _load_channels(self, path: Path) -> np.ndarray:
        """One file → (C, *spatial) float32."""
        if self.dim == 3:
            data = load_volume(path, self.target_spacing, self.size, self.normalize)
            return data if data.ndim == 4 else data[None]
        array = read_image(path).astype(np.float32)
        if array.ndim == 3:
            array = array[..., :1] if array.shape[-1] == 2 else array[..., :3]  # drop alpha
            array = np.moveaxis(array, -1, 0)
        else:
            array = array[None]
        if self.size is not None:
            array = resize_2d(array, self.size)
        return normalize_intensity(array, self.normalize, channel_axis=True)  # type: ignore[arg-type]

    def _load_label(self, record: ImageRecord, shape: tuple[int, ...]) -> np.ndarray:
        assert record.label is not None
        path = record.label
        if self.dim == 3:
            label = load_volume(path, self.target_spacing, self.size, "none", is_label=True)
        else:
            label = read_image(path)
            if label.ndim == 3:
                if not np.all(label == label[..., :1]):
                    raise ImageFormatError(
                        f"{path}: a label image must be single-channel (class index per pixel); save it as grey"
                    )
                label = label[..., 0]
            label = label.astype(np.float32)
            if self.size is not None:
                label = resize_2d(label, self.size, is_label=True)
        if label.ndim != len(shape):
            raise ImageFormatError(f"{path}: label has shape {label.shape}; expected one class per voxel")
        if tuple(label.shape) != tuple(shape):
            if self.size is None:
                raise ImageFormatError(
                    f"{path}: label shape {label.shape} differs from its image's {tuple(shape)}; "
                    "check that they belong together, or set size=..."
                )
            label = crop_or_pad(label, shape)
        if label.min() < 0:
            raise ImageFormatError(f"{path}: negative class labels; classes must be 0..K-1")
        return label


# ------------------------------------------------------------------------------------------------ layouts


def open_image_folder(
    path: str | os.PathLike,
    dim: int = 3,
    modalities: Sequence[str] | None = None,
    target_spacing: Sequence[float] | None = None,
    size: Sequence[int] | None = (32, 32, 32),
    normalize: str = "zscore",
    with_labels: bool = False,
    cache: bool = False,
) -> ImageFolderDataset:
    """Open a flat folder, an MSD folder or a synthetic-biobank folder (see the module docstring).

    Args:
        modalities: channel names to use (biobank: ``t1 t2 flair``; MSD: names from ``dataset.json``;
            flat: file-name suffixes); None takes every channel of the layout.
        size: (D, H, W) or, for dim 2, (H, W) (the last two of a 3-tuple).
        cache: keep prepared items in memory (for repeated epochs over small data).

    Raises:
        ImagingError: a missing folder, a folder with nothing readable, or unmatched labels.
    """
    root = Path(path)
    if not root.is_dir():
        raise ImagingError(f"{root}: image folder does not exist; pass a folder of images")
    if (root / "manifest.parquet").is_file():
        layout, records, mods, channels, table, classes = _biobank(root, dim, modalities, with_labels)
    elif (root / "dataset.json").is_file():
        layout, records, mods, channels, table, classes = _msd(root, dim, modalities, with_labels)
    else:
        layout, records, mods, channels, table, classes = _flat(root, dim, modalities, with_labels)
    if not records:
        kinds = " or ".join(SUFFIXES[dim])
        raise ImagingError(
            f"{root}: no {kinds} images found ({layout} layout); check the folder and dim={dim}"
        )
    return ImageFolderDataset(
        records,
        dim,
        mods,
        target_spacing,
        size,
        normalize,
        with_labels,
        channels,
        table,
        classes,
        layout,
        cache,
    )


def _has_suffix(path: Path, dim: int) -> bool:
    return path.name.lower().endswith(SUFFIXES[dim]) and not path.name.startswith(".")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (*SUFFIXES[3], *SUFFIXES[2]):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _flat(root: Path, dim: int, modalities, with_labels: bool):
    files = sorted(p for p in root.iterdir() if p.is_file() and _has_suffix(p, dim))
    label_dir = root / "labels"
    if modalities:
        groups: dict[str, dict[str, Path]] = {}
        for file in files:
            stem = _stem(file)
            for modality in modalities:
                if stem.endswith(f"_{modality}"):
                    groups.setdefault(stem[: -len(modality) - 1], {})[modality] = file
        incomplete = [key for key, found in groups.items() if len(found) < len(modalities)]
        if incomplete:
            raise ImagingError(
                f"{root}: item(s) {', '.join(sorted(incomplete)[:5])} lack some of the modalities "
                f"{', '.join(modalities)} (files <id>_<modality>); add or remove them"
            )
        keys = sorted(groups)
        records = [
            ImageRecord(key, tuple(groups[key][m] for m in modalities), _flat_label(label_dir, key, dim))
            for key in keys
        ]
        mods = list(modalities)
    else:
        records = [ImageRecord(_stem(f), (f,), _flat_label(label_dir, _stem(f), dim)) for f in files]
        mods = _probe_modalities(files[0], dim) if files else []
    table = pd.DataFrame({"id": [r.id for r in records]})
    extra = root / "labels.csv"
    if extra.is_file() and records:
        columns = pd.read_csv(extra)
        if "id" not in columns.columns:
            raise ImagingError(f"{extra}: needs an 'id' column (the file name without suffix)")
        columns["id"] = columns["id"].astype(str)
        if columns["id"].duplicated().any():
            raise ImagingError(
                f"{extra}: duplicated ids {columns['id'][columns['id'].duplicated()].tolist()[:5]}"
            )
        table = table.merge(columns, on="id", how="left", validate="one_to_one")
    return "flat", records, mods, None, table, None


def _flat_label(label_dir: Path, key: str, dim: int) -> Path | None:
    for suffix in SUFFIXES[dim]:
        candidate = label_dir / f"{key}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _probe_modalities(first: Path, dim: int) -> list[str]:
    """Channel names of a flat folder: from the first file (channels of a 4D NIfTI or an RGB image)."""
    if dim == 3:
        import nibabel as nib

        try:
            shape = nib.load(first).shape
        except Exception as error:  # noqa: BLE001 - any nibabel failure is a bad file
            raise ImageFormatError(
                f"{first}: not a readable NIfTI volume ({type(error).__name__}); re-export or remove it"
            ) from None
        count = shape[3] if len(shape) == 4 else 1
    else:
        array = read_image(first)
        count = 3 if array.ndim == 3 and array.shape[-1] in (3, 4) else 1
    return ["image"] if count == 1 else [f"channel{i}" for i in range(count)]


def _msd(root: Path, dim: int, modalities, with_labels: bool):
    if dim != 3:
        raise ImagingError(f"{root}: a Medical Segmentation Decathlon folder holds 3D volumes; use dim=3")
    try:
        meta = json.loads((root / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ImagingError(f"{root / 'dataset.json'}: not readable JSON ({error}); re-download it") from None
    names = [
        str(v) for _, v in sorted(meta.get("modality", {"0": "image"}).items(), key=lambda kv: int(kv[0]))
    ]
    channels = None
    if modalities:
        lower = [n.lower() for n in names]
        unknown = [m for m in modalities if m.lower() not in lower]
        if unknown:
            raise ImagingError(
                f"{root / 'dataset.json'}: no modality {', '.join(unknown)}; available: {', '.join(names)}"
            )
        channels = [lower.index(m.lower()) for m in modalities]
        names = [names[i] for i in channels]
    entries = meta.get("training")
    if entries:
        pairs = [(root / e["image"], root / e["label"] if e.get("label") else None) for e in entries]
    else:
        images = sorted(p for p in (root / "imagesTr").glob("*") if _has_suffix(p, 3))
        pairs = [(p, root / "labelsTr" / p.name) for p in images]
    records = []
    for image, label in pairs:
        image, label = Path(os.path.normpath(image)), None if label is None else Path(os.path.normpath(label))
        if label is not None and not label.is_file():
            label = None
        records.append(ImageRecord(_stem(image), (image,), label))
    labels = meta.get("labels")
    classes = [str(v) for _, v in sorted(labels.items(), key=lambda kv: int(kv[0]))] if labels else None
    return "msd", records, names, channels, None, classes


def _biobank(root: Path, dim: int, modalities, with_labels: bool):
    manifest = pd.read_parquet(root / "manifest.parquet")
    for column in ("IID", "image"):
        if column not in manifest.columns:
            raise ImagingError(
                f"{root / 'manifest.parquet'}: no {column!r} column; is this a biobank folder?"
            )
    available = [c.removeprefix("image_") for c in manifest.columns if c.startswith("image_")]
    if modalities:
        unknown = [m for m in modalities if m != "image" and m not in available]
        if unknown:
            raise ImagingError(
                f"{root / 'manifest.parquet'}: no modality {', '.join(unknown)}; available: "
                f"{', '.join(available or ['image'])}"
            )
        mods = list(modalities)
    else:
        mods = available or ["image"]
    columns = ["image" if m == "image" else f"image_{m}" for m in mods]
    first = str(manifest["image"].iloc[0]) if len(manifest) else ""
    if first and not first.lower().endswith(SUFFIXES[dim]):
        raise ImagingError(f"{root}: the manifest's images ({first}) are not {dim}D; use dim={5 - dim}")
    table = manifest.rename(columns={"IID": "id"}).copy()
    table["id"] = table["id"].astype(str)
    labels_path = root / "downstream" / "labels.parquet"
    if labels_path.is_file():
        labels = pd.read_parquet(labels_path)
        if labels["image"].duplicated().any():
            raise ImagingError(f"{labels_path}: an image appears twice; one row per image expected")
        keep = [c for c in labels.columns if c not in table.columns and c != "IID"]
        table = table.merge(labels[["image", *keep, "IID"]], on="image", how="left", validate="one_to_one")
        known = table["IID"].notna()
        clash = table.loc[known & (table["IID"].astype(str) != table["id"]), "image"].tolist()
        if clash:
            raise ImagingError(
                f"{labels_path}: image(s) {', '.join(clash[:5])} belong to another IID than in the manifest; "
                "regenerate the labels table"
            )
        table = table.drop(columns="IID")
    elif with_labels:
        raise ImagingError(f"{root}: no downstream/labels.parquet with masks; open with with_labels=False")
    splits_path = root / "downstream" / "splits.tsv"
    if "split" not in table.columns and splits_path.is_file():
        splits = pd.read_csv(splits_path, sep="\t", dtype={"IID": str})
        table = table.merge(splits.rename(columns={"IID": "id"}), on="id", how="left")
    records = []
    for row in table.itertuples(index=False):
        values = row._asdict()
        mask = values.get("mask")
        label = root / str(mask) if isinstance(mask, str) and mask else None
        records.append(ImageRecord(values["id"], tuple(root / str(values[c]) for c in columns), label))
    classes = BIOBANK_MRI_CLASSES if dim == 3 else BIOBANK_FUNDUS_CLASSES
    return "biobank", records, mods, None, table, classes


__all__ = ["ImageFolderDataset", "ImageRecord", "open_image_folder"]
