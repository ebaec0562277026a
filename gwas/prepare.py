"""Phenotype preparation for image features: PCA, covariate residualization, rank-based inverse normal.

Every function is pure and takes a samples × features float64 array (NaN = missing) with these rules:
  * ``pca``: complete cases only; a sample with any NaN feature is left out of the fit and scored NaN.
  * ``residualize``: each feature is fitted on the samples observed for it (one QR per distinct
    missingness pattern); a sample with a NaN covariate gets NaN residuals for every feature.
  * ``inverse_normal_transform``: ranks among a column's observed values; NaN stays NaN.
Statistics are in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy import special

# offset c of the rank transform Φ⁻¹((r − c) / (n − 2c + 1))
RANK_OFFSETS = {"plink2": 0.5, "rankit": 0.5, "blom": 3.0 / 8.0, "tukey": 1.0 / 3.0, "van_der_waerden": 0.0}


class PrepareError(ValueError):
    """A feature or covariate matrix cannot be prepared as asked."""


def _as_2d(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise PrepareError(f"{name} must be samples × columns (2-D), got shape {array.shape}")
    return array


@dataclass(frozen=True)
class PCAResult:
    """Principal components of a samples × features matrix.

    Attributes:
        scores: (n, k) projections of each sample (NaN rows for samples with any NaN feature).
        explained_variance_ratio: (k,) share of the total variance of the (scaled) features.
        components: (k, p) unit loadings; each one's largest-magnitude loading is positive.
        mean: (p,) feature means over complete cases.
        scale: (p,) feature standard deviations (ddof=1) used for scaling, ones when unscaled.
    """

    scores: np.ndarray
    explained_variance_ratio: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    scale: np.ndarray


def pca(features: np.ndarray, k: int, *, scale: bool = False) -> PCAResult:
    """PCA of centred (optionally unit-variance) features by SVD over complete cases.

    Args:
        features: (n, p) samples × features, NaN allowed (see the module rules).
        k: number of components, 1 <= k <= min(complete samples, p).
        scale: divide each feature by its standard deviation (ddof=1) first; constant features are
            left unscaled (they carry no variance).

    Returns:
        ``PCAResult``. The sign of each component is fixed so its largest-|loading| entry is positive
        (ties: the first), independent of sample order.

    >>> r = pca(np.array([[1.0, 2.0], [2.0, 4.1], [3.0, 5.9], [np.nan, 1.0]]), 1)
    >>> r.scores.shape, bool(np.isnan(r.scores[3, 0])), bool(r.explained_variance_ratio[0] > 0.99)
    ((4, 1), True, True)
    """
    x = _as_2d(features, "features")
    complete = ~np.isnan(x).any(axis=1)
    data = x[complete]
    n, p = data.shape
    if not 1 <= k <= min(n, p):
        raise PrepareError(f"k={k} components need 1 <= k <= min(complete samples {n}, features {p})")
    mean = data.mean(axis=0)
    centred = data - mean
    sd = np.ones(p)
    if scale:
        sd = centred.std(axis=0, ddof=1) if n > 1 else np.ones(p)
        sd = np.where(sd > 0, sd, 1.0)
        centred = centred / sd
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float(np.sum(s**2))
    ratio = s[:k] ** 2 / total if total > 0 else np.zeros(k)
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
    signs[signs == 0] = 1.0
    components = components * signs[:, None]
    scores = np.full((x.shape[0], k), np.nan)
    scores[complete] = u[:, :k] * (s[:k] * signs)
    return PCAResult(scores, ratio, components, mean, sd)


def _basis(design: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """(m, r) orthonormal basis of the column space of an (m, q) design, r = numerical rank.

    Column-pivoted QR; columns whose pivot |R_jj| <= rtol · |R_00| are dependent and dropped.
    """
    if design.shape[0] == 0 or design.shape[1] == 0:
        return np.zeros((design.shape[0], 0))
    q, r, _ = scipy.linalg.qr(design, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > rtol * diag[0])) if diag.size and diag[0] > 0 else 0
    return q[:, :rank]


def residualize(
    features: np.ndarray,
    covariates: np.ndarray | None,
    *,
    add_intercept: bool = True,
    return_dof: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """OLS residuals of each feature on intercept + covariates, via (pivoted) QR.

    Args:
        features: (n, p) samples × features, NaN allowed (fit per feature on its observed samples).
        covariates: (n, c) samples × covariates (NaN rows drop out of every fit) or None.
        add_intercept: prepend a column of ones.
        return_dof: also return the residual degrees of freedom.

    Returns:
        (n, p) float64 residuals, NaN where the feature or any covariate is missing; with
        ``return_dof`` also (p,) int64 dof = samples used − rank of the design. Rank-deficient
        covariates are handled by dropping dependent columns; a feature with dof <= 0 gets NaN.
    """
    y = _as_2d(features, "features")
    n = y.shape[0]
    c = np.zeros((n, 0)) if covariates is None else _as_2d(covariates, "covariates")
    if c.shape[0] != n:
        raise PrepareError(f"covariates have {c.shape[0]} rows but features have {n} samples")
    design = np.hstack([np.ones((n, 1)), c]) if add_intercept else c
    cov_ok = ~np.isnan(design).any(axis=1)
    observed = ~np.isnan(y) & cov_ok[:, None]
    residuals = np.full(y.shape, np.nan)
    dof = np.zeros(y.shape[1], dtype=np.int64)
    patterns = np.packbits(observed, axis=0).T  # (p, ceil(n / 8)): one row per feature
    _, group = np.unique(patterns, axis=0, return_inverse=True)
    for g in np.unique(group):
        cols = np.flatnonzero(group.ravel() == g)
        rows = observed[:, cols[0]]
        q = _basis(design[rows])
        block = y[np.ix_(rows, cols)]
        resid = block - q @ (q.T @ block)
        dof[cols] = rows.sum() - q.shape[1]
        if dof[cols[0]] > 0:
            residuals[np.ix_(rows, cols)] = resid
    return (residuals, dof) if return_dof else residuals


def inverse_normal_transform(values: np.ndarray, c: float | str = "plink2") -> np.ndarray:
    """Rank-based inverse normal transform per column: Φ⁻¹((r − c) / (n − 2c + 1)).

    Ranks r are 1-based among the column's n observed values, ties getting their average rank.
    ``c = 0.5`` ("plink2", "rankit") gives (r − 0.5) / n, exactly plink2's ``--pheno-quantile-normalize``
    (checked to its printed precision in tests); ``c = 3/8`` ("blom") is Blom's transform.

    Args:
        values: (n,) or (n, p) float64, NaN allowed (stays NaN).
        c: offset in [0, 1) or a name in ``RANK_OFFSETS``.

    Returns:
        array of the input's shape, float64.

    >>> inverse_normal_transform(np.array([3.0, 1.0, np.nan, 2.0, 2.0])).round(4).tolist()
    [1.1503, -1.1503, nan, 0.0, 0.0]
    """
    offset = RANK_OFFSETS[c] if isinstance(c, str) else float(c)
    if not 0 <= offset < 1:
        raise PrepareError(f"rank offset c={offset} must be in [0, 1)")
    array = np.asarray(values, dtype=np.float64)
    x = _as_2d(array, "values")
    from scipy import stats  # imported here: scipy.stats costs ~0.5 s to import

    ranks = stats.rankdata(x, method="average", axis=0, nan_policy="omit")
    n = np.sum(~np.isnan(x), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = special.ndtri((ranks - offset) / (n - 2 * offset + 1))
    z[np.isnan(x)] = np.nan
    return z.reshape(array.shape)
