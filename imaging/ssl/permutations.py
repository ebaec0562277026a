"""Permutation sets for jigsaw puzzles, chosen greedily for a maximal minimum Hamming distance.

Noroozi & Favaro (2016) pick the next permutation as the candidate farthest (in Hamming distance) from
those already chosen, so the classes are easy to tell apart; the 3D jigsaw of Taleb et al. (2020) drew
them at random instead. For 9 or more tiles the candidates are a seeded random pool (9! = 362,880 would
be slow to scan 1000 times; 27! cannot be listed); for fewer tiles all permutations are candidates.

>>> perms = hamming_permutations(4, 6, seed=0)
>>> perms.shape, min_hamming_distance(perms)
((6, 4), 2)
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from imaging.errors import ImagingError


@functools.lru_cache(maxsize=16)
def _cached(n: int, size: int, seed: int, pool: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if math.factorial(n) <= pool:
        candidates = np.array(list(itertools.permutations(range(n))), dtype=np.int16)
    else:
        candidates = np.argsort(rng.random((pool, n)), axis=1).astype(np.int16)
        candidates = np.unique(candidates, axis=0)
    if size > len(candidates):
        raise ImagingError(
            f"cannot choose {size} distinct permutations of {n} tiles from {len(candidates)} candidates; "
            "lower num_permutations or raise the candidate pool"
        )
    chosen = [int(rng.integers(len(candidates)))]
    # Hamming distance of every candidate to its nearest chosen permutation.
    nearest = (candidates != candidates[chosen[0]]).sum(1)
    for _ in range(size - 1):
        best = int(np.argmax(nearest))  # the first candidate of maximal minimum distance
        chosen.append(best)
        nearest = np.minimum(nearest, (candidates != candidates[best]).sum(1))
    return candidates[chosen].astype(np.int64)


def hamming_permutations(n: int, size: int, seed: int = 0, pool: int = 10_000) -> np.ndarray:
    """(size, n) permutations of ``range(n)``, greedy max-min Hamming distance, reproducible by ``seed``.

    Row ``p`` means: tile slot ``k`` of the puzzle shows original tile ``perms[p, k]``.
    """
    if n < 2 or size < 1:
        raise ImagingError(f"need n >= 2 tiles and size >= 1 permutations, got n={n}, size={size}")
    return _cached(n, size, seed, pool).copy()


def random_permutations(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(size, n) distinct random permutations (the original 3D jigsaw's choice)."""
    rng = np.random.default_rng(seed)
    rows: dict[tuple[int, ...], None] = {}
    while len(rows) < size:
        rows.setdefault(tuple(rng.permutation(n).tolist()))
    return np.array(list(rows), dtype=np.int64)


def min_hamming_distance(perms: np.ndarray) -> int:
    """Smallest Hamming distance between two rows of ``perms`` (P, n)."""
    distances = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(distances, perms.shape[1] + 1)
    return int(distances.min())


__all__ = ["hamming_permutations", "min_hamming_distance", "random_permutations"]
