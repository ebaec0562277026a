"""Rare-variant gene burden scores, modelled on regenie's burden masks (``--build-mask``).

For every (gene, mask, AAF bin) column and every person, the burden combines the person's ALT allele
counts over the gene's variants whose annotation is in the mask and whose AAF is at most the bin's cut-off:

- ``max`` (regenie default): the largest ALT count; ``sum``: the sum; ``comphet``: the sum capped at 2.
- optional per-variant weights multiply the ALT counts first: Beta(MAF; 1, 25) density (SKAT's default,
  MAF = min(AAF, 1 - AAF)) and/or the annotation file's WEIGHT column. ``comphet`` takes no weights.

Semantics, following regenie where it is defined:

- AAF is the frequency of the counted allele (.bim column 5, plink2's ALT/A1), over non-missing calls, never
  folded to the minor allele, so a variant whose ALT is the common allele enters no rare bin. Bins are
  nested (a 0.001 variant is also in the 0.01 bin); ``all`` = cut-off 1. The optional ``singleton`` bin
  holds variants with exactly one ALT allele observed.
- Missing calls (``missing="zero"``, default) contribute nothing: the rule runs over the person's
  non-missing calls, as regenie does. regenie additionally sets a person missing at *every* variant of a
  column to the column mean; here that person gets 0. ``missing="mean"`` replaces each missing call by the
  variant's mean 2·AAF before the rule (densifies the output). Carriers are people with at least one
  observed ALT call in the column's variants, whatever the weights or imputation.

Genotypes are streamed in variant chunks; memory is O(samples × chunk + non-zero burdens).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp
from scipy import stats

from genetics.atomic import atomic_path
from genetics.burden_inputs import (
    SINGLETON,
    AnnotationTable,
    BurdenInputError,
    Mask,
    aaf_label,
    check_masks,
    parse_aaf_bins,
    warn,
)
from genetics.plink import PlinkFileset

RULES = ("max", "sum", "comphet")
MISSING = ("zero", "mean")
LAYOUTS = ("long", "wide")
METADATA_KEY = "contig.burden"


@dataclass
class BurdenResult:
    """Burden scores of every sample in a fileset.

    Attributes:
        matrix: (n_samples, n_columns) float64 CSR, samples × (gene, mask, aaf_bin) columns.
        columns: one row per matrix column: id (``GENE.MASK.AAF_BIN`` like regenie) gene mask aaf_bin
            aaf_max (NaN for singleton) chrom pos n_variants n_carriers.
        samples: FID IID of the matrix rows (the .fam order).
        settings: the options used (rule, aaf_bins, weights, missing, ...).
        summary: counts for reporting (genes, masks, carriers, dropped columns, missing calls, ...).
    """

    matrix: sp.csr_matrix
    columns: pd.DataFrame
    samples: pd.DataFrame
    settings: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    variants: np.ndarray  # (v,) sorted .bim row indices to read
    member_ptr: np.ndarray  # (v + 1,) CSR pointer: variant k belongs to (gene, mask) pairs ptr[k]:ptr[k+1]
    member_gm: np.ndarray  # (e,) gene-mask pair index
    member_weight: np.ndarray  # (e,) annotation weight of that (variant, gene) row
    gene_masks: pd.DataFrame  # gene mask chrom pos, one row per pair


def _plan(
    bim: pd.DataFrame,
    annotations: AnnotationTable,
    masks: Sequence[Mask],
    set_list: pd.DataFrame | None,
) -> _Plan:
    """Join annotation rows (and set list) to .bim rows and masks; warn with counts about what is lost."""
    table = annotations.table
    path = annotations.path
    if set_list is not None:
        keyed = table.merge(set_list[["GENE", "ID"]], on=["GENE", "ID"], how="left", indicator=True)
        outside = keyed["_merge"] != "both"
        if outside.all():
            raise BurdenInputError(
                f"{path}: no (variant, gene) row is listed in the set list; the set list's GENE and variant "
                "IDs must match the annotation file's"
            )
        if outside.any():
            warn(
                f"{path}: {int(outside.sum())} of {len(table)} annotation row(s) are not in the set list "
                f"and are ignored ({table.loc[outside.to_numpy(), 'GENE'].nunique()} gene(s) affected)"
            )
        table = table[~outside.to_numpy()]
        listed = set_list.merge(table[["GENE", "ID"]], on=["GENE", "ID"], how="left", indicator=True)
        unannotated = int((listed["_merge"] != "both").sum())
        if unannotated:
            warn(
                f"{unannotated} of {len(set_list)} set-list (gene, variant) pair(s) have no row in {path} "
                "and are ignored"
            )
    bim_ids = bim["ID"]
    ambiguous = bim_ids[bim_ids.duplicated(keep=False) & bim_ids.isin(set(table["ID"]))]
    if len(ambiguous):
        first = ambiguous.iloc[0]
        raise BurdenInputError(
            f"variant ID {first!r} from {path} occurs {int((bim_ids == first).sum())} times in the .bim "
            f"({ambiguous.nunique()} ambiguous ID(s)); give variants unique IDs (plink2 --set-all-var-ids)"
        )
    index = pd.Index(bim_ids).drop_duplicates(keep="first").get_indexer(table["ID"])
    found = index >= 0
    if not found.any():
        raise BurdenInputError(
            f"{path}: none of its {table['ID'].nunique()} variant IDs (e.g. {table['ID'].iloc[0]!r}) is "
            f"in the .bim (e.g. {bim['ID'].iloc[0] if len(bim) else None!r}); "
            "annotation IDs must match .bim column 2"
        )
    if not found.all():
        genes_all = table["GENE"].nunique()
        genes_kept = table.loc[found, "GENE"].nunique()
        warn(
            f"{path}: {int((~found).sum())} of {len(table)} annotation row(s) name variants not in the .bim; "
            f"{genes_all - genes_kept} of {genes_all} gene(s) have none of their variants genotyped"
        )
    table = table[found].assign(BIM=index[found])
    gene_codes, genes = pd.factorize(table["GENE"])
    parts = []
    for m, mask in enumerate(masks):
        rows = table["ANNOT"].isin(mask.annotations).to_numpy()
        if not rows.any():
            warn(
                f"mask {mask.name!r}: none of its annotations {list(mask.annotations)} has a genotyped "
                "variant; its columns will be missing"
            )
        parts.append(
            (
                gene_codes[rows] * len(masks) + m,
                table["BIM"].to_numpy()[rows],
                table["WEIGHT"].to_numpy()[rows],
            )
        )
    gm_key = np.concatenate([p[0] for p in parts])
    bim_rows = np.concatenate([p[1] for p in parts]).astype(np.int64)
    weights = np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts])
    if gm_key.size == 0:
        raise BurdenInputError(f"{path}: no genotyped variant has an annotation used by any mask")
    keys, gm = np.unique(gm_key, return_inverse=True)
    order = np.lexsort((gm, bim_rows))
    bim_rows, gm, weights = bim_rows[order], gm[order], weights[order]
    variants, starts = np.unique(bim_rows, return_index=True)
    gene_of = keys // len(masks)
    gene_masks = pd.DataFrame(
        {"gene": genes.to_numpy()[gene_of], "mask": [masks[k % len(masks)].name for k in keys]}
    )
    if set_list is not None:
        loci = set_list.drop_duplicates("GENE").set_index("GENE")
        gene_masks["chrom"] = loci.loc[gene_masks["gene"], "CHROM"].to_numpy()
        gene_masks["pos"] = loci.loc[gene_masks["gene"], "POS"].to_numpy().astype(np.int64)
    else:
        rows = bim.iloc[table["BIM"].to_numpy()].assign(gene=table["GENE"].to_numpy())
        loci = rows.groupby("gene", sort=False).agg(chrom=("CHROM", "first"), pos=("POS", "min"))
        gene_masks = gene_masks.join(loci, on="gene")
    return _Plan(
        variants=variants,
        member_ptr=np.append(starts, bim_rows.size).astype(np.int64),
        member_gm=gm.astype(np.int64),
        member_weight=weights,
        gene_masks=gene_masks,
    )


def _nonzero_rare(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a mostly-False 2-D bool array, scanning 8 bytes at a time (a few times faster)."""
    flat = np.ascontiguousarray(mask).reshape(-1)
    padded = np.concatenate([flat, np.zeros(-flat.size % 8, dtype=bool)])
    words = np.flatnonzero(padded.view(np.uint64))
    position = (words[:, None] * 8 + np.arange(8)).ravel()
    position = position[padded[position]]
    return np.divmod(position, mask.shape[1])


def _reduce(keys: np.ndarray, values: np.ndarray, observed: np.ndarray, how: str) -> tuple[np.ndarray, ...]:
    """Combine triplets with equal key: values by max or sum, observed (0/1 int8) by max."""
    if keys.size == 0:
        return keys, values, observed
    order = np.argsort(keys, kind="stable")
    keys, values, observed = keys[order], values[order], observed[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    combine = np.maximum if how == "max" else np.add
    return keys[starts], combine.reduceat(values, starts), np.maximum.reduceat(observed, starts)


@dataclass(frozen=True)
class _Options:
    rule: str
    cutoffs: np.ndarray  # (b,) sorted AAF upper bounds
    singletons: bool
    beta_weights: bool
    annotation_weights: bool
    missing: str

    @property
    def how(self) -> str:
        return "max" if self.rule == "max" else "sum"


def _chunk_burdens(
    block: np.ndarray,
    member_count: np.ndarray,
    member_gm: np.ndarray,
    member_weight: np.ndarray,
    options: _Options,
    n_cols: int,
) -> tuple[np.ndarray, ...]:
    """Burden contributions of one chunk (the kernel).

    Args:
        block: (n, m) float32 samples × variants ALT dosage, NaN = missing.
        member_count: (m,) number of (gene, mask) pairs of each variant; member_gm, member_weight: (e,) those
            pairs and their annotation weights, variant by variant.

    Returns:
        keys (person * n_cols + column), values, observed (int8) reduced per key; (n_cols,) number of the
        chunk's variants in each column; (m,) number of non-missing calls per variant.
    """
    n_bins = int(options.singletons) + options.cutoffs.size
    m = block.shape[1]
    called = ~np.isnan(block)
    n_called = called.sum(axis=0)
    alt_count = np.where(called, block, 0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        aaf = alt_count / (2.0 * n_called)  # NaN without calls: qualifies for no bin
    fill = 2.0 * np.nan_to_num(aaf) if options.missing == "mean" else np.zeros(m)
    genotype = np.where(called, block, fill[None, :].astype(np.float32))
    weight = stats.beta.pdf(np.minimum(aaf, 1.0 - aaf), 1, 25) if options.beta_weights else np.ones(m)
    qualifies = np.column_stack(
        ([alt_count == 1] if options.singletons else []) + [aaf <= c for c in options.cutoffs]
    )  # (m, n_bins)
    # memberships (variant, column, weight), sorted by variant; m_ptr indexes them per variant
    member_var = np.repeat(np.arange(m), member_count)
    e_sel, b_sel = np.nonzero(qualifies[member_var])
    m_var = member_var[e_sel]
    m_col = member_gm[e_sel] * n_bins + b_sel
    m_weight = weight[m_var] * (member_weight[e_sel] if options.annotation_weights else 1.0)
    m_ptr = np.searchsorted(m_var, np.arange(m + 1))
    # non-zero genotypes (person, variant), each crossed with its variant's memberships
    g_person, g_var = _nonzero_rare(genotype != 0)
    repeat = np.diff(m_ptr)[g_var]
    offsets = np.cumsum(repeat) - repeat
    member = np.repeat(m_ptr[g_var] - offsets, repeat) + np.arange(int(repeat.sum()))
    keys = np.repeat(g_person.astype(np.int64), repeat) * n_cols + m_col[member]
    values = np.repeat(genotype[g_person, g_var].astype(np.float64), repeat) * m_weight[member]
    observed = np.repeat(called[g_person, g_var].astype(np.int8), repeat)
    return (*_reduce(keys, values, observed, options.how), np.bincount(m_col, minlength=n_cols), n_called)


def compute_burdens(
    plink: PlinkFileset,
    annotations: AnnotationTable,
    masks: Sequence[Mask],
    *,
    aaf_bins: str | Sequence[float] = (0.01,),
    rule: str = "max",
    beta_weights: bool = False,
    annotation_weights: bool = False,
    missing: str = "zero",
    singletons: bool = False,
    set_list: pd.DataFrame | None = None,
    min_carriers: int = 1,
    chunk_size: int = 1024,
) -> BurdenResult:
    """Stream the fileset's annotated variants and build (samples × columns) burden scores.

    Args:
        aaf_bins: AAF upper bounds, e.g. ``(0.001, 0.01)`` or ``"0.01,0.001"`` (see :func:`parse_aaf_bins`).
        rule: ``max``, ``sum`` or ``comphet``.
        beta_weights: weight ALT counts by Beta(MAF; 1, 25) density.
        annotation_weights: weight ALT counts by the annotation file's WEIGHT column (must exist).
        missing: ``zero`` (missing calls contribute nothing) or ``mean`` (replaced by 2·AAF).
        singletons: add regenie's ``singleton`` bin (variants with one ALT allele observed).
        set_list: parsed set list (:func:`read_set_list`) restricting which (gene, variant) pairs count.
        min_carriers: drop columns with fewer carriers (people with an observed ALT call in them).

    >>> import pathlib, tempfile
    >>> from genetics.burden_inputs import read_annotations
    >>> from genetics.plink import write_plink
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> g = np.array([[1, 0], [0, 0], [1, 1], [0, np.nan]], dtype=np.float32)  # 4 samples × 2 variants
    >>> write_plink(d / "toy", g)
    >>> _ = (d / "anno.txt").write_text("1:1 G1 pLoF\\n1:2 G1 missense\\n")
    >>> masks = [Mask("M1", ("pLoF", "missense"))]
    >>> r = compute_burdens(PlinkFileset(d / "toy"), read_annotations(d / "anno.txt"), masks, aaf_bins="all", rule="sum")
    >>> r.columns["id"].tolist(), r.matrix.toarray().ravel().tolist()
    (['G1.M1.all'], [1.0, 0.0, 2.0, 0.0])
    """
    if rule not in RULES:
        raise BurdenInputError(f"unknown burden rule {rule!r}; choose one of {RULES}")
    if missing not in MISSING:
        raise BurdenInputError(f"unknown missing-call handling {missing!r}; choose one of {MISSING}")
    if rule == "comphet" and (beta_weights or annotation_weights):
        raise BurdenInputError(
            "rule 'comphet' caps an ALT count at 2 and takes no weights; use 'sum' or 'max'"
        )
    if annotation_weights and not annotations.has_weights:
        raise BurdenInputError(
            f"{annotations.path}: annotation weights requested but the file has no 4th column"
        )
    cutoffs = np.array(parse_aaf_bins(aaf_bins), dtype=np.float64)
    if min_carriers < 0 or chunk_size < 1:
        raise BurdenInputError("min_carriers must be >= 0 and chunk_size >= 1")
    if not masks:
        raise BurdenInputError("no masks given; define at least one, e.g. 'Mask1 pLoF'")
    check_masks(masks, annotations)
    plan = _plan(plink.bim, annotations, masks, set_list)
    labels = ([SINGLETON] if singletons else []) + [aaf_label(c) for c in cutoffs]
    n_bins, n_samples = len(labels), plink.n_samples
    n_cols = len(plan.gene_masks) * n_bins
    options = _Options(rule, cutoffs, singletons, beta_weights, annotation_weights, missing)
    parts: list[tuple[np.ndarray, ...]] = []
    n_variants = np.zeros(n_cols, dtype=np.int64)
    n_missing = n_uncalled = done = 0
    for _, block in plink.iter_chunks(chunk_size, variants=plan.variants):
        m = block.shape[1]
        lo, hi = plan.member_ptr[done], plan.member_ptr[done + m]
        members = (
            np.diff(plan.member_ptr[done : done + m + 1]),
            plan.member_gm[lo:hi],
            plan.member_weight[lo:hi],
        )
        *triplets, counts, n_called = _chunk_burdens(block, *members, options, n_cols)
        parts.append(triplets)
        n_variants += counts
        n_missing += int(block.size - n_called.sum())
        n_uncalled += int((n_called == 0).sum())
        done += m
    if n_uncalled:
        warn(f"{n_uncalled} annotated variant(s) have no non-missing call and enter no AAF bin")
    keys, values, observed = _reduce(*(np.concatenate([p[i] for p in parts]) for i in range(3)), options.how)
    if rule == "comphet":
        values = np.minimum(values, 2.0)
    rows, cols = np.divmod(keys, n_cols)
    n_carriers = np.bincount(cols[observed > 0], minlength=n_cols)
    columns = plan.gene_masks.loc[np.repeat(np.arange(len(plan.gene_masks)), n_bins)].reset_index(drop=True)
    columns.insert(2, "aaf_bin", labels * len(plan.gene_masks))
    columns.insert(3, "aaf_max", np.tile([np.nan] * int(singletons) + list(cutoffs), len(plan.gene_masks)))
    columns.insert(0, "id", columns["gene"] + "." + columns["mask"] + "." + columns["aaf_bin"])
    columns["n_variants"], columns["n_carriers"] = n_variants, n_carriers
    defined = n_variants > 0
    keep = defined & (n_carriers >= min_carriers)
    if not keep.any():
        raise BurdenInputError(
            f"no (gene, mask, AAF bin) column has >= {min_carriers} carrier(s) ({int(defined.sum())} "
            f"column(s) with variants, most carriers {int(n_carriers.max(initial=0))}); "
            "widen --aaf-bins, check the masks, or lower --min-carriers"
        )
    new_index = np.cumsum(keep) - 1
    entry = keep[cols] & (values != 0)
    matrix = sp.csr_matrix(
        (values[entry], (rows[entry], new_index[cols[entry]])), shape=(n_samples, int(keep.sum()))
    )
    if matrix.nnz == 0:
        reason = (
            "carriers all have weight 0" if (observed > 0).any() else "nobody carries a qualifying ALT allele"
        )
        raise BurdenInputError(f"every burden is 0 ({reason}); check --aaf-bins, the masks and the weights")
    columns = columns[keep].reset_index(drop=True)
    settings = {
        "rule": rule,
        "aaf_bins": [float(c) for c in cutoffs],
        "singletons": singletons,
        "beta_weights": beta_weights,
        "annotation_weights": annotation_weights,
        "missing": missing,
        "min_carriers": min_carriers,
    }
    summary = {
        "n_samples": n_samples,
        "n_variants_read": int(plan.variants.size),
        "n_variants_no_calls": n_uncalled,
        "n_missing_calls": n_missing,
        "n_genes": int(columns["gene"].nunique()),
        "n_masks": int(columns["mask"].nunique()),
        "n_columns": int(keep.sum()),
        "n_columns_without_variants": int((~defined).sum()),
        "n_columns_below_min_carriers": int((defined & ~keep).sum()),
        "n_carriers": int(np.unique(rows[keep[cols] & (observed > 0)]).size),
        "n_nonzero": int(matrix.nnz),
    }
    samples = plink.fam[["FID", "IID"]].reset_index(drop=True)
    return BurdenResult(matrix=matrix, columns=columns, samples=samples, settings=settings, summary=summary)


def write_burdens(
    result: BurdenResult,
    path: str | os.PathLike,
    layout: str = "long",
    max_wide_cells: int = 50_000_000,
) -> None:
    """Write burdens to parquet atomically.

    ``long``: one row per non-zero burden, columns FID IID gene mask aaf_bin burden (people absent from it
    have burden 0 everywhere). ``wide``: FID IID then one float64 column per ``GENE.MASK.AAF_BIN`` id, for
    small outputs (at most ``max_wide_cells`` cells). Settings and the column table go in the parquet
    key-value metadata under ``contig.burden`` (see :func:`read_burden_metadata`).
    """
    if layout not in LAYOUTS:
        raise BurdenInputError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    fid = pl.Series("FID", result.samples["FID"].astype(str).tolist(), dtype=pl.String)
    iid = pl.Series("IID", result.samples["IID"].astype(str).tolist(), dtype=pl.String)
    if layout == "long":
        coo = result.matrix.tocoo()
        order = np.lexsort((coo.col, coo.row))
        rows, cols = pl.Series(coo.row[order]), pl.Series(coo.col[order])
        labels = {
            name: pl.Series(name, result.columns[name].astype(str).tolist()) for name in ("gene", "mask")
        }
        labels["aaf_bin"] = pl.Series("aaf_bin", result.columns["aaf_bin"].astype(str).tolist())
        frame = pl.DataFrame(
            [fid.gather(rows), iid.gather(rows)]
            + [series.gather(cols) for series in labels.values()]
            + [pl.Series("burden", coo.data[order].astype(np.float64))]
        )
    else:
        n, k = result.matrix.shape
        if n * k > max_wide_cells:
            raise BurdenInputError(
                f"wide layout would hold {n} × {k} = {n * k} cells (limit {max_wide_cells}); "
                "use the long layout"
            )
        dense = result.matrix.toarray()
        frame = pl.DataFrame([fid, iid]).with_columns(
            [pl.Series(name, dense[:, j]) for j, name in enumerate(result.columns["id"])]
        )
    columns = {name: result.columns[name].tolist() for name in ("id", "gene", "mask", "aaf_bin")}
    columns.update(
        n_variants=result.columns["n_variants"].tolist(), n_carriers=result.columns["n_carriers"].tolist()
    )
    meta = {"layout": layout, "n_samples": len(iid), **result.settings, "columns": columns}
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, metadata={METADATA_KEY: json.dumps(meta)})


def read_burden_metadata(path: str | os.PathLike) -> dict:
    """Settings and column table written by :func:`write_burdens` (``columns`` as a dict of lists)."""
    meta = pl.read_parquet_metadata(Path(path))
    if METADATA_KEY not in meta:
        raise BurdenInputError(f"{path}: no {METADATA_KEY} metadata; not written by contig burden")
    return json.loads(meta[METADATA_KEY])
