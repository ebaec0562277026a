"""LD clumping of GWAS summary statistics (plink1.9 ``--clump``) and merging of clumps into loci.

``clump`` reproduces ``plink --bfile P --clump assoc --clump-p1 --clump-p2 --clump-r2 --clump-kb`` for one
phenotype: index variants in increasing P order (ties by .bim order), each claiming the not yet clumped
variants on its chromosome within ``kb`` whose r² with it exceeds ``r2``. r² is plink1.9's clumping r²:
haplotype frequencies phased by the two-locus maximum-likelihood cubic (``em_phase_hethet``) from the
3 × 3 genotype table of founders called at both variants. Only variants passing p1 or p2 are read.

Semantics checked against plink1.9 (tests/gwas/test_clump.py):
  * founders only (PAT and MAT both "0"); a pair uses the founders non-missing at both variants;
  * index: P <= p1; member: P < p2 and r² > r2; window: |POS - index POS| < 1000 × kb;
  * a variant in an earlier clump can neither be an index nor join a later clump;
  * calls are treated as diploid everywhere: this matches plink1.9 on autosomes, XY, MT and X without
    males, not on Y or on X with males (plink's haploid rules; a warning says so).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pandas as pd

from genetics.atomic import atomic_path
from genetics.plink import PlinkFileset

P1, P2, R2, KB = 1e-4, 1e-2, 0.5, 250.0  # plink1.9 defaults
CLUMP_COLUMNS = ("CHROM", "POS", "ID", "P", "LOG10_P", "START", "END", "N_MEMBERS", "MEMBERS")

_EPSILON = 2.0**-30  # plink1.9 EPSILON
_SMALLISH_EPSILON = 2.0**-35
_SMALL_EPSILON = 2.0**-44


class ClumpError(ValueError):
    """Summary statistics or genotypes cannot be clumped as given."""


def _cubic_real_roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real roots of x³ + a x² + b x + c like plink1.9's ``cubic_real_roots``: (k, 3) ascending, (k,) count."""
    a2 = a * a
    qq = (a2 - 3 * b) * (1.0 / 9.0)
    rr = (2 * a2 * a - 9 * a * b + 27 * c) * (1.0 / 54.0)
    r2 = rr * rr
    q3 = qq * qq * qq
    adiv3 = a * (1.0 / 3.0)
    sol = np.zeros((a.size, 3))
    count = np.ones(a.size, dtype=np.int64)
    three = r2 < q3
    if three.any():
        q, r, ad = qq[three], rr[three], adiv3[three]
        sq = np.sqrt(q)
        angle = np.arccos(r / (q * sq)) * (1.0 / 3.0)
        sq = sq * -2
        s = np.stack(
            [
                sq * np.cos(angle) - ad,
                sq * np.cos(angle + (2.0 * math.pi / 3.0)) - ad,
                sq * np.cos(angle - (2.0 * math.pi / 3.0)) - ad,
            ],
            axis=1,
        )
        s = np.sort(s, axis=1)
        low_dup = s[:, 1] - s[:, 0] < _EPSILON
        s[low_dup, 1] = s[low_dup, 2]
        cnt = np.where(s[:, 2] - s[:, 1] < _EPSILON, 2, 3)
        cnt[low_dup] = np.where(s[low_dup, 1] - s[low_dup, 0] < _EPSILON, 1, 2)
        sol[three], count[three] = s, cnt
    one = ~three
    if one.any():
        q, r, ad = qq[one], rr[one], adiv3[one]
        dxx = -np.power(np.abs(r) + np.sqrt(r * r - q * q * q), 1.0 / 3.0)
        zero = dxx == 0.0
        dxx = np.where(r < 0.0, -dxx, dxx)
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = q / dxx
        s0 = np.where(zero, -ad, dxx + sq - ad)
        double = ~zero & (np.abs(dxx - sq) < _EPSILON * 8)
        other = -dxx - ad
        s = np.stack([s0, np.zeros_like(s0), np.zeros_like(s0)], axis=1)
        s[:, 0] = np.where(double & (dxx >= 0.0), other, s0)
        s[:, 1] = np.where(double & (dxx >= 0.0), s0, other)
        sol[one], count[one] = s, np.where(double, 2, 1)
    return sol, count


def _lnlike(known: tuple[np.ndarray, ...], center: np.ndarray, freqs: tuple[np.ndarray, ...], half, incr):
    """plink1.9 ``calc_lnlike``: log likelihood of the haplotype frequencies shifted by ``incr``."""
    f11, f12, f21, f22 = freqs
    f11, f22 = f11 + incr, f22 + incr
    f12, f21 = f12 + (half - incr), f21 + (half - incr)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = center * np.log(f11 * f22 + f12 * f21)
        for k, f in zip(known, (f11, f12, f21, f22), strict=True):
            total = total + np.where(k != 0.0, k * np.log(f), 0.0)
    return total


def _phase_roots(f11, f12, f21, f22, half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate freq11 increments of plink1.9's ``em_phase_hethet`` for pairs with double heterozygotes.

    Returns:
        (k, 3) candidates, (k,) first and (k,) end index of the valid ones.
    """
    p1122, p1221 = f11 * f22, f12 * f21
    sol = np.zeros((half.size, 3))
    start = np.zeros(half.size, dtype=np.int64)
    end = np.full(half.size, 2, dtype=np.int64)
    cubic = (p1122 != 0.0) | (p1221 != 0.0)
    if cubic.any():
        g11, g12, g21, g22, h = f11[cubic], f12[cubic], f21[cubic], f22[cubic], half[cubic]
        q1122, q1221 = p1122[cubic], p1221[cubic]
        roots, cnt = _cubic_real_roots(
            0.5 * (g11 + g22 - g12 - g21 - 3 * h),
            0.5 * (q1122 + q1221 + h * (g12 + g21 - g11 - g22 + h)),
            -0.5 * h * q1122,
        )
        rows = np.arange(h.size)
        st = np.zeros(h.size, dtype=np.int64)
        for _ in range(3):  # drop roots above half, then below 0 (beyond SMALLISH_EPSILON)
            cnt = cnt - ((cnt > 0) & (roots[rows, np.maximum(cnt - 1, 0)] > h + _SMALLISH_EPSILON))
        for _ in range(3):
            st = st + ((st < cnt) & (roots[rows, np.minimum(st, 2)] < -_SMALLISH_EPSILON))
        lost = st == cnt  # "lost root must be a double root at one of the boundary points"
        roots[lost, 0], roots[lost, 1] = 0.0, h[lost]
        st[lost], cnt[lost] = 0, 2
        ok = rows[~lost]
        roots[ok, st[ok]] = np.maximum(roots[ok, st[ok]], 0.0)
        roots[ok, cnt[ok] - 1] = np.minimum(roots[ok, cnt[ok] - 1], h[ok])
        sol[cubic], start[cubic], end[cubic] = roots, st, cnt
    flat = ~cubic
    if flat.any():
        xx, xy, h = f11[flat] + f22[flat], f12[flat] + f21[flat], half[flat]
        mid = (xx + _SMALLISH_EPSILON < h + xy) & (xy + _SMALLISH_EPSILON < h + xx)
        sol[flat, 1] = np.where(mid, (h + xy - xx) * 0.5, h)
        sol[flat, 2] = h
        end[flat] = np.where(mid, 3, 2)
    return sol, start, end


def haplotype_r2(counts: np.ndarray) -> np.ndarray:
    """Signed r² (sign of D) of variant pairs from genotype count tables, as plink1.9 clumping computes it.

    Args:
        counts: (k, 3, 3) founders per (first variant class, second variant class); classes are
            homozygous A1, heterozygous, homozygous A2, in that order (plink's .bed codes 00, 10, 11).

    Returns:
        (k,) float64 r² · sign(D); NaN where plink skips the pair (no data, or a variant monomorphic).
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1, 9)
    known = (
        2 * c[:, 0] + c[:, 1] + c[:, 3],
        2 * c[:, 2] + c[:, 1] + c[:, 5],
        2 * c[:, 6] + c[:, 3] + c[:, 7],
        2 * c[:, 8] + c[:, 5] + c[:, 7],
    )
    center = c[:, 4]
    twice_tot = known[0] + known[1] + known[2] + known[3] + 2 * center
    with np.errstate(divide="ignore", invalid="ignore"):  # twice_tot == 0 fails below
        recip = 1.0 / twice_tot
        f11, f12, f21, f22 = (k * recip for k in known)
        half = center * recip
    freq1x = f11 + f12 + half
    freq2x = 1.0 - freq1x
    freqx1 = f11 + f21 + half
    freqx2 = 1.0 - freqx1
    fail = (twice_tot == 0.0) | ((center == 0) & (f11 * f22 == 0.0) & (f12 * f21 == 0.0))
    freq11 = f11.copy()
    s = center > 0
    if s.any():
        kn, fr, h, ctr = tuple(k[s] for k in known), (f11[s], f12[s], f21[s], f22[s]), half[s], center[s]
        sol, start, end = _phase_roots(*fr, h)
        rows = np.arange(h.size)
        best = sol[rows, start]
        # plink1.9 compares every later root with the *first* root's likelihood (best_lnlike is never
        # updated), so the last root beating the first one wins; reproduced on purpose.
        base = _lnlike(kn, ctr, fr, h, best)
        for offset in (1, 2):
            idx = np.minimum(start + offset, 2)
            better = (start + offset < end) & (_lnlike(kn, ctr, fr, h, sol[rows, idx]) > base)
            best = np.where(better, sol[rows, idx], best)
        freq11[s] = f11[s] + best
    expected = freqx1 * freq1x
    d = freq11 - expected
    absd = np.abs(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(absd >= _SMALL_EPSILON, absd * d / (expected * freq2x * freqx2), 0.0)
    r2[fail] = np.nan
    return r2


def genotype_counts(index: np.ndarray, block: np.ndarray) -> np.ndarray:
    """3 × 3 genotype tables between one variant and each column of a block, over samples called at both.

    Args:
        index: (n,) dosage of A1 (0/1/2, NaN missing).
        block: (n, k) samples × variants dosage of A1.

    Returns:
        (k, 3, 3) int64 counts; classes are dosage 2, 1, 0 (plink's homozygous A1, het, homozygous A2).
    """
    block = np.asarray(block, dtype=np.float32)
    rows = np.stack([index == d for d in (2, 1, 0)]).astype(np.float32)  # (3, n)
    counts = np.empty((block.shape[1], 3, 3), dtype=np.int64)
    for j, d in enumerate((2, 1, 0)):
        # float32 sums of 0/1 are exact below 2**24 samples
        counts[:, :, j] = np.rint(rows @ (block == d).astype(np.float32)).T
    return counts


def minor_allele_dosage(block: np.ndarray) -> np.ndarray:
    """Recode a samples × variants block to count plink1.9's A1: the minor allele, the .bim column 5 on ties.

    plink1.9 flips a variant whose column-5 allele has frequency > 0.5 in the given samples; its r²
    arithmetic then runs on the flipped codes, which only matters in the last bits of floating point.
    """
    called = ~np.isnan(block)
    flip = np.nansum(block, axis=0) > called.sum(axis=0)  # allele count > half the called alleles
    return np.where(flip[None, :], 2.0 - block, block).astype(np.float32)


def chrom_order_key(chrom: str) -> tuple[int, int, str]:
    """Natural chromosome order: 1..22, X, Y, XY, MT (plink codes 23..26 and a ``chr`` prefix accepted)."""
    name = str(chrom)
    if name.lower().startswith("chr"):
        name = name[3:]
    special = {"X": 23, "Y": 24, "XY": 25, "MT": 26, "M": 26}
    if name.isdigit():
        return (0, int(name), "")
    if name.upper() in special:
        return (0, special[name.upper()], "")
    return (1, 0, name)


def _p_and_log10p(table) -> tuple[np.ndarray, np.ndarray]:
    """(m,) P and LOG10_P from whichever of the two columns the table has (both if present)."""
    has_p, has_log = "P" in table.columns, "LOG10_P" in table.columns
    if not (has_p or has_log):
        raise ClumpError(f"summary statistics need a P or LOG10_P column; have {list(table.columns)}")
    log10p = np.asarray(table["LOG10_P"], dtype=np.float64) if has_log else None
    p = np.asarray(table["P"], dtype=np.float64) if has_p else 10.0**-log10p
    if log10p is None:
        with np.errstate(divide="ignore"):
            log10p = -np.log10(p)
    return p, log10p


def founder_indices(fileset: PlinkFileset) -> np.ndarray:
    """(f,) .fam rows plink1.9 treats as founders: PAT and MAT both "0" (even an absent parent counts)."""
    fam = fileset.fam
    return np.flatnonzero(((fam["PAT"] == "0") & (fam["MAT"] == "0")).to_numpy())


def _candidates(sumstats, p_max: float) -> pd.DataFrame:
    """Rows with P <= p_max (NaN P dropped), as pandas, filtering polars tables before converting."""
    columns = [c for c in ("phenotype", "ID", "P", "LOG10_P") if c in sumstats.columns]
    if not isinstance(sumstats, pd.DataFrame) and hasattr(sumstats, "filter"):
        import polars as pl

        slack = -math.log10(p_max) - 1e-9  # exact test redone below on P
        keep = pl.col("P") <= p_max if "P" in columns else pl.col("LOG10_P") >= slack
        sumstats = sumstats.select(columns).filter(keep)
    if not isinstance(sumstats, pd.DataFrame):
        if not hasattr(sumstats, "to_pandas"):
            raise TypeError(f"expected a pandas or polars DataFrame, got {type(sumstats).__name__}")
        sumstats = sumstats.to_pandas()
    table = sumstats[columns]
    if "ID" not in table.columns:
        raise ClumpError(f"summary statistics need an ID column; have {list(table.columns)}")
    p, log10p = _p_and_log10p(table)
    if (p < 0).any():
        raise ClumpError(
            f"negative P value for variant {str(table['ID'].to_numpy()[p < 0][0])!r}; P must be in [0, 1]"
        )
    keep = p <= p_max
    table = table.loc[keep].assign(P=p[keep], LOG10_P=log10p[keep])
    return table.reset_index(drop=True)


def _check_thresholds(p1: float, p2: float, r2: float, kb: float) -> None:
    """Reject what plink1.9 rejects: p1 in (0, 1], p2 in [p1, 1], r2 < 1, kb >= 0.001."""
    if not 0 < p1 <= 1 or not p1 <= p2 <= 1 or not r2 < 1 or not kb >= 0.001:
        raise ClumpError(
            f"invalid clumping thresholds p1={p1} p2={p2} r2={r2} kb={kb}: need 0 < p1 <= p2 <= 1, "
            "r2 < 1 and kb >= 0.001 (as plink1.9 --clump-p1/-p2/-r2/-kb)"
        )


def _bp_radius(kb: float) -> int:
    """plink1.9's --clump-kb window half-width in bp: variants at most this far from the index are in."""
    bp = kb * 1000
    return 0x7FFFFFFE if bp > 2147483647.0 else int(bp * (1 + _SMALL_EPSILON) - 1)


def clump(
    sumstats,
    fileset: PlinkFileset,
    *,
    p1: float = P1,
    p2: float = P2,
    r2: float = R2,
    kb: float = KB,
    chunk_size: int = 2048,
) -> pd.DataFrame:
    """Clump one phenotype's summary statistics like ``plink1.9 --clump`` (see the module docstring).

    Args:
        sumstats: pandas or polars table with ``ID`` and ``P`` and/or ``LOG10_P`` (other columns ignored;
            positions come from the .bim). At most one distinct ``phenotype``.
        fileset: genotypes whose .bim IDs the sumstats IDs refer to.
        p1, p2, r2, kb: ``--clump-p1 --clump-p2 --clump-r2 --clump-kb``.
        chunk_size: variants decoded at once when computing r² for one index variant.

    Returns:
        one row per clump in plink's order (P ascending, ties by .bim order): CHROM POS ID P LOG10_P of
        the index variant, START END (positions spanned by index and members), N_MEMBERS and MEMBERS
        (tuple of member IDs in .bim order, plink's SP2).
    """
    _check_thresholds(p1, p2, r2, kb)
    table = _candidates(sumstats, p2)
    if "phenotype" in table.columns and table["phenotype"].nunique() > 1:
        raise ClumpError("clump() takes one phenotype; use clump_all() for a table with several")
    if table["ID"].duplicated().any():
        dup = table.loc[table["ID"].duplicated(), "ID"].iloc[0]
        raise ClumpError(f"variant ID {dup!r} appears twice in the summary statistics of one phenotype")
    bim_ids = fileset.bim["ID"].to_numpy()
    ids = pd.Index(bim_ids)
    row = ids.get_indexer(table["ID"]) if ids.is_unique else _unique_lookup(ids, table["ID"])
    absent = row < 0
    top = table.loc[absent & (table["P"].to_numpy() <= p1), "ID"]
    if len(top):
        warnings.warn(
            f"{len(top)} index-eligible variant(s) (P <= {p1:g}) not in {fileset.bim_path}, e.g. "
            f"{list(top[:3])}; they are skipped (plink1.9 reports them the same way)",
            stacklevel=2,
        )
    table = table.loc[~absent].assign(row=row[~absent]).sort_values("row", kind="stable")
    row, p, log10p = (table[c].to_numpy() for c in ("row", "P", "LOG10_P"))
    member_ok, index_ok = p < p2, p <= p1
    chrom = fileset.bim["CHROM"].astype(str).to_numpy()[row]
    pos = fileset.bim["POS"].to_numpy(dtype=np.int64)[row]
    windows = {}  # per chromosome: candidates sorted by position, for the window search
    for name in np.unique(chrom):
        on_chrom = np.flatnonzero(chrom == name)
        order = on_chrom[np.argsort(pos[on_chrom], kind="stable")]
        windows[name] = (order, pos[order])
    founders = founder_indices(fileset)
    if founders.size == 0:
        raise ClumpError(f"{fileset.fam_path}: no founders (PAT and MAT both 0); plink1.9 skips --clump too")
    codes = {chrom_order_key(c)[:2] for c in windows}
    if (0, 24) in codes or ((0, 23) in codes and (fileset.fam["SEX"] == 1).any()):
        warnings.warn(
            "clumping chromosome Y, or X with males: r² here treats calls as diploid while plink1.9 applies "
            "haploid rules, so these clumps can differ from plink's",
            stacklevel=2,
        )
    radius = _bp_radius(kb)
    clumped = np.zeros(row.size, dtype=bool)  # plink: "has previously been in a clump"
    records = []
    by_p = np.lexsort((row, -log10p, p))
    for i in by_p[index_ok[by_p]]:
        if clumped[i]:
            continue
        order, sorted_pos = windows[chrom[i]]
        lo = np.searchsorted(sorted_pos, pos[i] - radius, side="left")
        hi = np.searchsorted(sorted_pos, pos[i] + radius, side="right")
        window = np.sort(order[lo:hi])
        window = window[(window != i) & ~clumped[window]]
        hit = np.zeros(window.size, dtype=bool)
        if window.size:
            index_dosage = minor_allele_dosage(fileset.read(row[i : i + 1], founders))[:, 0]
            for start in range(0, window.size, chunk_size):
                block = minor_allele_dosage(fileset.read(row[window[start : start + chunk_size]], founders))
                r2_part = haplotype_r2(genotype_counts(index_dosage, block))
                with np.errstate(invalid="ignore"):
                    hit[start : start + chunk_size] = np.abs(r2_part) > r2
        clumped[window[hit]] = True  # the index itself stays unmarked, as in plink1.9
        members = window[hit & member_ok[window]]
        span = pos[np.append(members, i)]
        records.append(
            (
                chrom[i],
                int(pos[i]),
                bim_ids[row[i]],
                p[i],
                log10p[i],
                int(span.min()),
                int(span.max()),
                members.size,
                tuple(bim_ids[row[members]]),
            )
        )
    return pd.DataFrame.from_records(records, columns=list(CLUMP_COLUMNS))


def _unique_lookup(ids: pd.Index, query: pd.Series) -> np.ndarray:
    """Row of each queried ID in ``ids``; -1 if absent; raises if a queried ID is duplicated in the .bim."""
    dup = ids[ids.duplicated()]
    clash = query[query.isin(dup)]
    if len(clash):
        raise ClumpError(
            f"variant ID {clash.iloc[0]!r} appears more than once in the .bim; clumping needs unique IDs "
            "(rename with plink2 --set-all-var-ids or drop duplicates)"
        )
    first = ~ids.duplicated(keep="first")
    where = pd.Index(ids[first]).get_indexer(query)
    return np.where(where >= 0, np.flatnonzero(first)[np.maximum(where, 0)], -1)


def clump_all(sumstats, fileset: PlinkFileset, **clump_kwargs) -> pd.DataFrame:
    """Clump every phenotype of a long-format sumstats table (pandas or polars, column ``phenotype``).

    Returns:
        the ``clump`` tables of all phenotypes stacked, with a leading ``phenotype`` column.
    """
    table = _candidates(sumstats, clump_kwargs.get("p2", P2))
    if "phenotype" not in table.columns:
        return (
            clump(table, fileset, **clump_kwargs).assign(phenotype="").loc[:, ["phenotype", *CLUMP_COLUMNS]]
        )
    parts = [
        clump(group, fileset, **clump_kwargs).assign(phenotype=name)
        for name, group in table.groupby("phenotype", sort=True)
    ]
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame(columns=["phenotype", *CLUMP_COLUMNS])
    return pd.concat(parts, ignore_index=True)[["phenotype", *CLUMP_COLUMNS]]


LOCI_COLUMNS = (
    "locus", "CHROM", "START", "END", "LEAD_ID", "LEAD_POS", "LEAD_P", "LEAD_LOG10_P", "lead_phenotype",
    "phenotypes", "n_phenotypes", "n_clumps", "n_variants",
)  # fmt: skip


def merge_loci(clumps: pd.DataFrame, gap_kb: float = 0.0) -> pd.DataFrame:
    """Merge clumps (of one or many phenotypes) whose [START, END] ranges overlap into loci.

    Two clumps on a chromosome join when the later one starts at most ``gap_kb`` after the running end
    of the locus. The lead is the clump index with the largest LOG10_P (ties: smaller P, then earlier).

    Args:
        clumps: ``clump_all`` output (``phenotype`` optional).

    Returns:
        one row per locus in natural chromosome then position order, columns ``LOCI_COLUMNS``:
        locus (1-based), span, lead variant, comma-joined sorted phenotypes, and counts of phenotypes,
        clumps and distinct variants (index plus members).
    """
    if len(clumps) == 0:
        return pd.DataFrame(columns=list(LOCI_COLUMNS))
    table = clumps.copy()
    if "phenotype" not in table.columns:
        table["phenotype"] = ""
    table["_key"] = table["CHROM"].map(chrom_order_key)
    table = table.sort_values(["_key", "START", "END"], kind="stable").reset_index(drop=True)
    gap = int(round(gap_kb * 1000))
    locus = np.zeros(len(table), dtype=np.int64)
    current, end, chrom = 0, None, None
    for k, (c, start, stop) in enumerate(zip(table["CHROM"], table["START"], table["END"], strict=True)):
        if c != chrom or start > end + gap:
            current, chrom, end = current + 1, c, stop
        end = max(end, stop)
        locus[k] = current
    table["locus"] = locus
    rows = []
    for number, group in table.groupby("locus", sort=True):
        lead = group.sort_values(["LOG10_P", "P"], ascending=[False, True], kind="stable").iloc[0]
        variants = set(group["ID"])
        for members in group["MEMBERS"]:
            variants.update(members)
        names = sorted(set(group["phenotype"]))
        rows.append(
            (number, group["CHROM"].iat[0], int(group["START"].min()), int(group["END"].max()), lead["ID"],
             int(lead["POS"]), lead["P"], lead["LOG10_P"], lead["phenotype"], ",".join(names), len(names),
             len(group), len(variants))
        )  # fmt: skip
    return pd.DataFrame.from_records(rows, columns=list(LOCI_COLUMNS))


def write_loci(loci: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a loci table as tab-separated ``loci.tsv`` (atomically; P in full precision)."""
    with atomic_path(path) as tmp:
        loci.to_csv(tmp, sep="\t", index=False, float_format="%.17g", na_rep="NA")


def write_clumps(clumps: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write clumps as a TSV (atomically), MEMBERS comma-joined (``NONE`` when empty, like plink's SP2)."""
    table = clumps.assign(MEMBERS=[",".join(m) if len(m) else "NONE" for m in clumps["MEMBERS"]])
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.17g", na_rep="NA")
