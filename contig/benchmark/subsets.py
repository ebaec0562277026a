"""Label-fraction subsets: subsample people (all images of a person together), stratified by class.

>>> ids = np.array(["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"])
>>> labels = np.array([0, 0, 1, 0, 1, 0, 1, 0, 1, 0])
>>> small = label_fraction_subset(ids, labels, 0.2, seed=0)
>>> large = label_fraction_subset(ids, labels, 0.6, seed=0)
>>> set(small) <= set(large)  # nested across fractions for one seed
True
>>> sorted(set(labels[small].tolist()))  # every class kept
[0, 1]
"""

from __future__ import annotations

import numpy as np

from contig.benchmark.errors import BenchmarkError


def label_fraction_subset(
    ids: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int, stratify: bool = True
) -> np.ndarray:
    """Row indices of a ``fraction`` of the people in ``ids``, every image of a chosen person included.

    Args:
        ids: (N,) person ID of each row (an image); rows of one ID are kept or dropped together.
        labels: (N,) class of each row; a person's stratum is their largest label (e.g. the worse eye).
            None, or ``stratify=False``, draws from all people as one stratum (use for regression).
        fraction: in (0, 1]; 1 keeps everyone.
        seed: the draw; one seed gives one random order of people per stratum.

    Returns:
        Sorted int64 row indices. Each stratum of n people keeps ``max(1, round(fraction * n))`` people,
        so every class stays present even at 1%. The people of a stratum are taken in one fixed
        seed-dependent order, so for one seed the subsets are nested: the 10% set contains the 1% set.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise BenchmarkError(f"ids must be a (N,) array of person IDs, got shape {ids.shape}")
    if not 0 < fraction <= 1:
        raise BenchmarkError(f"label fraction must be in (0, 1], got {fraction}; write 1% as 0.01")
    people, row_person = np.unique(ids, return_inverse=True)
    if stratify and labels is not None:
        labels = np.asarray(labels)
        if labels.shape != ids.shape:
            raise BenchmarkError(f"labels have shape {labels.shape}, ids {ids.shape}; give one label per row")
        stratum = np.full(people.size, labels.min(), dtype=labels.dtype)
        np.maximum.at(stratum, row_person, labels)
    else:
        stratum = np.zeros(people.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(people.size)  # one order for every fraction: nested subsets
    chosen = np.zeros(people.size, dtype=bool)
    for value in np.unique(stratum):
        members = order[stratum[order] == value]
        keep = max(1, int(round(fraction * members.size)))
        chosen[members[:keep]] = True
    return np.flatnonzero(chosen[row_person]).astype(np.int64)
