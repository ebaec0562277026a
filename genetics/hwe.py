"""Exact Hardy–Weinberg test (Wigginton, Cutler & Abecasis 2005), vectorised over variants.

The p-value is the total probability, under HWE and given the allele counts, of every heterozygote count
that is no more likely than the observed one. It reproduces ``plink2 --hardy`` (and ``--hardy midp`` with
``midp=True``): probabilities are built by the same multiplicative recurrence outward from the observed
count, and a count whose probability is within plink2's relative tolerance (2^-44) of the observed one is
a tie and counts as "as extreme".

>>> hwe_pvalue([10], [80], [10]).round(6).tolist()  # heterozygote excess
[0.0]
>>> hwe_pvalue([25], [50], [25]).tolist()  # the most likely table
[1.0]
"""

from __future__ import annotations

import numpy as np

# plink2's constants (plink2_base.h / plink2_stats.cc).
SMALL_EPSILON = 2.0**-44  # kSmallEpsilon: relative tolerance for ties
_BIAS = 2.0**-83  # kExactTestBias: the observed table's scaled probability
_START = (1.0 - SMALL_EPSILON) * _BIAS
_TIE_FLOOR = (1.0 - 2.0 * SMALL_EPSILON) * _BIAS

FULL_RANGE_MAX = 2048  # below this many possible het counts, use the whole distribution
BAND_SD = 12.0  # terms further than this many standard deviations are below 2^-53 of the sums
CHUNK_ELEMENTS = 1 << 21  # variants × steps per vectorised block


def _down_ratio(het: np.ndarray, homr: np.ndarray, homc: np.ndarray) -> np.ndarray:
    """P(het - 2) / P(het) for tables (het, homr, homc); float64, exact integer operands."""
    return (het * (het - 1.0)) / (4.0 * (homr + 1.0) * (homc + 1.0))


def _up_ratio(het: np.ndarray, homr: np.ndarray, homc: np.ndarray) -> np.ndarray:
    """P(het + 2) / P(het)."""
    return (4.0 * homr * homc) / ((het + 2.0) * (het + 1.0))


def _walk(
    het0: np.ndarray, homr0: np.ndarray, homc0: np.ndarray, length: np.ndarray, width: int, up: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled probabilities of the ``width`` tables next to the observed one, walking down or up in hets.

    Returns (values (rows, width), valid (rows, width)); value[:, j] is the (j+1)-th table from the
    observed one, computed as plink2 does: start * ratio_1 * ratio_2 * ... left to right.
    """
    step = np.arange(width, dtype=np.float64)[None, :]  # tables already passed
    sign = 2.0 if up else -2.0
    het = het0[:, None] + sign * step
    homr = homr0[:, None] - sign / 2.0 * step
    homc = homc0[:, None] - sign / 2.0 * step
    valid = step < length[:, None]
    ratio = _up_ratio(het, homr, homc) if up else _down_ratio(het, homr, homc)
    ratio = np.where(valid, ratio, 1.0)
    chain = np.concatenate([np.full((len(het0), 1), _START), ratio], axis=1)
    return np.cumprod(chain, axis=1)[:, 1:], valid


def _block_pvalues(
    het: np.ndarray, homr: np.ndarray, homc: np.ndarray, n_down: np.ndarray, n_up: np.ndarray, midp: bool
) -> np.ndarray:
    """p-values for one block of variants whose walks have at most ``max(n_down, n_up)`` steps."""
    n = het + homr + homc
    rare = 2.0 * homr + het
    # plink2 walks towards the centre from the side of the observed count relative to its expectation.
    upper = het * (2.0 * n) > rare * (2.0 * n - rare)
    width_down = int(n_down.max(initial=0))
    width_up = int(n_up.max(initial=0))
    down, down_ok = _walk(het, homr, homc, n_down, width_down, up=False)
    up, up_ok = _walk(het, homr, homc, n_up, width_up, up=True)
    width = max(width_down, width_up)
    rows = len(het)

    def pad(a: np.ndarray, fill: float | bool) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

    down, up = pad(down, 0.0), pad(up, 0.0)
    down_ok, up_ok = pad(down_ok, False), pad(up_ok, False)
    toward = np.where(upper[:, None], down, up)
    toward_ok = np.where(upper[:, None], down_ok, up_ok)
    away = np.where(upper[:, None], up, down)
    away_ok = np.where(upper[:, None], up_ok, down_ok)
    # Centre: the run of tables next to the observed one (towards the mode) at least as likely as it.
    centre_mask = np.logical_and.accumulate(toward_ok & (toward >= _BIAS), axis=1)
    centre = np.where(centre_mask, toward, 0.0).sum(axis=1)
    tail_toward = toward_ok & ~centre_mask
    tail = _START + np.where(tail_toward, toward, 0.0).sum(axis=1) + np.where(away_ok, away, 0.0).sum(axis=1)
    if not midp:
        return tail / (tail + centre)
    first = centre_mask.sum(axis=1)
    has_first = first < toward_ok.sum(axis=1)
    first_value = toward[np.arange(rows), np.minimum(first, max(width - 1, 0))] if width else np.zeros(rows)
    ties = 1.0 + (has_first & (first_value > _TIE_FLOOR))
    return (tail - 0.5 * _START * ties) / (tail + centre)


def _walk_lengths(het: np.ndarray, homr: np.ndarray, homc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps to take below and above the observed het count: all of them, or a band around the mode."""
    n = het + homr + homc
    rare = 2.0 * homr + het
    parity = rare % 2
    k_obs = (het - parity) / 2
    k_max = np.floor(rare / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(n > 0, rare * (2 * n - rare) / np.maximum(2 * n - 1, 1), 0.0)
    k_mode = np.clip(np.round((expected - parity) / 2), 0, k_max)
    half = np.abs(k_obs - k_mode) + np.ceil(BAND_SD * (np.sqrt(expected) / 2 + 1)) + 32
    banded = k_max + 1 > FULL_RANGE_MAX
    lo = np.where(banded, np.maximum(0, k_mode - half), 0)
    hi = np.where(banded, np.minimum(k_max, k_mode + half), k_max)
    return (k_obs - np.minimum(lo, k_obs)).astype(np.int64), (np.maximum(hi, k_obs) - k_obs).astype(np.int64)


def hwe_pvalue(
    hom_alt: np.ndarray | list[int],
    het: np.ndarray | list[int],
    hom_ref: np.ndarray | list[int],
    midp: bool = False,
) -> np.ndarray:
    """Exact HWE test p-value per variant, as ``plink2 --hardy`` (``midp=True``: ``--hardy midp``).

    Args:
        hom_alt, het, hom_ref: (m,) genotype counts per variant (the two homozygote counts are symmetric).
        midp: return the mid-p value: tables exactly as likely as the observed one (itself included,
            ties within 2^-44) count half.

    Returns:
        (m,) float64 p-values; 1 (0.5 with midp) when no genotype was called. p-values below the
        smallest normal double (~2.2e-308) are reported as 0, as plink2 does.
    """
    hom1 = np.asarray(hom_alt, dtype=np.int64)
    het_ = np.asarray(het, dtype=np.int64)
    hom2 = np.asarray(hom_ref, dtype=np.int64)
    if not (hom1.shape == het_.shape == hom2.shape) or hom1.ndim != 1:
        raise ValueError(
            f"counts must be three 1-D arrays of one length, got {hom1.shape} {het_.shape} {hom2.shape}"
        )
    if (hom1 < 0).any() or (het_ < 0).any() or (hom2 < 0).any():
        raise ValueError("genotype counts must be non-negative")
    homr = np.minimum(hom1, hom2).astype(np.float64)
    homc = np.maximum(hom1, hom2).astype(np.float64)
    hetf = het_.astype(np.float64)
    pvalues = np.empty(hom1.shape, dtype=np.float64)
    n_down, n_up = _walk_lengths(hetf, homr, homc)
    # Blocks of variants with similar walk lengths keep the padded arrays small.
    bucket = np.ceil(np.log2(np.maximum(n_down, n_up) + 2.0)).astype(np.int64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for b in np.unique(bucket):
            members = np.flatnonzero(bucket == b)
            rows = max(1, CHUNK_ELEMENTS >> int(b))
            for at in range(0, members.size, rows):
                idx = members[at : at + rows]
                pvalues[idx] = _block_pvalues(hetf[idx], homr[idx], homc[idx], n_down[idx], n_up[idx], midp)
    # plink2 reports p-values below the smallest normal double as 0.
    pvalues[pvalues < np.finfo(np.float64).tiny] = 0.0
    return pvalues
