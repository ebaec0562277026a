"""Exact HWE test: against a brute-force enumeration with exact fractions, and against plink2 --hardy.

plink2 prints 6 significant digits, so its p-values are compared as text after formatting ours the
same way (``%.6g``); the enumeration checks full precision (1e-12 relative).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import genetics.hwe as hwe_module
from genetics.hwe import hwe_pvalue
from genetics.plink import write_plink
from tests.conftest import run_binary


def brute_force_p(hom1: int, het: int, hom2: int, midp: bool = False) -> float:
    """Sum of P(h) <= P(observed) over every het count h given the allele counts (exact rationals);
    mid-p counts the tables exactly as likely as the observed one (itself included) half."""
    n = hom1 + het + hom2
    rare = min(2 * hom1 + het, 2 * hom2 + het)
    if n == 0:
        return 0.5 if midp else 1.0

    def prob(h: int) -> Fraction:
        r = (rare - h) // 2
        c = n - h - r
        ways = math.factorial(n) * 2**h * math.factorial(rare) * math.factorial(2 * n - rare)
        return Fraction(
            ways, math.factorial(r) * math.factorial(h) * math.factorial(c) * math.factorial(2 * n)
        )

    probs = {h: prob(h) for h in range(rare % 2, rare + 1, 2)}
    observed = probs[het]
    p = sum((q for q in probs.values() if q <= observed), Fraction(0))
    if midp:
        p -= sum((q for q in probs.values() if q == observed), Fraction(0)) / 2
    return float(p)


def test_matches_enumeration_on_every_small_table():
    tables = [(a, b, c) for a in range(13) for b in range(13 - a) for c in range(13 - a - b)]
    hom1, het, hom2 = (np.array(col) for col in zip(*tables, strict=True))
    for midp in (False, True):
        ours = hwe_pvalue(hom1, het, hom2, midp=midp)
        expected = np.array([brute_force_p(*t, midp=midp) for t in tables])
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)


def test_known_values_and_edge_cases():
    assert hwe_pvalue([0], [0], [0]).tolist() == [1.0]
    assert hwe_pvalue([0], [0], [0], midp=True).tolist() == [0.5]
    assert hwe_pvalue([0], [0], [7]).tolist() == [1.0]  # monomorphic
    assert hwe_pvalue([25], [50], [25]).tolist() == [1.0]  # the modal table
    # homozygote counts are symmetric; result is float64 and keeps the input order
    p = hwe_pvalue([3, 10, 0], [20, 2, 5], [10, 3, 40])
    assert p.dtype == np.float64
    np.testing.assert_array_equal(p, hwe_pvalue([10, 3, 40], [20, 2, 5], [3, 10, 0]))
    np.testing.assert_array_equal(
        p, [hwe_pvalue([a], [b], [c])[0] for a, b, c in [(3, 20, 10), (10, 2, 3), (0, 5, 40)]]
    )
    with pytest.raises(ValueError, match="non-negative"):
        hwe_pvalue([-1], [0], [0])
    with pytest.raises(ValueError, match="one length"):
        hwe_pvalue([1, 2], [0], [0])


def test_band_around_mode_equals_whole_distribution(monkeypatch):
    """Large samples use a band of het counts around the mode; it must not change any p-value."""
    rng = np.random.default_rng(0)
    n = 30_000
    freq = rng.uniform(0.05, 0.5, 200)
    inbreeding = rng.choice([0.0, 0.005, -0.005, 0.02, -0.02, 0.5], 200)
    het = np.round(2 * freq * (1 - freq) * (1 - inbreeding) * n).astype(int)
    hom1 = np.round((freq**2 + inbreeding * freq * (1 - freq)) * n).astype(int)
    hom2 = n - het - hom1
    banded = hwe_pvalue(hom1, het, hom2)
    monkeypatch.setattr(hwe_module, "FULL_RANGE_MAX", 10**9)
    whole = hwe_pvalue(hom1, het, hom2)
    assert (banded > 0).sum() > 50 and (banded < 1e-5).sum() > 20
    np.testing.assert_allclose(banded, whole, rtol=1e-12, atol=0)


def _simulate_hwe_data(n: int, m: int, seed: int) -> np.ndarray:
    """samples × variants dosages: varied allele frequencies, ~1% missing, some variants out of HWE."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.0, 0.5, m)
    inbreeding = rng.choice([0.0, 0.0, 0.05, -0.05, 0.3, -0.3, 0.9], m)
    p_hom_alt = np.clip(freq**2 + inbreeding * freq * (1 - freq), 0, 1)
    p_het = np.clip(2 * freq * (1 - freq) * (1 - inbreeding), 0, 1 - p_hom_alt)
    u = rng.random((n, m))
    g = np.where(u < p_hom_alt, 2.0, np.where(u < p_hom_alt + p_het, 1.0, 0.0))
    g[rng.random(g.shape) < 0.01] = np.nan
    g[:, 0] = 0.0  # monomorphic
    g[:, 1] = np.nan  # nothing called
    g[:, 2] = 1.0  # all heterozygous
    return g


@pytest.mark.parametrize("n, m", [(300, 300), (6000, 40)])
def test_equals_plink2_hardy(tmp_path, plink2_bin, n, m):
    g = _simulate_hwe_data(n, m, seed=n)
    write_plink(tmp_path / "d", g)
    for midp in (False, True):
        args = [plink2_bin, "--bfile", "d", "--hardy", *(["midp"] if midp else []), "--out", "d"]
        run_binary([*args, "--threads", "1"], tmp_path)
        report = pd.read_csv(tmp_path / "d.hardy", sep="\t", dtype={"P": str, "MIDP": str})
        assert len(report) == m
        # .hardy's A1 is REF here, so HOM_A1_CT counts REF homozygotes
        called = ~np.isnan(g)
        np.testing.assert_array_equal(report["HOM_A1_CT"], ((g == 0) & called).sum(0))
        ours = hwe_pvalue(report["TWO_AX_CT"], report["HET_A1_CT"], report["HOM_A1_CT"], midp=midp)
        theirs = report["MIDP" if midp else "P"].to_numpy()
        text = np.array([f"{p:.6g}" for p in ours])
        mismatch = np.flatnonzero(text != theirs)
        assert mismatch.size == 0, list(zip(text[mismatch], theirs[mismatch], strict=True))[:5]
        assert (ours < 1e-6).sum() >= 3 and (ours == (0.5 if midp else 1)).sum() >= 2
