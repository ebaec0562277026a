"""The association kernel: OLS of many phenotypes on intercept + dosage + covariates, per variant.

Pure array functions, no files or IDs (tensorQTL's ``calculate_corr`` split). For one *phenotype group*
(phenotypes sharing their set of non-missing samples) with covariate basis Q (n × k, orthonormal columns
spanning intercept + covariates) and residualized phenotypes Y_r = (I − QQᵀ) Y (n × P):

* ``mean`` mode: missing dosages are replaced by the variant's mean over the group; every variant uses all
  n samples (regenie/Hail semantics).
* ``drop`` mode: samples with a missing call are dropped for that variant only (plink2 ``--glm``). Rather than
  a fresh regression per variant, the full-sample cross-products are corrected by the few missing samples
  M_j: with g_r, y_r residualized on all n samples, on T = complement of M_j
      ⟨a, b⟩_T⊥ = a_T·b_T − (Q_Mᵀ a_M)ᵀ (I − Q_MᵀQ_M)⁻¹ (Q_Mᵀ b_M),
  because Q_Tᵀ a_T = −Q_Mᵀ a_M when a ⊥ Q. The corrections are sparse products over missing entries only.

Statistics are float64 throughout. Degrees of freedom: OBS_CT − k − 1 (k = intercept + covariate columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gwas.errors import CollinearCovariatesError
from gwas.pvalues import t_test_pvalues

MISSING_GENOTYPE_MODES = ("drop", "mean")

# plink2-compatible ERRCODE values ("." = fine).
OK = "."
CONST_ALLELE = "CONST_OMITTED_ALLELE"
TOO_FEW_SAMPLES = "SAMPLE_CT<=PREDICTOR_CT"
VIF_TOO_HIGH = "VIF_TOO_HIGH"
ALL_MISSING = "ALL_MISSING"

# A genotype whose variance left after covariates is below this fraction of its own variance has a
# variance inflation factor above 1 / _VIF_FRACTION = 50 (plink2's default --vif).
_VIF_FRACTION = 1.0 / 50.0
# Relative size under which the residual genotype sum of squares counts as zero (constant dosage).
_CONST_TOL = 1e-9


def covariate_basis(covariates: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Orthonormal basis Q (n × k) of [intercept, covariates] by QR; rank deficiency is an error.

    Args:
        covariates: (n, c) float64 without an intercept column (c may be 0), no NaN.
        names: the c column names, used in the error message.
    """
    n = covariates.shape[0]
    design = np.column_stack([np.ones(n), covariates]) if covariates.size else np.ones((n, 1))
    scale = np.linalg.norm(design, axis=0)
    scale[scale == 0] = 1.0
    q, r = np.linalg.qr(design / scale)
    diag = np.abs(np.diag(r))
    bad = np.flatnonzero(diag < 1e-8 * max(1.0, diag.max()))
    if bad.size:
        labels = ["intercept"] + list(names or [f"covariate {i + 1}" for i in range(design.shape[1] - 1)])
        offending = [labels[i] for i in bad]
        raise CollinearCovariatesError(
            f"covariates are collinear: {', '.join(offending)} is a linear combination of the columns before "
            "it (constant, duplicated, or a complete set of category indicators); drop it with --covar-name"
        )
    return q


def residualize(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(I − QQᵀ) x for x (n, p) float64."""
    return x - q @ (q.T @ x)


@dataclass
class ChunkResult:
    """Statistics of one variant chunk for one phenotype group; arrays are (m,) or (m, P)."""

    a1_freq: np.ndarray
    obs_ct: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    t_stat: np.ndarray
    p: np.ndarray
    log10_p: np.ndarray
    errcode: np.ndarray  # (m,) object: plink2-style code or "."


def _finish(
    gg: np.ndarray,
    gg_raw: np.ndarray,
    gy: np.ndarray,
    yy: np.ndarray,
    obs_ct: np.ndarray,
    n_called: np.ndarray,
    k: int,
    a1_freq: np.ndarray,
) -> ChunkResult:
    """Turn residual cross-products into BETA/SE/T/P with plink2-style error codes.

    Args:
        gg: (m,) residual genotype sum of squares; gg_raw: (m,) centred genotype sum of squares.
        gy: (m, P) residual genotype·phenotype; yy: (m, P) or (P,) residual phenotype sums of squares.
        obs_ct: (m,) samples in each regression; n_called: (m,) non-missing calls in the group.
    """
    dof = obs_ct - k - 1
    errcode = np.full(gg.shape, OK, dtype=object)
    errcode[gg <= _CONST_TOL * np.maximum(gg_raw, 1.0)] = CONST_ALLELE
    vif_high = (errcode == OK) & (gg < _VIF_FRACTION * gg_raw)
    errcode[vif_high] = VIF_TOO_HIGH
    errcode[dof <= 0] = TOO_FEW_SAMPLES
    errcode[n_called == 0] = ALL_MISSING
    valid = errcode == OK
    with np.errstate(invalid="ignore", divide="ignore"):
        safe_gg = np.where(valid, gg, 1.0)[:, None]
        beta = gy / safe_gg
        rss = np.maximum(yy - beta * gy, 0.0)
        se = np.sqrt(rss / np.where(valid, dof, 1)[:, None] / safe_gg)
        t_stat = beta / se
    for array in (beta, se, t_stat):
        array[~valid] = np.nan
    p, log10_p = t_test_pvalues(t_stat, np.maximum(dof, 1)[:, None])
    return ChunkResult(a1_freq, obs_ct, beta, se, t_stat, p, log10_p, errcode)


def associate_chunk(
    genotypes: np.ndarray,
    q: np.ndarray,
    y_resid: np.ndarray,
    missing_genotype: str = "drop",
) -> ChunkResult:
    """Association statistics of every variant in a chunk with every phenotype of one group.

    Args:
        genotypes: (n, m) samples × variants dosage of A1, NaN = missing (float32 or float64).
        q: (n, k) covariate basis from :func:`covariate_basis` (intercept included).
        y_resid: (n, P) float64 phenotypes residualized by ``q``.
        missing_genotype: ``drop`` (plink2 complete-case per variant) or ``mean`` (mean-imputed).

    Returns:
        :class:`ChunkResult` with (m,) and (m, P) arrays.
    """
    if missing_genotype not in MISSING_GENOTYPE_MODES:
        raise ValueError(
            f"missing_genotype must be one of {MISSING_GENOTYPE_MODES}, not {missing_genotype!r}"
        )
    n, k = q.shape
    missing = np.isnan(genotypes)
    n_missing = missing.sum(axis=0)
    n_called = n - n_missing
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(genotypes, axis=0, dtype=np.float64) / n_called
    mean = np.where(n_called > 0, mean, 0.0)
    # Centred, mean-imputed dosage: missing entries become exactly 0.
    centred = np.where(missing, 0.0, genotypes.astype(np.float64, copy=False) - mean)
    qg = q.T @ centred  # (k, m)
    gg_raw = np.einsum("ij,ij->j", centred, centred)
    gg = gg_raw - np.einsum("ij,ij->j", qg, qg)
    gy = centred.T @ y_resid  # (m, P); y_resid ⊥ Q, so centring or residualizing g changes nothing
    yy = np.einsum("ij,ij->j", y_resid, y_resid)  # (P,)
    a1_freq = mean / 2.0
    if missing_genotype == "mean" or not n_missing.any():
        obs_ct = np.full(genotypes.shape[1], n) if missing_genotype == "mean" else n_called
        return _finish(gg, gg_raw, gy, yy, obs_ct, n_called, k, a1_freq)
    return _drop_missing(centred, missing, n_missing, q, qg, y_resid, gg, gy, yy, a1_freq)


def _drop_missing(
    centred: np.ndarray,
    missing: np.ndarray,
    n_missing: np.ndarray,
    q: np.ndarray,
    qg: np.ndarray,
    y_resid: np.ndarray,
    gg: np.ndarray,
    gy: np.ndarray,
    yy: np.ndarray,
    a1_freq: np.ndarray,
) -> ChunkResult:
    """Complete-case statistics by low-rank correction of the full-sample cross-products (see module doc)."""
    n, k = q.shape
    m, n_pheno = gy.shape
    rows, cols = np.nonzero(missing)
    # Residualized imputed genotype at the missing entries: centred value is 0 there, so g_r = −q_i·(Qᵀg)_j.
    g_at_missing = -np.einsum("ek,ke->e", q[rows], qg[:, cols])
    indicator = sp.csr_matrix((np.ones(rows.size), (cols, rows)), shape=(m, n))  # variants × samples
    g_missing = sp.csr_matrix((g_at_missing, (cols, rows)), shape=(m, n))

    gg_t = gg - np.bincount(cols, weights=g_at_missing**2, minlength=m)
    gy_t = gy - g_missing @ y_resid
    yy_t = yy[None, :] - indicator @ (y_resid**2)
    qq_missing = (indicator @ (q[:, :, None] * q[:, None, :]).reshape(n, k * k)).reshape(m, k, k)
    b_g = -(g_missing @ q)  # (m, k) = Q_Tᵀ g_T
    b_y = np.empty((m, k, n_pheno))
    for c in range(k):
        b_y[:, c, :] = -(indicator @ (q[:, c : c + 1] * y_resid))

    affected = np.flatnonzero(n_missing > 0)
    gram = np.eye(k)[None] - qq_missing[affected]  # Q_TᵀQ_T, (a, k, k)
    rhs = np.concatenate([b_g[affected][:, :, None], b_y[affected]], axis=2)  # (a, k, 1 + P)
    solved = np.linalg.solve(gram, rhs)
    gg_t[affected] -= np.einsum("ak,ak->a", b_g[affected], solved[:, :, 0])
    gy_t[affected] -= np.einsum("ak,akp->ap", b_g[affected], solved[:, :, 1:])
    yy_t[affected] -= np.einsum("akp,akp->ap", b_y[affected], solved[:, :, 1:])

    obs_ct = n - n_missing
    # Centred sum of squares over the called samples, for the VIF check.
    gg_raw = np.einsum("ij,ij->j", centred, centred)
    return _finish(gg_t, gg_raw, gy_t, yy_t, obs_ct, obs_ct, k, a1_freq)
