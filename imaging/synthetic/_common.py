"""Shared pieces of the synthetic renderers: trait checking, one random stream per person, soft splats.

Batch-split independence rests on two rules kept here: every random number of a person comes from a
generator seeded by (seed, renderer, person id, extra), and every array operation is element-wise or
reduces along a per-person axis, so a person's pixels never depend on who else is in the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def batch_size(*candidates: np.ndarray | None) -> int:
    """The common leading length of the given (B,) arrays; ValueError when they disagree or none is given."""
    sizes = {len(c) for c in candidates if c is not None}
    if not sizes:
        raise ValueError("cannot tell the batch size: pass at least one trait array, or ids")
    if len(sizes) > 1:
        raise ValueError(
            f"traits, ids and eye must all have the same length (B,), got lengths {sorted(sizes)}"
        )
    return sizes.pop()


def check_traits(traits: Mapping[str, np.ndarray], names: Sequence[str], kind: str) -> dict[str, np.ndarray]:
    """Validate a {name: (B,) array} mapping; returns float64 contiguous arrays (missing names are absent).

    Unknown names raise ValueError (a misspelled trait would otherwise be silently zero).
    """
    unknown = sorted(set(traits) - set(names))
    if unknown:
        raise ValueError(f"unknown {kind} trait(s) {unknown}; known traits: {', '.join(names)}")
    out = {}
    for name, values in traits.items():
        array = np.ascontiguousarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{kind} trait {name!r} must be a (B,) array, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"{kind} trait {name!r} has NaN or infinite values; impute or drop those persons first"
            )
        out[name] = array
    return out


def full_traits(checked: dict[str, np.ndarray], names: Sequence[str], b: int) -> dict[str, np.ndarray]:
    """Every trait name mapped to a (B,) float64 array, zeros for the missing ones."""
    return {name: checked.get(name, np.zeros(b)) for name in names}


def person_keys(ids: np.ndarray | Sequence | None, b: int) -> np.ndarray:
    """(B,) uint64 seed keys: non-negative integer ids as they are, strings hashed (blake2b, 64 bits)."""
    if ids is None:
        return np.arange(b, dtype=np.uint64)
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a (B,) array, got shape {ids.shape}")
    if ids.dtype.kind in "iu":
        if ids.size and ids.min() < 0:
            raise ValueError("integer ids must be non-negative")
        return ids.astype(np.uint64)
    if ids.dtype.kind in "UO":
        return np.array(
            [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little") for i in ids],
            dtype=np.uint64,
        )
    raise ValueError(f"ids must be non-negative integers or strings, got dtype {ids.dtype}")


def person_rngs(
    seed: int, stream: int, keys: np.ndarray, extra: np.ndarray | None = None
) -> list[np.random.Generator]:
    """One independent generator per person, seeded by (seed, stream, key[, extra])."""
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    rngs = []
    for i, key in enumerate(keys):
        entropy = [int(seed), int(stream), int(key)] + ([] if extra is None else [int(extra[i])])
        rngs.append(np.random.default_rng(np.random.SeedSequence(entropy)))
    return rngs


def poisson_quantile(u: np.ndarray, mean: np.ndarray, cap: int) -> np.ndarray:
    """Poisson(mean) counts by inversion of a fixed uniform u, capped: monotone in ``mean`` for each person.

    Args:
        u: (B,) uniforms in [0, 1); mean: (B,) positive means. Returns (B,) int64.
    """
    k = np.arange(cap + 1, dtype=np.float64)  # (K,)
    log_pmf = (
        k[None, :] * np.log(mean)[:, None] - mean[:, None] - np.cumsum(np.log(np.maximum(k, 1)))[None, :]
    )
    cdf = np.cumsum(np.exp(log_pmf), axis=1)  # (B, K)
    return np.minimum((cdf <= u[:, None]).sum(axis=1), cap).astype(np.int64)


def splat_coverage(
    batch: np.ndarray, centres: np.ndarray, radii: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased discs (2D) or balls (3D) around points, as (flat index, coverage) pairs.

    Coverage of a cell at distance d from a point of radius r is clip(r - d + 1/2, 0, min(1, 2r)), so a
    cell belongs to the shape (coverage ≥ 1/2) exactly when d ≤ r and r ≥ 1/4; thinner shapes stay faint.
    Only cells with offset ≤ ceil(r) from the nearest cell can have d < r + 1/2, so the window is that big.

    Args:
        batch: (P,) int person index of each point.
        centres: (P, n) point positions in cell units along the n spatial axes (cell i's centre is at i).
        radii: (P,) radii in cells.
        shape: the n spatial sizes.
    Returns:
        flat: (Q, P) int64 index into an array of shape (B, *shape) raveled, for the Q window cells.
        coverage: (Q, P) float32 in [0, 1]; 0 for window cells outside the grid.
    """
    n = len(shape)
    if len(radii) == 0:
        return np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32)
    centres = centres.astype(np.float32)
    radii = radii.astype(np.float32)
    half = max(1, int(np.ceil(radii.max())))
    axis = np.arange(-half, half + 1)
    offsets = np.stack(np.meshgrid(*([axis] * n), indexing="ij"), axis=-1).reshape(-1, n)  # (Q, n)
    dist2 = np.zeros((len(offsets), len(radii)), dtype=np.float32)  # (Q, P): long inner loops over points
    flat = np.broadcast_to(batch.astype(np.int64)[None, :], dist2.shape)
    inside = np.ones(dist2.shape, dtype=bool)
    for d in range(n):
        nearest = np.floor(centres[:, d] + np.float32(0.5))  # (P,)
        delta = (nearest - centres[:, d])[None, :] + offsets[:, d, None].astype(np.float32)  # (Q, P)
        cells = nearest.astype(np.int64)[None, :] + offsets[:, d, None]
        dist2 = dist2 + delta * delta
        inside = inside & (cells >= 0) & (cells < shape[d])
        flat = flat * shape[d] + np.clip(cells, 0, shape[d] - 1)
    cap = np.minimum(np.float32(1.0), 2 * radii)[None, :]
    coverage = np.minimum(np.maximum(radii[None, :] + np.float32(0.5) - np.sqrt(dist2), np.float32(0.0)), cap)
    return flat, np.where(inside, coverage, np.float32(0.0))


def splat_max(
    out: np.ndarray,
    batch: np.ndarray,
    centres: np.ndarray,
    radii: np.ndarray,
    values: np.ndarray | None = None,
) -> None:
    """``out`` (B, *shape) ← max(out, coverage × value) of the points' discs/balls (see splat_coverage).

    Points are grouped by window size so that thin shapes use small windows; the result is the same.
    """
    if not out.flags.c_contiguous:
        raise ValueError("splat_max needs a C-contiguous output array")
    need = np.maximum(1, np.ceil(radii)).astype(np.int64)
    flat_out = out.reshape(-1)
    for half in np.unique(need):
        sel = need == half
        flat, coverage = splat_coverage(batch[sel], centres[sel], radii[sel], out.shape[1:])
        if values is not None:
            coverage = coverage * values[sel].astype(np.float32)[None, :]
        np.maximum.at(flat_out, flat.ravel(), coverage.ravel().astype(out.dtype))
