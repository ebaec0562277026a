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
ERRCODES = (OK, CONST_ALLELE, TOO_FEW_SAMPLES, VIF_TOO_HIGH, ALL_MISSING)

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


class _MissingEntries:
    """Missing calls (e entries) of one block inside one group, and per-variant sums over them.

    Two sparse 0/1 matrices: variants × samples (``over_samples``: for per-sample matrices such as the
    phenotypes, never gathered into an e × P copy) and variants × entries (``over_entries``: for small
    per-entry values already gathered).
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, m: int, n_total: int):
        self.rows, self.cols, self.m = rows, cols, m
        ones = np.ones(rows.size)
        self._by_sample = sp.csr_matrix((ones, (cols, rows)), shape=(m, n_total))
        self._by_entry = sp.csr_matrix((ones, (cols, np.arange(rows.size))), shape=(m, rows.size))

    def over_samples(self, matrix: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(m, c): Σ over variant j's missing samples i of weights_e · matrix[i] for (N, c) ``matrix``."""
        by_sample = self._by_sample
        if weights is not None:
            by_sample = sp.csr_matrix((weights, (self.cols, self.rows)), shape=by_sample.shape)
        return np.asarray(by_sample @ matrix)

    def over_entries(self, values: np.ndarray) -> np.ndarray:
        """(m, ...): Σ over variant j's entries of ``values`` (e, ...) given per entry."""
        flat = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
        return np.asarray(self._by_entry @ flat).reshape(self.m, *values.shape[1:])


@dataclass
class GroupDesign:
    """One phenotype group embedded in all N rows of a block (rows outside the group are zero).

    Attributes:
        member: (N,) bool, samples of the group.
        q: (N, k) covariate basis, zero outside the group.
        y_resid: (N, P) residualized phenotypes, zero outside the group.
        rhs: (N, P + k + 1) [y_resid | q | member] so that one product Gᵀ·rhs gives Gᵀy, Gᵀq and Σg.
        q_sum: (k,) Qᵀ1 over the group.
        yy: (P,) residual phenotype sums of squares.
    """

    member: np.ndarray
    q: np.ndarray
    y_resid: np.ndarray
    rhs: np.ndarray
    q_sum: np.ndarray
    yy: np.ndarray

    @property
    def n(self) -> int:
        return int(self.member.sum())

    @classmethod
    def build(cls, n_total: int, rows: np.ndarray, q: np.ndarray, y_resid: np.ndarray) -> GroupDesign:
        """Embed a group (rows (n,), q (n, k), y_resid (n, P)) into ``n_total`` rows."""
        member = np.zeros(n_total, dtype=bool)
        member[rows] = True
        q_full = np.zeros((n_total, q.shape[1]))
        q_full[rows] = q
        y_full = np.zeros((n_total, y_resid.shape[1]))
        y_full[rows] = y_resid
        rhs = np.column_stack([y_full, q_full, member.astype(np.float64)])
        return cls(member, q_full, y_full, rhs, q.sum(axis=0), np.einsum("ij,ij->j", y_resid, y_resid))


def associate_chunk(
    genotypes: np.ndarray,
    q: np.ndarray,
    y_resid: np.ndarray,
    missing_genotype: str = "drop",
) -> ChunkResult:
    """Association statistics of every variant in a chunk with every phenotype of one group.

    Convenience form of :func:`associate_block` for a NaN-coded block whose rows are the group's samples.

    Args:
        genotypes: (n, m) samples × variants dosage of A1, NaN = missing.
        q: (n, k) covariate basis from :func:`covariate_basis` (intercept included).
        y_resid: (n, P) float64 phenotypes residualized by ``q``.
        missing_genotype: ``drop`` (plink2 complete-case per variant) or ``mean`` (mean-imputed).
    """
    missing = np.isnan(genotypes)
    samples, variants = np.nonzero(missing)
    g0 = np.where(missing, 0.0, genotypes).astype(np.float64)
    design = GroupDesign.build(genotypes.shape[0], np.arange(genotypes.shape[0]), q, y_resid)
    return associate_block(g0, samples, variants, design, missing_genotype)


def block_products(g0: np.ndarray, design: GroupDesign) -> tuple[np.ndarray, np.ndarray]:
    """The two passes over a decoded block, on the CPU: g0ᵀ·rhs (m, P + k + 1) and Σ_group g² (m,)."""
    product = g0.T @ design.rhs
    sumsq = np.einsum("ij,ij,i->j", g0, g0, design.member.astype(np.float64))
    return product, sumsq


def associate_block(
    g0: np.ndarray,
    missing_samples: np.ndarray,
    missing_variants: np.ndarray,
    design: GroupDesign,
    missing_genotype: str = "drop",
) -> ChunkResult:
    """Association statistics of a decoded block for one phenotype group.

    Args:
        g0: (N, m) float64 dosage of A1 with missing calls set to 0 (N = all rows of the block).
        missing_samples, missing_variants: (e,) coordinates of the missing calls in ``g0``.
        design: the group, embedded in the N rows.
        missing_genotype: ``drop`` or ``mean``.

    Returns:
        :class:`ChunkResult` with (m,) and (m, P) arrays.
    """
    product, sumsq = block_products(g0, design)
    return associate_products(product, sumsq, missing_samples, missing_variants, design, missing_genotype)


def associate_products(
    product: np.ndarray,
    sumsq: np.ndarray,
    missing_samples: np.ndarray,
    missing_variants: np.ndarray,
    design: GroupDesign,
    missing_genotype: str = "drop",
) -> ChunkResult:
    """Statistics from a block's products (:func:`block_products`, or their on-device form) and its
    missing calls; everything here is O(m·P + entries), whichever device made the products.

    Args:
        product: (m, P + k + 1) float64 g0ᵀ·rhs; sumsq: (m,) Σ over group rows of g0².
    """
    if missing_genotype not in MISSING_GENOTYPE_MODES:
        raise ValueError(
            f"missing_genotype must be one of {MISSING_GENOTYPE_MODES}, not {missing_genotype!r}"
        )
    n_total = design.member.size
    m = product.shape[0]
    n_pheno, k = design.y_resid.shape[1], design.q.shape[1]
    n = design.n
    gy = product[:, :n_pheno]
    called_sum = product[:, -1]

    in_group = design.member[missing_samples]
    entries = _MissingEntries(missing_samples[in_group], missing_variants[in_group], m, n_total)
    n_missing = np.bincount(entries.cols, minlength=m)
    n_called = n - n_missing
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_called > 0, called_sum / n_called, 0.0)
    q_missing = design.q[entries.rows]  # (e, k)
    # Mean-imputed, centred dosage c = g0 + mean·R − mean·1 (group rows); its projections:
    qc = product[:, n_pheno : n_pheno + k] + mean[:, None] * (
        entries.over_entries(q_missing) - design.q_sum[None, :]
    )
    gy = gy + mean[:, None] * entries.over_samples(design.y_resid)  # 1ᵀy_resid = 0
    gg_raw = np.maximum(sumsq - n_called * mean**2, 0.0)  # Σ over called samples of (g − mean)²
    gg = gg_raw - np.einsum("jk,jk->j", qc, qc)
    a1_freq = mean / 2.0
    if missing_genotype == "mean" or entries.rows.size == 0:
        obs_ct = np.full(m, n) if missing_genotype == "mean" else n_called
        return _finish(gg, gg_raw, gy, design.yy, obs_ct, n_called, k, a1_freq)
    return _drop_missing(entries, q_missing, n_missing, design, qc, gg, gg_raw, gy, a1_freq)


def _drop_missing(
    entries: _MissingEntries,
    q_missing: np.ndarray,
    n_missing: np.ndarray,
    design: GroupDesign,
    qc: np.ndarray,
    gg: np.ndarray,
    gg_raw: np.ndarray,
    gy: np.ndarray,
    a1_freq: np.ndarray,
) -> ChunkResult:
    """Complete-case statistics by low-rank correction of the full-sample cross-products (see module doc)."""
    k = q_missing.shape[1]
    m, n_pheno = gy.shape
    # Residualized imputed genotype at the missing entries: centred value is 0 there, so g_r = −q_i·(Qᵀc)_j.
    g_at_missing = -np.einsum("ek,ek->e", q_missing, qc[entries.cols])

    y_resid = design.y_resid
    gg_t = gg - entries.over_entries(g_at_missing**2)
    gy_t = gy - entries.over_samples(y_resid, weights=g_at_missing)
    yy_t = design.yy[None, :] - entries.over_samples(y_resid**2)
    qq_missing = entries.over_entries(q_missing[:, :, None] * q_missing[:, None, :])  # (m, k, k)
    b_g = -entries.over_entries(g_at_missing[:, None] * q_missing)  # (m, k) = Q_Tᵀ g_T
    b_y = np.empty((m, k, n_pheno))  # (m, k, P) = Q_Tᵀ y_T
    for c in range(k):
        b_y[:, c, :] = -entries.over_samples(y_resid, weights=q_missing[:, c])

    affected = np.flatnonzero(n_missing > 0)
    gram = np.eye(k)[None] - qq_missing[affected]  # Q_TᵀQ_T, (a, k, k)
    rhs = np.concatenate([b_g[affected][:, :, None], b_y[affected]], axis=2)  # (a, k, 1 + P)
    solved = np.linalg.solve(gram, rhs)
    gg_t[affected] -= np.einsum("ak,ak->a", b_g[affected], solved[:, :, 0])
    gy_t[affected] -= np.einsum("ak,akp->ap", b_g[affected], solved[:, :, 1:])
    yy_t[affected] -= np.einsum("akp,akp->ap", b_y[affected], solved[:, :, 1:])

    obs_ct = design.n - n_missing
    return _finish(gg_t, gg_raw, gy_t, yy_t, obs_ct, obs_ct, k, a1_freq)
