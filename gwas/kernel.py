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

Why the block product g0ᵀ·[y | Q | 1] is not float32 with float64 recomputation of the rows it could get
wrong: a float32 product of N terms carries an error up to ~γ·Σ|g_i y_i| (γ ≈ (kc + N/kc)·2⁻²⁴ for BLAS
blocking kc ~ 256, ~2e-5 at N = 10k), against a statistic of size ~√N·sd(g)·sd(y), so a provable bound
on LOG10_P is ~1e-3, not 1e-7, and every row would be recomputed. Measured at N = 10k, P = 256, 2048
variants: a float32 product moves LOG10_P by up to 5e-5 (median 1.7e-7), 66% of rows by more than 1e-7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    Entries are kept sorted by variant, so each variant's entries are one contiguous run and every sparse
    matrix here is assembled directly in CSR form (no COO sort). Sums go through sparse products over the
    entries only: per-sample matrices such as the phenotypes are never gathered into an e × P copy.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, m: int, n_total: int):
        if cols.size > 1 and np.any(cols[1:] < cols[:-1]):
            order = np.argsort(cols, kind="stable")
            rows, cols = rows[order], cols[order]
        self.rows, self.cols, self.m, self.n_total = rows, cols, m, n_total
        self.counts = np.bincount(cols, minlength=m)
        self.indptr = np.concatenate([[0], np.cumsum(self.counts)])

    @property
    def size(self) -> int:
        return int(self.rows.size)

    def _stacked(self, weights: np.ndarray, indices: np.ndarray, n_cols: int):
        """(w·m, n_cols) CSR whose block c holds ``weights[c]`` (w, e) at ``indices`` (e,) per variant."""
        import scipy.sparse as sp  # only blocks with missing calls need it (~0.1 s to import)

        n_weights, e = weights.shape
        index_type = np.int32 if max(n_weights * e, n_cols) < 2**31 else np.int64  # scipy's own choice
        indptr = np.empty(n_weights * self.m + 1, dtype=index_type)
        indptr[:-1] = (self.indptr[None, :-1] + e * np.arange(n_weights)[:, None]).ravel()
        indptr[-1] = n_weights * e
        indices = np.tile(indices.astype(index_type, copy=False), n_weights)
        return sp.csr_matrix((weights.ravel(), indices, indptr), shape=(n_weights * self.m, n_cols))

    def over_samples(self, matrix: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Σ over variant j's missing samples i of weights[c, e] · matrix[i] for an (N, p) ``matrix``.

        Args:
            weights: (w, e) weight rows (one sparse product for all of them), or None for ones.

        Returns:
            (w, m, p), or (m, p) when ``weights`` is None.
        """
        stacked = np.ones((1, self.size)) if weights is None else np.atleast_2d(weights)
        sums = np.asarray(self._stacked(stacked, self.rows, self.n_total) @ matrix)
        sums = sums.reshape(stacked.shape[0], self.m, matrix.shape[1])
        return sums[0] if weights is None else sums

    def over_entries(self, values: np.ndarray) -> np.ndarray:
        """(m, ...): Σ over variant j's entries of ``values`` (e, ...) given per entry (a segment sum)."""
        flat = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
        by_entry = self._stacked(np.ones((1, self.size)), np.arange(self.size), self.size)
        return np.asarray(by_entry @ flat).reshape(self.m, *values.shape[1:])


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
    if design.n == design.member.size:  # the group is every row: no mask to multiply by (~40% faster)
        sumsq = np.einsum("ij,ij->j", g0, g0)
    else:
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
    n_missing = entries.counts
    n_called = n - n_missing
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_called > 0, called_sum / n_called, 0.0)
    # Σ over each variant's missing samples of [y_resid | q | 1]: (m, P + k + 1), one sparse product
    missing_sums = entries.over_samples(design.rhs)
    # Mean-imputed, centred dosage c = g0 + mean·R − mean·1 (group rows); its projections:
    qc = product[:, n_pheno : n_pheno + k] + mean[:, None] * (
        missing_sums[:, n_pheno : n_pheno + k] - design.q_sum[None, :]
    )
    gy = gy + mean[:, None] * missing_sums[:, :n_pheno]  # 1ᵀy_resid = 0
    gg_raw = np.maximum(sumsq - n_called * mean**2, 0.0)  # Σ over called samples of (g − mean)²
    gg = gg_raw - np.einsum("jk,jk->j", qc, qc)
    a1_freq = mean / 2.0
    if missing_genotype == "mean" or entries.size == 0:
        obs_ct = np.full(m, n) if missing_genotype == "mean" else n_called
        return _finish(gg, gg_raw, gy, design.yy, obs_ct, n_called, k, a1_freq)
    return _drop_missing(entries, design, qc, gg, gg_raw, gy, a1_freq)


def _drop_missing(
    entries: _MissingEntries,
    design: GroupDesign,
    qc: np.ndarray,
    gg: np.ndarray,
    gg_raw: np.ndarray,
    gy: np.ndarray,
    a1_freq: np.ndarray,
) -> ChunkResult:
    """Complete-case statistics by low-rank correction of the full-sample cross-products (see module doc).

    Cost O(e·(k + 1)·(P + k) + a·k²·P) for e missing entries in a affected variants, whatever their
    pattern: every sum over the missing samples is one sparse product with design.rhs = [y_resid | q | 1]
    of a ((k + 1)·m × N) matrix holding e·(k + 1) weights (g_r and the k columns of q at each entry),
    which gives Q_Mᵀy, Q_MᵀQ_M and Q_Mᵀg at once; no e × P or e × k² array is formed.
    """
    k = design.q.shape[1]
    m, n_pheno = gy.shape
    n_missing = entries.counts
    q_missing = design.q[entries.rows]  # (e, k)
    # Residualized imputed genotype at the missing entries: centred value is 0 there, so g_r = −q_i·(Qᵀc)_j.
    g_at_missing = -np.einsum("ek,ek->e", q_missing, qc[entries.cols])

    weights = np.empty((1 + k, entries.size))
    weights[0] = g_at_missing
    weights[1:] = q_missing.T
    sums = entries.over_samples(design.rhs, weights)  # (1 + k, m, P + k + 1)
    gy_t = gy - sums[0, :, :n_pheno]
    b_g = -sums[0, :, n_pheno : n_pheno + k]  # (m, k) = Q_Tᵀ g_T
    b_y = -sums[1:, :, :n_pheno].transpose(1, 0, 2)  # (m, k, P) = Q_Tᵀ y_T
    qq_missing = sums[1:, :, n_pheno : n_pheno + k].transpose(1, 0, 2)  # (m, k, k) = Q_MᵀQ_M
    gg_t = gg - np.bincount(entries.cols, weights=g_at_missing**2, minlength=m)
    yy_t = design.yy[None, :] - entries.over_samples(design.y_resid * design.y_resid)

    affected = np.flatnonzero(n_missing > 0)
    gram = np.eye(k)[None] - qq_missing[affected]  # Q_TᵀQ_T, (a, k, k)
    rhs = np.concatenate([b_g[affected][:, :, None], b_y[affected]], axis=2)  # (a, k, 1 + P)
    solved = np.linalg.solve(gram, rhs)
    gg_t[affected] -= np.einsum("ak,ak->a", b_g[affected], solved[:, :, 0])
    gy_t[affected] -= np.einsum("ak,akp->ap", b_g[affected], solved[:, :, 1:])
    yy_t[affected] -= np.einsum("akp,akp->ap", b_y[affected], solved[:, :, 1:])

    obs_ct = design.n - n_missing
    return _finish(gg_t, gg_raw, gy_t, yy_t, obs_ct, obs_ct, k, a1_freq)
