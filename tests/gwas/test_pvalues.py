"""Student t p-values: the vectorised expansion against mpmath, scipy's betainc and its own edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from gwas.pvalues import _log10_p_betainc, _log_gamma_ratio_half_series, log10_p_reference, t_test_pvalues

mpmath = pytest.importorskip("mpmath")

T_GRID = np.array([1e-7, 1e-3, 0.3, 1.0, 2.5, 6.0, 20.0, 150.0, 400.0, 1000.0])
DOF_GRID = np.array([5.0, 12.0, 29.0, 30.0, 31.5, 200.0, 9_996.0, 1e5, 1e6])


def test_log10_p_equals_mpmath_from_p_near_one_to_the_extreme_tail():
    t, dof = np.meshgrid(T_GRID, DOF_GRID)
    p, log10_p = t_test_pvalues(-t, dof)  # the sign of t does not matter
    expected = np.vectorize(log10_p_reference)(t, dof)
    np.testing.assert_allclose(log10_p, expected, rtol=1e-11, atol=0)
    np.testing.assert_allclose(p[expected < 290], 10.0 ** -expected[expected < 290], rtol=1e-11)
    assert log10_p.max() > 1.5e5  # |t| = 1000 at dof = 1e6: P = 1e-150518, reported, not inf


def test_expansion_equals_betainc_on_many_ordinary_statistics():
    """20,000 (variant, phenotype) pairs with per-variant dof 30 .. 10,000, several cache blocks."""
    rng = np.random.default_rng(1)
    dof = np.round(10 ** rng.uniform(np.log10(30), 4, (1_000, 1)))
    t = rng.standard_t(8, (1_000, 20)) * rng.choice([1.0, 3.0, 10.0], (1_000, 20))
    p, log10_p = t_test_pvalues(t, dof)
    p_ref, log10_p_ref = _log10_p_betainc((t * t).reshape(-1), np.broadcast_to(dof, t.shape).reshape(-1))
    # betainc(a, 1/2, x) drifts by up to ~1e-9 absolute as x → 1 (P → 1): compare LOG10_P away from
    # there (the mpmath grid covers P ≈ 1), and P with stdtr, which is accurate there
    ordinary = (p_ref < 0.99).reshape(t.shape)
    ref = log10_p_ref.reshape(t.shape)[ordinary]
    np.testing.assert_allclose(log10_p[ordinary], ref, rtol=1e-10, atol=2e-11)
    np.testing.assert_allclose(p, 2 * special.stdtr(dof, -np.abs(t)), rtol=1e-10, atol=1e-300)


def test_large_dof_equals_mpmath_where_betainc_drifts():
    """dof 1e4 .. 1e6: scipy's betainc is off by up to ~1e-9 in P there (1e-7 relative in LOG10_P
    when P ≈ 0.98); the expansion is not."""
    rng = np.random.default_rng(2)
    dof = np.round(10 ** rng.uniform(4, 6, 40))
    t = rng.standard_normal(40) * rng.choice([0.03, 1.0, 5.0], 40)
    _, log10_p = t_test_pvalues(t, dof)
    expected = np.array([log10_p_reference(a, b) for a, b in zip(t, dof, strict=True)])
    np.testing.assert_allclose(log10_p, expected, rtol=1e-11)


def test_shapes_zero_and_missing_statistics():
    t = np.array([[0.0, np.nan, 3.0], [-3.0, np.inf, 1e-12]])
    p, log10_p = t_test_pvalues(t, np.array([[50.0], [40.0]]))
    assert p.shape == log10_p.shape == (2, 3)
    assert p[0, 0] == 1.0 and log10_p[0, 0] == 0.0
    assert np.isnan(p[0, 1]) and np.isnan(log10_p[0, 1])
    assert p[1, 1] == 0.0 and log10_p[1, 1] == np.inf
    assert p[1, 0] == pytest.approx(2 * special.stdtr(40, -3.0), rel=1e-12)
    # P = 1 - 8e-13: LOG10_P keeps its relative precision (from the complement, not from -log10(P))
    assert log10_p[1, 2] == pytest.approx(log10_p_reference(1e-12, 40.0), rel=1e-9)
    scalar_dof = t_test_pvalues(t[0], 50)
    np.testing.assert_array_equal(scalar_dof[1], log10_p[0])


@pytest.mark.parametrize("a", [15.0, 15.5, 137.0, 4_998.0, 499_999.5])
def test_log_gamma_ratio_series_equals_mpmath(a):
    with mpmath.workdps(40):
        expected = mpmath.loggamma(mpmath.mpf(a) + 0.5) - mpmath.loggamma(a) - mpmath.log(a) / 2
    got = _log_gamma_ratio_half_series(np.array([a]))[0]
    assert got == pytest.approx(float(expected), rel=1e-14, abs=1e-17)


def test_small_dof_throughout_takes_the_betainc_path():
    t = np.array([1e-7, 0.3, 6.0, 1000.0])
    _, log10_p = t_test_pvalues(t, np.full(4, 12.0))
    expected = [log10_p_reference(v, 12.0) for v in t]
    np.testing.assert_allclose(log10_p, expected, rtol=1e-11)


def test_each_value_is_independent_of_its_neighbours():
    """The series stops per element, so a statistic's P is the same alone, in any block and any order:
    results do not depend on chunk size or on how many phenotypes share a call."""
    rng = np.random.default_rng(11)
    # small dof and large |t| need many terms: where the old block-wise stop let them differ
    t = np.concatenate([rng.normal(size=3000), rng.normal(scale=20, size=5000), [1e-6, 30.0, 300.0]])
    dof = rng.choice([30.0, 31.0, 45.0, 60.0, 1000.0, 1e5], size=t.size)
    p_all, lp_all = t_test_pvalues(t, dof)
    order = rng.permutation(t.size)
    p_perm, lp_perm = t_test_pvalues(t[order], dof[order])
    np.testing.assert_array_equal(lp_perm, lp_all[order])
    np.testing.assert_array_equal(p_perm, p_all[order])
    for i in rng.choice(t.size, 400, replace=False):
        p_one, lp_one = t_test_pvalues(t[i : i + 1], dof[i : i + 1])
        assert lp_one[0] == lp_all[i] and p_one[0] == p_all[i]
