"""Splits and label fractions by person, and the dataset adapters that fine-tuning trains on.

Every split is by person ID, so the images of one person (two eyes, two visits) never straddle the
training and test sets. Label fractions are drawn from the training persons with a seeded generator;
for classification the draw is stratified by the person's class, so a 10 % fraction keeps every grade.

>>> ids = [f"P{i}" for i in range(10)]
>>> sorted(subsample_by_person(ids, 0.3, seed=0)) == sorted(subsample_by_person(ids, 0.3, seed=0))
True
>>> len(subsample_by_person(ids, 0.3, seed=0))
3
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from imaging.errors import ImagingError

SPLITS = ("train", "val", "test")


def split_by_person(
    ids: Sequence[str],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    given: Sequence[str | None] | None = None,
) -> dict[str, np.ndarray]:
    """Item indices of the train/val/test splits, whole persons per split.

    Args:
        ids: (N,) person ID per item.
        fractions: shares of persons in train, val, test (each split gets at least one person when
            there are three or more).
        seed: seed of the shuffle (fixed across fine-tuning seeds, so every run sees one test set).
        given: (N,) an existing split per item (``train``/``val``/``test``, e.g. the biobank's
            ``splits.tsv``); used as is when every item has one.
    """
    ids = [str(i) for i in ids]
    if given is not None and all(isinstance(s, str) and s in SPLITS for s in given):
        return {name: np.flatnonzero(np.asarray(given) == name) for name in SPLITS}
    persons = np.array(sorted(set(ids)))
    if len(persons) < 3:
        raise ImagingError(f"{len(persons)} person(s) cannot be split into train/val/test; add images")
    order = np.random.default_rng(seed).permutation(len(persons))
    n_val = max(1, int(round(fractions[1] * len(persons))))
    n_test = max(1, int(round(fractions[2] * len(persons))))
    n_train = len(persons) - n_val - n_test
    if n_train < 1:
        raise ImagingError(f"{len(persons)} persons leave none for training; add images")
    chosen = {
        "train": persons[order[:n_train]],
        "val": persons[order[n_train : n_train + n_val]],
        "test": persons[order[n_train + n_val :]],
    }
    id_array = np.asarray(ids)
    return {name: np.flatnonzero(np.isin(id_array, members)) for name, members in chosen.items()}


def subsample_by_person(
    ids: Sequence[str], fraction: float, seed: int, strata: Sequence | None = None
) -> np.ndarray:
    """Indices (into ``ids``) of the items of a seeded ``fraction`` of the persons (at least one).

    With ``strata`` ((N,) class per item), persons are drawn per class of their first item, each class
    keeping ``round(fraction × persons)`` (at least one), so rare grades survive a small fraction.
    """
    if not 0 < fraction <= 1:
        raise ImagingError(f"label fraction must be in (0, 1], got {fraction}")
    ids = np.asarray([str(i) for i in ids])
    persons, first = np.unique(ids, return_index=True)
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = {None: persons}
    else:
        person_class = np.asarray(strata)[first]
        groups = {c: persons[person_class == c] for c in np.unique(person_class)}
    keep = []
    for _, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        count = max(1, int(round(fraction * len(members))))
        keep.extend(rng.choice(members, size=count, replace=False).tolist())
    return np.flatnonzero(np.isin(ids, keep))


class ClassificationItems(Dataset):
    """``images[i]`` paired with an integer class: ``(image (C, *S) float32, target int64 ())``."""

    def __init__(self, images: Dataset, targets: Sequence[int]):
        if len(images) != len(targets):  # type: ignore[arg-type]
            raise ImagingError(f"{len(images)} images but {len(targets)} targets")  # type: ignore[arg-type]
        self.images, self.targets = images, np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        image = image[0] if isinstance(image, tuple) else image
        return image, torch.tensor(self.targets[index])


def class_targets(table: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """(N,) int64 classes 0..K-1 from ``table[column]`` (integer grades, or 0/1 / bool findings)."""
    if column not in table.columns:
        raise ImagingError(
            f"{where}: no column {column!r} for classification; available: {', '.join(map(str, table.columns))}"
        )
    values = table[column]
    missing = table.loc[values.isna(), "id"].astype(str).tolist() if "id" in table else []
    if values.isna().any():
        raise ImagingError(
            f"{where}: {values.isna().sum()} item(s) lack {column!r} (e.g. {', '.join(missing[:5])}); fill or drop them"
        )
    array = values.to_numpy()
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number) or np.any(array != np.round(array)) or array.min() < 0:
        raise ImagingError(f"{where}: column {column!r} must hold class indices 0..K-1")
    return array.astype(np.int64)


def count_classes(dataset: Dataset, class_names: Sequence[str] | None = None) -> int:
    """Number of segmentation classes: from the layout's class names, else 1 + the largest label.

    Counted once over the whole dataset (never per batch), so the one-hot width is the same everywhere.
    """
    if class_names:
        return len(class_names)
    largest = 0
    for index in range(len(dataset)):  # type: ignore[arg-type]
        largest = max(largest, int(dataset[index][1].max()))
    return max(2, largest + 1)


__all__ = [
    "SPLITS",
    "ClassificationItems",
    "class_targets",
    "count_classes",
    "split_by_person",
    "subsample_by_person",
]
