"""Polygenic scores from PGS Catalog scoring files, computed like ``plink2 --score``.

For each score, per sample (verified against plink2 2.00a3.5, ``--score FILE 1 2 3 header cols=+scoresums``):

- ``SUM = Σ_j w_j · e_ij`` over the matched variants j, where ``e_ij`` counts the effect allele: the ALT
  dosage when the effect allele is the ``.bim`` column-5 allele, ``2 − dosage`` when it is column 6.
- A missing genotype is mean-imputed: ``e_ij = 2 · f_j``, with ``f_j`` the effect-allele frequency among
  founders (``PAT`` and ``MAT`` both ``0``) with a call; a variant no founder has a call for gets ``f_j = 0.5``.
- ``AVG = SUM / (2 · number of matched variants)``: plink2's ``DENOM``, which with mean imputation does
  not depend on the sample's missing calls (plink2's ``ALLELE_CT`` = 2 × non-missing variants does).

Variants are matched by ID (score ``rsID``, else ``hm_rsID``, against the ``.bim`` ID) or by position
(``hm_chr``/``hm_pos`` of harmonized files, else ``chr_name``/``chr_position``; ``chr`` prefixes and
23/24/26 are normalised to X/Y/MT). A match needs the effect allele to be one of the ``.bim`` pair and the
other allele (``other_allele``, else any of ``hm_inferOtherAllele``, else unchecked) to be the other one.
Strand flips are not attempted. Strand-ambiguous pairs (A/T, C/G) are dropped unless ``allow_ambiguous``.

Differences from plink2: every chromosome is treated as diploid (plink2 models male chrX/Y as haploid);
fewer than 50 founders warns instead of failing; frequencies always come from the data (no ``--read-freq``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genetics.atomic import atomic_path
from genetics.errors import PlinkFormatError
from genetics.pgs_catalog import ScoreFileError, ScoringFile, read_scoring_file, variant_ids
from genetics.plink import PlinkFileset

MATCH_MODES = ("id", "position")
REPORT_COLUMNS = (
    "pgs_id",
    "n_variants",
    "matched",
    "flipped",
    "ambiguous_dropped",
    "allele_mismatch",
    "not_found",
    "match_rate",
    "file",
)
MIN_FOUNDERS = 50  # plink2 refuses to impute frequencies from fewer founders
DENSE_CHUNK_WEIGHTS = 1 << 22  # (chunk × scores) entries up to which a chunk's weights are multiplied dense
_CHROM_ALIASES = {"23": "X", "24": "Y", "25": "XY", "26": "MT", "M": "MT"}
_COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}


@dataclass(frozen=True)
class ScoreResult:
    """Scores and how each scoring file matched.

    Attributes:
        scores: (samples,) rows in ``.fam`` order; columns ``IID FID`` then ``<pgs_id>_SUM <pgs_id>_AVG``.
        report: (scores,) rows; columns ``REPORT_COLUMNS``.
    """

    scores: pd.DataFrame
    report: pd.DataFrame


def normalise_chrom(chrom: pd.Series) -> pd.Series:
    """Upper-case, drop a ``chr`` prefix and map 23/24/25/26/M to X/Y/XY/MT."""
    chrom = chrom.astype(str).str.strip().str.upper().str.replace(r"^CHR", "", regex=True)
    return chrom.replace(_CHROM_ALIASES)


def _prepare_bim(bim: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bim_index": np.arange(len(bim), dtype=np.int64),
            "ID": bim["ID"].astype(str),
            "CHROM": normalise_chrom(bim["CHROM"]),
            "POS": bim["POS"].astype(np.int64),
            "ALT": bim["ALT"].astype(str).str.upper(),
            "REF": bim["REF"].astype(str).str.upper(),
        }
    )


def _candidates(bim: pd.DataFrame, rows: pd.DataFrame, sf: ScoringFile, match: str) -> pd.DataFrame:
    """(score row, .bim row) pairs that share an ID or a position; columns row bim_index ALT REF ID."""
    if match == "id":
        left = pd.DataFrame({"row": np.arange(len(rows)), "ID": variant_ids(rows).to_numpy()})
        left = left[left["ID"] != ""]
        return left.merge(bim[["ID", "bim_index", "ALT", "REF"]], on="ID", how="inner")
    chrom, pos = ("hm_chr", "hm_pos") if sf.harmonized else ("chr_name", "chr_position")
    left = pd.DataFrame(
        {"row": np.arange(len(rows)), "CHROM": normalise_chrom(rows[chrom]), "POS": rows[pos]}
    )
    left = left[left["POS"].notna() & (rows[chrom] != "").to_numpy()]
    left["POS"] = left["POS"].astype(np.int64)
    return left.merge(
        bim[["CHROM", "POS", "bim_index", "ALT", "REF", "ID"]], on=["CHROM", "POS"], how="inner"
    )


def _other_allele_ok(pairs: pd.DataFrame, other_bim: np.ndarray) -> np.ndarray:
    """Whether each pair's non-effect allele agrees with the ``.bim`` allele that is not the effect allele."""
    oa = pairs["other_allele"].to_numpy(dtype=object)
    infer = pairs["hm_inferOtherAllele"].to_numpy(dtype=object)
    ok = (oa == other_bim) | ((oa == "") & (infer == ""))
    use_infer = np.flatnonzero((oa == "") & (infer != ""))
    for i in use_infer:
        ok[i] = other_bim[i] in str(infer[i]).upper().split("/")
    return ok


def match_variants(
    bim: pd.DataFrame, sf: ScoringFile, match: str = "id", allow_ambiguous: bool = False
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Match one scoring file's rows to ``.bim`` rows.

    Args:
        bim: (variants,) table with ``CHROM ID POS ALT REF`` (as ``PlinkFileset.bim``).
        sf: the scoring file.

    Returns:
        matched: (matched,) table ``line bim_index flip effect_weight`` (flip: effect allele is REF).
        counts: n_variants, matched, flipped, ambiguous_dropped, allele_mismatch, not_found.
    """
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES}, not {match!r}")
    bim = _prepare_bim(bim) if "bim_index" not in bim.columns else bim
    rows = sf.variants.reset_index(drop=True)
    pairs = _candidates(bim, rows, sf, match)
    for name in ("effect_allele", "other_allele", "hm_inferOtherAllele", "line"):
        pairs[name] = rows[name].to_numpy()[pairs["row"].to_numpy()]
    ea, alt, ref = (pairs[c].to_numpy(dtype=object) for c in ("effect_allele", "ALT", "REF"))
    direct, flipped = ea == alt, (ea == ref) & (ea != alt)
    other_bim = np.where(direct, ref, alt)
    pairs["ok"] = (direct | flipped) & _other_allele_ok(pairs, other_bim)
    pairs["flip"] = flipped
    pairs["ambiguous"] = [_COMPLEMENT.get(a) == r for a, r in zip(alt, ref, strict=True)]

    n_candidates = np.bincount(pairs["row"], minlength=len(rows))
    good = pairs[pairs["ok"]]
    n_good = np.bincount(good["row"], minlength=len(rows))
    if (n_good > 1).any():
        row = int(np.flatnonzero(n_good > 1)[0])
        ids = good.loc[good["row"] == row, "ID"].tolist()
        raise PlinkFormatError(
            f"{sf.path}: line {rows['line'].iloc[row]}: the variant matches {n_good[row]} .bim rows with the same "
            f"alleles ({', '.join(ids[:3])}); remove duplicated variants from the fileset (plink2 --rm-dup)"
        )
    ambiguous = good["ambiguous"].to_numpy(dtype=bool)
    kept = good if allow_ambiguous else good[~ambiguous]
    repeated = kept["bim_index"].duplicated(keep=False).to_numpy()
    if repeated.any():
        lines = kept.loc[repeated, "line"].tolist()
        raise ScoreFileError(
            f"{sf.path}: lines {lines[0]} and {lines[1]} both match .bim variant "
            f"{kept.loc[repeated, 'ID'].iloc[0]}; keep one row per variant"
        )
    matched = pd.DataFrame(
        {
            "line": kept["line"].to_numpy(dtype=np.int64),
            "bim_index": kept["bim_index"].to_numpy(dtype=np.int64),
            "flip": kept["flip"].to_numpy(dtype=bool),
            "effect_weight": rows["effect_weight"].to_numpy()[kept["row"].to_numpy()],
        }
    )
    counts = {
        "n_variants": len(rows),
        "matched": len(matched),
        "flipped": int(matched["flip"].sum()),
        "ambiguous_dropped": 0 if allow_ambiguous else int(ambiguous.sum()),
        "allele_mismatch": int(((n_candidates > 0) & (n_good == 0)).sum()),
        "not_found": int((n_candidates == 0).sum()),
    }
    return matched, counts


def _check_builds(files: list[ScoringFile]) -> None:
    builds = {sf.pgs_id: sf.position_build for sf in files}
    named = {b for b in builds.values() if b is not None}
    if len(named) > 1:
        listing = ", ".join(f"{k}={v}" for k, v in builds.items())
        raise ScoreFileError(
            f"scoring files use different genome builds ({listing}); position matching needs the build of the "
            "fileset: use harmonized files for one build"
        )
    unknown = [sf.pgs_id for sf in files if builds[sf.pgs_id] is None]
    if unknown:
        warnings.warn(
            f"genome build not reported for {', '.join(unknown)}; position matching assumes it is the "
            "fileset's build",
            UserWarning,
            stacklevel=3,
        )


def _chunk_sums(block: np.ndarray, founders: np.ndarray, weights: sp.csr_matrix) -> np.ndarray:
    """Scores of one chunk with missing calls mean-imputed.

    Works on the (c, n) transpose, which is how the .bed decoder lays blocks out in memory.

    Args:
        block: (n, c) float32 ALT dosage, NaN = missing.
        founders: (n,) float64 0/1 indicator of the samples that estimate the imputation means.
        weights: (c, k) signed weights of this chunk.

    Returns:
        (k, n) float64 partial sums: weights.T @ observed dosages + imputed means at the missing cells.
    """
    xt = np.ascontiguousarray(block.T, dtype=np.float64)  # (c, n)
    c, n = xt.shape
    missing = np.flatnonzero(np.isnan(xt))  # row-major: already in CSR order
    variant, sample = np.divmod(missing, n)
    xt.ravel()[missing] = 0.0
    if c * weights.shape[1] <= DENSE_CHUNK_WEIGHTS:
        sums_t = weights.toarray().T @ xt  # BLAS
    else:
        sums_t = np.asarray(weights.T @ xt)
    if missing.size:
        count = founders.sum() - np.bincount(variant, weights=founders[sample], minlength=c)
        total = xt @ founders
        mean = np.divide(total, count, out=np.ones(c), where=count > 0)  # no founder call: f = 0.5
        indptr = np.concatenate([[0], np.cumsum(np.bincount(variant, minlength=c))])
        imputed = sp.csr_matrix((mean[variant], sample, indptr), shape=(c, n))  # means at missing cells
        sums_t += (weights.T @ imputed).toarray()
    return sums_t


def _founders(fam: pd.DataFrame, nonfounders: bool) -> np.ndarray:
    if nonfounders:
        return np.ones(len(fam), dtype=bool)
    founders = ((fam["PAT"].astype(str) == "0") & (fam["MAT"].astype(str) == "0")).to_numpy()
    if founders.sum() < MIN_FOUNDERS:
        warnings.warn(
            f"only {int(founders.sum())} founders to estimate allele frequencies for mean imputation "
            f"(plink2 requires {MIN_FOUNDERS}); imputed missing genotypes are noisy",
            UserWarning,
            stacklevel=3,
        )
    return founders


def score(
    fileset: PlinkFileset | str | os.PathLike,
    score_files: Sequence[ScoringFile | str | os.PathLike] | ScoringFile | str | os.PathLike,
    match: str = "id",
    allow_ambiguous: bool = False,
    chunk_size: int = 1024,
    out: str | os.PathLike | None = None,
    nonfounders: bool = False,
) -> ScoreResult:
    """Compute polygenic scores, streaming variant chunks through one sparse (variants × scores) matrix.

    Args:
        fileset: a genotype reader (.bed, .pgen, BGEN) or a path for ``genetics.genotypes.open_genotypes``.
        score_files: PGS Catalog scoring files (paths or parsed); ``pgs_id`` values must be distinct.
        match: ``"id"`` or ``"position"`` (see the module docstring).
        allow_ambiguous: keep A/T and C/G variants.
        chunk_size: variants per streamed (samples × chunk) block; memory ≈ 16 bytes × samples × chunk_size.
        out: if given, the scores are written there as parquet (atomically).
        nonfounders: estimate imputation frequencies from every sample (plink2 ``--nonfounders``).

    Returns:
        ScoreResult with (samples,) scores and (scores,) match report.

    Raises:
        ScoreFileError: a bad scoring file, repeated ``pgs_id`` or a score with no matched variant.
    """
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES}, not {match!r}")
    if isinstance(fileset, (str, os.PathLike)):
        from genetics.genotypes import open_genotypes

        fileset = open_genotypes(fileset)
    if isinstance(score_files, (str, os.PathLike, ScoringFile)):
        score_files = [score_files]
    files = [f if isinstance(f, ScoringFile) else read_scoring_file(f) for f in score_files]
    if not files:
        raise ScoreFileError("no scoring file given; pass at least one PGS Catalog scoring file")
    ids = [sf.pgs_id for sf in files]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ScoreFileError(
            f"pgs_id {repeated[0]} is given by more than one scoring file; each score needs its own"
        )
    if match == "position":
        _check_builds(files)

    bim = _prepare_bim(fileset.bim)
    matches, reports = [], []
    for sf in files:
        matched, counts = match_variants(bim, sf, match, allow_ambiguous)
        if counts["matched"] == 0:
            raise ScoreFileError(
                f"{sf.path}: no variant of {sf.pgs_id} matched {fileset.prefix} by {match} "
                f"({counts['not_found']} not found, {counts['allele_mismatch']} allele mismatch, "
                f"{counts['ambiguous_dropped']} ambiguous dropped); check the genome build, try --match "
                "position or id, or --allow-ambiguous"
            )
        matches.append(matched)
        rate = counts["matched"] / counts["n_variants"]
        reports.append({"pgs_id": sf.pgs_id, **counts, "match_rate": rate, "file": str(sf.path)})
    report = pd.DataFrame(reports, columns=list(REPORT_COLUMNS))

    # One sparse (union variants × scores) matrix; a flipped weight enters as −w plus a constant 2w.
    union = np.unique(np.concatenate([m["bim_index"].to_numpy() for m in matches]))
    row_idx = np.concatenate([np.searchsorted(union, m["bim_index"].to_numpy()) for m in matches])
    col_idx = np.concatenate([np.full(len(m), k) for k, m in enumerate(matches)])
    signs = np.concatenate([np.where(m["flip"], -1.0, 1.0) for m in matches])
    weights = np.concatenate([m["effect_weight"].to_numpy(dtype=np.float64) for m in matches])
    W = sp.csr_matrix((signs * weights, (row_idx, col_idx)), shape=(len(union), len(files)))
    constant = np.array([2.0 * m.loc[m["flip"], "effect_weight"].sum() for m in matches])

    founders = _founders(fileset.fam, nonfounders).astype(np.float64)
    sums_t = np.zeros((len(files), fileset.n_samples), dtype=np.float64)  # (scores, samples)
    start = 0
    for index, block in fileset.iter_chunks(chunk_size, variants=union):  # block: (samples, chunk)
        sums_t += _chunk_sums(block, founders, W[start : start + len(index)])
        start += len(index)
    sums = sums_t.T + constant  # (samples, scores)
    denominators = 2.0 * report["matched"].to_numpy(dtype=np.float64)

    table = {"IID": fileset.fam["IID"].to_numpy(), "FID": fileset.fam["FID"].to_numpy()}
    for k, sf in enumerate(files):
        table[f"{sf.pgs_id}_SUM"] = sums[:, k]
        table[f"{sf.pgs_id}_AVG"] = sums[:, k] / denominators[k]
    scores = pd.DataFrame(table)
    if out is not None:
        with atomic_path(out) as tmp:
            scores.to_parquet(tmp, index=False)
    return ScoreResult(scores=scores, report=report)
