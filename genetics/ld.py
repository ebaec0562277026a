"""Linkage disequilibrium between variants and ``plink2 --indep-pairwise`` pruning.

r² is plink2's unphased hard-call r²: the squared Pearson correlation of the dosages over the samples
called at *both* variants (no mean imputation). Pruning reproduces plink2 2.00a3.5 exactly (checked in
tests/genetics/test_ld.py), including its order of work:

* Founders only. Each chromosome (with a kb window: each run of variants without a gap wider than the
  window) is pruned on its own; one holding a single variant is skipped and that variant kept; chr 0 is
  left out of the result altogether.
* A variant whose non-missing calls show no homozygote, or one homozygote only, is pruned on sight.
* A window of ``window`` variants (or of variants within ``window_kb`` of its first) slides by ``step``
  (PLINK 1.x order, plink2's default until 2023): in sweeps repeated until one prunes nothing, each
  unpruned variant, in window order, looks for the first later unpruned variant it has not yet been
  compared with whose r² exceeds the threshold (strictly, with plink2's 2^-44 slack). Of that pair the
  variant with the higher major allele frequency (lower MAF) is pruned; on a tie the later one, and the
  earlier one then resumes after it in the next sweep.
* Haploid calls: chrX males and every chrY/chrMT call count once (het calls missing), chrX non-males
  twice; chrY uses males only. (plink2 2.00a3.5 picks the wrong samples on chrX/chrY when there are
  non-founders or --keep/--remove; this module uses the right ones, so results differ there.)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from genetics.errors import GeneticsError
from genetics.hwe import SMALL_EPSILON
from genetics.plink import PlinkFileset
from genetics.qc import (
    chromosome_kinds,
    founder_mask,
    male_mask,
    normalize_chromosomes,
    ploidy_weights,
    variant_stats,
)

_CHUNK_CODES = 2**22  # genotype codes read ahead per chunk (~32 MB as float32 codes + mask)


def _pair_sums(
    x1: np.ndarray, m1: np.ndarray, x2: np.ndarray, m2: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise-complete (cov, var1, var2), each scaled by n², for all pairs of columns (a, b).

    x1, m1: (n, a) values (0 at missing calls) and the called mask (1.0/0.0); x2, m2: (n, b) likewise.
    weight: (n,) per-sample weight (ploidy), default 1.
    Returns (a, b) float64 arrays; exact for integer inputs whose sums stay below 2^24 (float32) or
    2^53 (float64), because the products are formed from exact integer sums as plink2 does.
    """
    w = np.ones(x1.shape[0], dtype=x2.dtype) if weight is None else weight.astype(x2.dtype)
    wm2, wx2 = m2 * w[:, None], x2 * w[:, None]
    a, b = x1.shape[1], x2.shape[1]
    by_m2 = (np.concatenate([m1, x1, x1 * x1], axis=1).T @ wm2).astype(np.float64)  # n, s1, q1
    by_m1 = (m1.T @ np.concatenate([wx2, wx2 * x2], axis=1)).astype(np.float64)  # s2, q2
    dot = (x1.T @ wx2).astype(np.float64)
    n, s1, q1 = by_m2[:a], by_m2[a : 2 * a], by_m2[2 * a :]
    s2, q2 = by_m1[:, :b], by_m1[:, b:]
    return dot * n - s1 * s2, q1 * n - s1 * s1, q2 * n - s2 * s2


def r2_matrix(block: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """r² between the columns of samples × variants dosage blocks, each pair over samples called at both.

    Args:
        block: (n, a) dosages, NaN = missing.
        other: (n, b) dosages (default: ``block``).

    Returns:
        (a, b) float64 r²; NaN where a variant is constant over the shared samples.

    >>> g = np.array([[0, 0, 2], [1, 1, 1], [2, 2, np.nan], [1, 2, 0]])
    >>> r2_matrix(g).round(3).tolist()
    [[1.0, 0.727, 0.75], [0.727, 1.0, 1.0], [0.75, 1.0, 1.0]]
    """
    other = block if other is None else other
    called1, called2 = ~np.isnan(block), ~np.isnan(other)
    x1 = np.where(called1, block, 0.0).astype(np.float64)
    x2 = np.where(called2, other, 0.0).astype(np.float64)
    cov, var1, var2 = _pair_sums(x1, called1.astype(np.float64), x2, called2.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov * cov / (var1 * var2)


class _Segment:
    """Coded genotypes of one sub-contig's variants, read ahead in chunks and dropped once passed.

    Codes follow plink2: x = dosage - 1 in {-1, 0, 1} (0 when missing), called mask; het calls of
    haploid samples count as missing. ``monomorphic[p]``: no homozygote, or one homozygote only.
    """

    def __init__(
        self, fileset: PlinkFileset, variants: np.ndarray, samples: np.ndarray, kind: str, male: np.ndarray
    ):
        self.chunk = int(np.clip(_CHUNK_CODES // max(samples.size, 1), 16, 1024))
        haploid = np.ones_like(male) if kind in ("Y", "MT") else male if kind == "X" else np.zeros_like(male)
        self._het_missing = haploid[:, None]
        self.weight = ploidy_weights(kind, male)
        # float32 products of integer sums are exact below 2^24
        self.dtype = np.float32 if 2.0 * samples.size < 2**24 else np.float64
        self._chunks: Iterator = fileset.iter_chunks(self.chunk, variants, samples)
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.loaded = 0
        self.monomorphic = np.zeros(variants.size, dtype=bool)

    def load_until(self, stop: int) -> None:
        while self.loaded < stop:
            _, block = next(self._chunks)
            called = ~np.isnan(block) & ~((block == 1) & self._het_missing)
            x = np.where(called, block - 1.0, 0.0).astype(self.dtype)
            w = self.weight
            n_called, plus, minus = w @ called, w @ (called & (x == 1)), w @ (called & (x == -1))
            stop_at = self.loaded + block.shape[1]
            self.monomorphic[self.loaded : stop_at] = ((plus == 0) & (minus == 0)) | (plus == n_called)
            self.monomorphic[self.loaded : stop_at] |= minus == n_called
            self._blocks[self.loaded] = (x, called.astype(self.dtype))
            self.loaded = stop_at

    def columns(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, called) for positions [start, stop), each (n, stop - start)."""
        self.load_until(stop)
        first = start - start % self.chunk
        parts = [self._blocks[c] for c in range(first, stop, self.chunk)]
        x = np.concatenate([p[0] for p in parts], axis=1)
        m = np.concatenate([p[1] for p in parts], axis=1)
        return x[:, start - first : stop - first], m[:, start - first : stop - first]

    def release(self, below: int) -> None:
        for c in [c for c in self._blocks if c + self.chunk <= below]:
            del self._blocks[c]


class _Exceed:
    """r² > threshold for every pair a window can hold, computed in blocks of later variants.

    Block b holds pairs (j, k) with k in [b·size, (b+1)·size) and ``lowest[k] <= j < k``; the size
    follows the band width (64..1024) so that few computed pairs fall outside every window. Memory is
    O(samples × (band + size)).
    """

    def __init__(self, data: _Segment, lowest: np.ndarray, threshold: float):
        self.data, self.lowest, self.threshold = data, lowest, threshold
        band = int((np.arange(lowest.size) - lowest).max(initial=0))
        self.size = int(np.clip(band, 64, 1024))
        self.blocks: dict[int, tuple[int, np.ndarray]] = {}

    def _block(self, b: int) -> tuple[int, np.ndarray]:
        if b not in self.blocks:
            k0, k1 = b * self.size, min((b + 1) * self.size, self.lowest.size)
            j0 = int(self.lowest[k0:k1].min())
            x1, m1 = self.data.columns(j0, k1)
            cov, v1, v2 = _pair_sums(x1, m1, x1[:, k0 - j0 :], m1[:, k0 - j0 :], self.data.weight)
            # same float operations as plink2: cov² > (r2 · (1 + eps) · var1) · var2
            self.blocks[b] = (j0, cov * cov > self.threshold * v1 * v2)
        return self.blocks[b]

    def submatrix(self, firsts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """(len(firsts), len(seconds)) bool: pair above the threshold, firsts before seconds."""
        out = np.zeros((firsts.size, seconds.size), dtype=bool)
        for b in np.unique(seconds // self.size):
            cols = np.flatnonzero(seconds // self.size == b)
            j0, exceed = self._block(int(b))
            rows = firsts - j0
            ok = (rows >= 0) & (rows < exceed.shape[0])
            sub = exceed[np.clip(rows, 0, exceed.shape[0] - 1)][:, seconds[cols] - b * self.size]
            out[:, cols] = sub & ok[:, None] & (firsts[:, None] < seconds[cols][None, :])
        return out

    def first_column(self, k: int) -> int:
        """Lowest position whose data a block not yet computed may read, for blocks holding k or later."""
        return int(self.lowest[(k // self.size) * self.size])

    def release(self, below: int) -> None:
        for b in [b for b in self.blocks if (b + 1) * self.size <= below]:
            del self.blocks[b]


def _segments(chroms: np.ndarray, pos: np.ndarray, window_bp: int | None) -> list[np.ndarray]:
    """Positions (into the filtered variant list) of each chromosome or kb-window sub-contig, >= 2 long."""
    out = []
    change = np.flatnonzero(chroms[1:] != chroms[:-1]) + 1
    for part in np.split(np.arange(chroms.size), change):
        if part.size == 0 or chroms[part[0]] == "0":
            continue
        if window_bp is not None:
            bp = pos[part]
            if (np.diff(bp) < 0).any():
                raise GeneticsError(f"chromosome {chroms[part[0]]}: positions are not sorted; sort the .bim")
            # plink2 starts a new sub-contig where a variant lies more than a window past the previous one
            gap = (bp[1:] >= window_bp) & (bp[1:] - window_bp > bp[:-1])
            pieces = np.split(part, np.flatnonzero(gap) + 1)
        else:
            pieces = [part]
        out.extend(piece for piece in pieces if piece.size > 1)
    return out


def _sweeps(members: np.ndarray, gone: np.ndarray, exceed: np.ndarray, maj: np.ndarray) -> None:
    """PLINK 1.x-order sweeps over one window until one prunes nothing; updates ``gone`` in place.

    exceed: (window, new) pairs above the threshold, the new variants being the last columns of the
    window. Variants without such a pair can neither prune nor be pruned by their own scan, so only the
    rows holding one are visited in Python.
    """
    offset = members.size - exceed.shape[1]
    partners = {int(r): (np.flatnonzero(exceed[r]) + offset).tolist() for r in np.flatnonzero(exceed.any(1))}
    resume = dict.fromkeys(partners, 0)  # window position from which a row's partners are still unchecked
    pruned = True
    while pruned:
        pruned = False
        for fw, candidates in partners.items():
            if gone[fw] or resume[fw] < 0:
                continue
            hit = next((sw for sw in candidates if sw >= resume[fw] and not gone[sw]), None)
            if hit is None:
                resume[fw] = -1  # fully checked for this window
                continue
            pruned = True
            a, b = members[fw], members[hit]
            if maj[a] > maj[b] * (1 + SMALL_EPSILON):
                gone[fw] = True
            else:
                gone[hit] = True
                resume[fw] = hit + 1


def _prune_segment(
    data: _Segment, maj: np.ndarray, pos: np.ndarray, window: int, step: int, window_bp: int | None, r2: float
) -> np.ndarray:
    """Removed flags (L,) for one sub-contig, following plink2 2.00a3.5's IndepPairwiseThread."""
    length = maj.size
    if window_bp is None:
        lowest = np.maximum(np.arange(length) - window + 1, 0)
        end = min(length, window)
    else:
        lowest = np.searchsorted(pos, pos - window_bp, side="left")
        end = max(1, int(np.searchsorted(pos, pos[0] + window_bp, side="right")))
    exceed = _Exceed(data, lowest, r2 * (1 + SMALL_EPSILON))
    removed = np.zeros(length, dtype=bool)
    members = np.zeros(0, dtype=np.int64)
    start = loaded = 0
    while True:
        data.load_until(end)
        removed[loaded:end] = data.monomorphic[loaded:end]
        new = np.arange(loaded, end)
        members = np.concatenate([members, new])
        gone = removed[members].copy()
        if new.size:
            _sweeps(members, gone, exceed.submatrix(members, new), maj)
        removed[members[gone]] = True
        loaded = end
        if end == length:
            return removed
        if window_bp is None:
            start += step
            end = min(start + window, length)
        else:
            # the window starts at the first variant within window_bp of the next one to add
            start = max(start + 1, int(np.searchsorted(pos, pos[end] - window_bp, side="left")))
            end = min(length, max(end + 1, int(np.searchsorted(pos, pos[start] + window_bp, side="right"))))
        members = members[~gone & (members >= start)]
        exceed.release(start)
        # the next variants to add start at `loaded`; the block holding them begins at or before `loaded`
        # and may reach back before `start` (the bug behind a KeyError once chunks stopped aligning with
        # blocks, above 4,096 samples), so genotype chunks are kept from that block's lowest partner on
        data.release(exceed.first_column(loaded))


def indep_pairwise(
    fileset: PlinkFileset,
    window: int | None,
    step: int,
    r2: float,
    variants: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    window_kb: float | None = None,
) -> np.ndarray:
    """Variants kept by ``plink2 --indep-pairwise WINDOW STEP R2`` (``window_kb``: ``--indep-pairwise Nkb 1 R2``).

    Args:
        window: window size in variants (None when ``window_kb`` is given).
        step: variants the window slides by (must be 1 with ``window_kb``).
        r2: prune pairs with r² strictly greater than this.
        variants, samples: .bim / .fam row indices to use (e.g. :attr:`QCResult.variants`); default all.

    Returns:
        (k,) sorted .bim row indices of the kept variants (plink2's ``.prune.in``).
    """
    if (window is None) == (window_kb is None):
        raise ValueError("give exactly one of window (variant count) and window_kb")
    if window_kb is not None and step != 1:
        raise ValueError(f"step must be 1 with a kb window (plink2 rule), got {step}")
    if window is not None and not 1 <= step <= window:
        raise ValueError(f"need 1 <= step <= window (plink2 rule), got window={window}, step={step}")
    if step < 1 or not 0.0 <= r2 <= 1.0:
        raise ValueError(f"need step >= 1 and 0 <= r2 <= 1, got step={step}, r2={r2}")
    variants = np.arange(fileset.n_variants) if variants is None else np.sort(np.asarray(variants, np.int64))
    samples = np.arange(fileset.n_samples) if samples is None else np.sort(np.asarray(samples, np.int64))
    fam = fileset.fam.iloc[samples]
    founders = samples[founder_mask(fam)]
    if founders.size < 2:
        raise GeneticsError(
            f"{fileset.fam_path}: LD pruning needs at least two founders, found {founders.size}"
        )
    if founders.size < 50:
        warnings.warn(
            f"LD from {founders.size} founders is unreliable (plink2 refuses fewer than 50)", stacklevel=2
        )
    ids = fileset.bim["ID"].to_numpy()[variants]
    if len(set(ids)) != ids.size:
        raise GeneticsError(f"{fileset.bim_path}: LD pruning needs unique variant IDs (plink2 rule)")
    male = male_mask(fileset.fam.iloc[founders])
    chroms = normalize_chromosomes(fileset.bim["CHROM"].to_numpy()[variants])
    kinds = chromosome_kinds(chroms)
    pos = fileset.bim["POS"].to_numpy()[variants]
    window_bp = None if window_kb is None else int(round(window_kb * 1000))
    freq = variant_stats(fileset, variants, founders)["ALT_FREQ"].to_numpy()
    maj = np.maximum(freq, 1 - freq)
    keep = chroms != "0"
    for segment in _segments(chroms, pos, window_bp):
        kind = str(kinds[segment[0]])
        chosen = founders[male] if kind == "Y" else founders
        data = _Segment(fileset, variants[segment], chosen, kind, male[male] if kind == "Y" else male)
        removed = _prune_segment(data, maj[segment], pos[segment], window or 0, step, window_bp, r2)
        keep[segment[removed]] = False
    return variants[keep]
