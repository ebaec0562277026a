"""gwas.prepare: rank INT against plink2, residuals against statsmodels, PCA against scikit-learn."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.decomposition import PCA

from genetics.plink import write_plink
from gwas.prepare import PrepareError, inverse_normal_transform, pca, residualize


@pytest.fixture(scope="module")
def plink2(plink2_bin) -> str:
    return plink2_bin


def features_with_ties(n: int = 257, seed: int = 0) -> np.ndarray:
    """(n, 4) phenotypes: continuous, heavy ties, a constant block with NaNs, and mostly missing."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=n) * 3 + 1,
            np.round(rng.normal(size=n), 1),
            rng.integers(0, 3, n) + 0.5,  # heavy ties (0/1/2 alone would be read as case/control)
            rng.gamma(2.0, size=n),
        ]
    )
    x[rng.random((n, 4)) < 0.08] = np.nan
    x[rng.random(n) < 0.7, 3] = np.nan
    return x


@pytest.mark.plink2
def test_inverse_normal_matches_plink2(plink2, tmp_path):
    x = features_with_ties()
    n = len(x)
    write_plink(tmp_path / "g", np.zeros((n, 1), dtype=np.float32))
    iids = [f"s{i}" for i in range(n)]
    pheno = pd.DataFrame({"#FID": iids, "IID": iids} | {f"f{j}": x[:, j] for j in range(x.shape[1])})
    pheno.to_csv(tmp_path / "pheno.tsv", sep="\t", index=False, na_rep="NA", float_format="%.17g")
    cmd = [plink2, "--bfile", str(tmp_path / "g"), "--pheno", str(tmp_path / "pheno.tsv")]
    cmd += ["--pheno-quantile-normalize", "--make-just-psam", "--out", str(tmp_path / "out")]
    subprocess.run(cmd, check=True, capture_output=True)
    psam = pd.read_csv(tmp_path / "out.psam", sep="\t", na_values="NA")
    assert psam["IID"].tolist() == iids
    expected = psam[[f"f{j}" for j in range(x.shape[1])]].to_numpy(dtype=np.float64)
    ours = inverse_normal_transform(x)
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    ok = ~np.isnan(expected)
    # plink2 prints 6 significant digits: agree to half a unit in the 6th digit (<= 5e-7 for |z| < 1)
    magnitude = np.maximum(np.abs(expected[ok]), 1e-6)  # plink prints an exact 0 as "0"
    half_unit = 0.5 * 10.0 ** (np.floor(np.log10(magnitude)) - 5)
    assert np.all(np.abs(ours[ok] - expected[ok]) <= half_unit * (1 + 1e-9))
    assert np.abs(ours[ok] - expected[ok]).max() < 5e-6
    assert all(f"{a:.6g}" == f"{b:.6g}" for a, b in zip(ours[ok], expected[ok], strict=True))


def test_inverse_normal_formula_ties_and_blom():
    x = np.array([3.0, 1.0, np.nan, 2.0, 2.0, 10.0])
    ranks = np.array([4.0, 1.0, np.nan, 2.5, 2.5, 5.0])
    for c, name in [(0.5, "plink2"), (3 / 8, "blom"), (0.0, "van_der_waerden")]:
        expected = stats.norm.ppf((ranks - c) / (5 - 2 * c + 1))
        np.testing.assert_allclose(inverse_normal_transform(x, c=name), expected, rtol=1e-14, equal_nan=True)
        np.testing.assert_allclose(inverse_normal_transform(x, c=c), expected, rtol=1e-14, equal_nan=True)
    z = inverse_normal_transform(x)
    assert z[3] == z[4] and np.isnan(z[2])
    two = inverse_normal_transform(np.column_stack([x, -x, np.full(6, np.nan)]))
    np.testing.assert_allclose(two[:, 1], -two[:, 0], equal_nan=True)
    assert np.isnan(two[:, 2]).all() and two.shape == (6, 3)
    with pytest.raises(PrepareError):
        inverse_normal_transform(x, c=1.5)


def test_residualize_equals_statsmodels_and_is_orthogonal():
    rng = np.random.default_rng(1)
    n = 400
    covariates = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n), rng.uniform(40, 70, n)])
    y = covariates @ rng.normal(size=(3, 6)) + rng.normal(size=(n, 6))
    y[rng.random((n, 6)) < 0.1] = np.nan
    y[:, 5] = y[:, 4]  # two features with one missingness pattern share a QR
    covariates[[3, 17], 2] = np.nan
    residuals, dof = residualize(y, covariates, return_dof=True)
    cov_ok = ~np.isnan(covariates).any(axis=1)
    for j in range(y.shape[1]):
        rows = cov_ok & ~np.isnan(y[:, j])
        fit = sm.OLS(y[rows, j], sm.add_constant(covariates[rows])).fit()
        np.testing.assert_allclose(residuals[rows, j], fit.resid, atol=1e-10)
        assert np.isnan(residuals[~rows, j]).all() and dof[j] == fit.df_resid
        design = np.column_stack([np.ones(rows.sum()), covariates[rows]])
        np.testing.assert_allclose(design.T @ residuals[rows, j], 0.0, atol=1e-8)


def test_residualize_rank_deficient_and_no_covariates():
    rng = np.random.default_rng(2)
    n = 120
    c = rng.normal(size=(n, 2))
    dependent = np.column_stack([c, c[:, 0] + 2 * c[:, 1], np.ones(n)])  # a sum and a second intercept
    y = rng.normal(size=(n, 3))
    r_dep, dof_dep = residualize(y, dependent, return_dof=True)
    r_ok, dof_ok = residualize(y, c, return_dof=True)
    np.testing.assert_allclose(r_dep, r_ok, atol=1e-10)
    assert (dof_dep == dof_ok).all() and (dof_ok == n - 3).all()
    np.testing.assert_allclose(residualize(y, None), y - y.mean(axis=0), atol=1e-12)
    with pytest.raises(PrepareError):
        residualize(y, c[:-1])


def test_pca_equals_sklearn_up_to_sign():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) + 5
    x[[4, 40], [1, 7]] = np.nan
    result = pca(x, 4)
    complete = ~np.isnan(x).any(axis=1)
    reference = PCA(4, svd_solver="full").fit(x[complete])
    signs = np.sign(np.sum(reference.components_ * result.components, axis=1))
    np.testing.assert_allclose(result.components, reference.components_ * signs[:, None], atol=1e-10)
    np.testing.assert_allclose(result.scores[complete], reference.transform(x[complete]) * signs, atol=1e-8)
    np.testing.assert_allclose(
        result.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-10
    )
    assert np.isnan(result.scores[[4, 40]]).all()
    big = np.abs(result.components).argmax(axis=1)
    assert (result.components[np.arange(4), big] > 0).all()
    shuffled = rng.permutation(len(x))
    np.testing.assert_allclose(pca(x[shuffled], 4).components, result.components, atol=1e-10)


def test_pca_scaled_equals_sklearn_on_standardized():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 6)) * np.array([1, 10, 100, 0.1, 1, 5]) + rng.normal(size=6)
    x[:, 4] = 3.0  # constant feature: left unscaled
    result = pca(x, 3, scale=True)
    sd = x.std(axis=0, ddof=1)
    standardized = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    reference = PCA(3, svd_solver="full").fit(standardized)
    signs = np.sign(np.sum(reference.components_ * result.components, axis=1))
    np.testing.assert_allclose(result.scores, reference.transform(standardized) * signs, atol=1e-8)
    np.testing.assert_allclose(
        result.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-10
    )
    assert result.scale[4] == 1.0 and math.isclose(result.scale[1], sd[1])
    with pytest.raises(PrepareError):
        pca(x, 7)
