"""The regression kernel against statsmodels OLS, one regression per (variant, phenotype)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from gwas.errors import CollinearCovariatesError
from gwas.kernel import (
    CONST_ALLELE,
    TOO_FEW_SAMPLES,
    GroupDesign,
    associate_block,
    associate_chunk,
    covariate_basis,
    residualize,
)
from gwas.pvalues import t_test_pvalues


def _data(seed=0, n=250, m=30, n_pheno=4, missing=0.04):
    rng = np.random.default_rng(seed)
    g = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(np.float32)
    g[rng.random(g.shape) < missing] = np.nan
    covariates = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)])
    y = rng.normal(size=(n, n_pheno)) + 0.5 * np.nan_to_num(g[:, :n_pheno]) + covariates[:, :1]
    return g, covariates, y


def _statsmodels(g, covariates, y, mode):
    n, m = g.shape
    out = np.full((m, y.shape[1], 3), np.nan)
    for j in range(m):
        x = g[:, j].astype(np.float64)
        if mode == "mean":
            x = np.where(np.isnan(x), np.nanmean(x), x)
        keep = ~np.isnan(x)
        design = sm.add_constant(np.column_stack([x[keep], covariates[keep]]), has_constant="add")
        for p in range(y.shape[1]):
            fit = sm.OLS(y[keep, p], design).fit()
            out[j, p] = fit.params[1], fit.bse[1], -np.log10(fit.pvalues[1])
    return out


@pytest.mark.parametrize("mode", ["drop", "mean"])
def test_kernel_equals_statsmodels(mode):
    g, covariates, y = _data()
    q = covariate_basis(covariates)
    result = associate_chunk(g, q, residualize(q, y), mode)
    reference = _statsmodels(g, covariates, y, mode)
    np.testing.assert_allclose(result.beta, reference[:, :, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.se, reference[:, :, 1], rtol=1e-9)
    assert np.max(np.abs(result.log10_p - reference[:, :, 2])) < 1e-9
    expected_obs = (~np.isnan(g)).sum(0) if mode == "drop" else np.full(g.shape[1], g.shape[0])
    np.testing.assert_array_equal(result.obs_ct, expected_obs)


def test_drop_mode_with_heavy_missingness_still_exact():
    """30% missing calls: the low-rank correction is no longer small but must stay exact."""
    g, covariates, y = _data(seed=3, n=120, m=12, missing=0.3)
    q = covariate_basis(covariates)
    result = associate_chunk(g, q, residualize(q, y), "drop")
    reference = _statsmodels(g, covariates, y, "drop")
    assert np.max(np.abs(result.log10_p - reference[:, :, 2])) < 1e-9


def test_degenerate_variants_are_flagged_not_nan_silently():
    g, covariates, y = _data(m=4)
    g[:, 0] = 1.0  # constant
    g[:, 1] = np.nan  # all but 3 missing: fewer samples than parameters
    g[:3, 1] = [0, 1, 2]
    q = covariate_basis(covariates)
    result = associate_chunk(g, q, residualize(q, y), "drop")
    assert result.errcode[0] == CONST_ALLELE
    assert result.errcode[1] == TOO_FEW_SAMPLES
    assert np.isnan(result.beta[:2]).all() and np.isfinite(result.beta[2:]).all()
    assert list(result.errcode[2:]) == [".", "."]


def test_collinear_covariates_raise_naming_the_column():
    rng = np.random.default_rng(0)
    age = rng.normal(size=50)
    with pytest.raises(CollinearCovariatesError, match="age_copy"):
        covariate_basis(np.column_stack([age, 2 * age]), ["age", "age_copy"])


def test_log10_p_in_the_underflow_range_equals_extended_precision():
    mpmath = pytest.importorskip("mpmath")
    t = np.array([38.0, 49.2, 372.7, 60.0, 200.0])
    dof = np.array([9996.0, 9996.0, 9996.0, 5000.0, 150.0])
    _, log10_p = t_test_pvalues(t, dof)
    with mpmath.workdps(40):
        reference = [
            float(-mpmath.log10(mpmath.betainc(d / 2, 0.5, 0, d / (d + x * x), regularized=True)))
            for x, d in zip(t, dof, strict=True)
        ]
    np.testing.assert_allclose(log10_p, reference, rtol=1e-12)


def test_log10_p_does_not_underflow():
    p, log10_p = t_test_pvalues(np.array([60.0, 200.0]), 5000)
    assert (p == 0).all()
    assert np.all(np.isfinite(log10_p)) and log10_p[1] > log10_p[0] > 300
    # Continuity across the switch to extended precision.
    t = np.linspace(36, 38, 50)
    _, lp = t_test_pvalues(t, 5000)
    assert np.all(np.diff(lp) > 0)


def _loop_reference(g, covariates, y):
    """Complete-case OLS per (variant, phenotype) by numpy lstsq: (m, P) beta, se and t."""
    n, m = g.shape
    out = np.full((3, m, y.shape[1]), np.nan)
    for j in range(m):
        keep = ~np.isnan(g[:, j])
        design = np.column_stack([np.ones(keep.sum()), g[keep, j], covariates[keep]])
        coef, _, _, _ = np.linalg.lstsq(design, y[keep], rcond=None)
        resid = y[keep] - design @ coef
        dof = keep.sum() - design.shape[1]
        cov = np.linalg.inv(design.T @ design)[1, 1]
        se = np.sqrt((resid * resid).sum(axis=0) / dof * cov)
        out[:, j] = coef[1], se, coef[1] / se
    return out


def test_drop_path_equals_a_per_variant_loop_with_many_missing_patterns():
    """Every variant its own missing pattern (0 to 45% missing), a group that is a subset of the block's
    rows, missing calls outside the group, and missing coordinates given in sample order."""
    rng = np.random.default_rng(7)
    n_total, m, n_pheno = 400, 60, 5
    g = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n_total, m)).astype(np.float64)
    rates = np.concatenate([[0.0, 0.0], rng.uniform(0.0, 0.45, m - 2)])
    g[rng.random(g.shape) < rates] = np.nan
    covariates = np.column_stack(
        [rng.normal(size=n_total), rng.integers(0, 2, n_total), rng.integers(40, 70, n_total)]
    )
    y = rng.normal(size=(n_total, n_pheno)) + 0.3 * np.nan_to_num(g[:, :n_pheno])
    rows = np.sort(rng.choice(n_total, 330, replace=False))  # the phenotype group
    q = covariate_basis(covariates[rows])
    design = GroupDesign.build(n_total, rows, q, residualize(q, y[rows]))
    missing = np.isnan(g)
    samples, variants = np.nonzero(missing)  # sample-major: the kernel must not assume variant order
    result = associate_block(np.where(missing, 0.0, g), samples, variants, design, "drop")
    beta, se, t = _loop_reference(g[rows], covariates[rows], y[rows])
    np.testing.assert_allclose(result.beta, beta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.se, se, rtol=1e-9)
    np.testing.assert_allclose(result.t_stat, t, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(result.obs_ct, (~missing[rows]).sum(axis=0))
    assert len({tuple(np.flatnonzero(missing[rows, j])) for j in range(m)}) > 50  # patterns all differ
