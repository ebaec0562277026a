"""Gene burden scores against a direct loop over columns, people and variants; bad inputs; the parquet writer."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from genetics.burden import compute_burdens, read_burden_metadata, write_burdens
from genetics.burden_inputs import (
    BurdenInputError,
    BurdenInputWarning,
    Mask,
    parse_aaf_bins,
    read_annotations,
    read_masks,
    read_set_list,
)
from genetics.errors import GeneticsError
from genetics.plink import PlinkFileset, write_plink

N_SAMPLES, N_GENES = 200, 30
ANNOTS = ("pLoF", "missense", "synonymous")
MASK_TEXT = "# regenie --mask-def\nM1 pLoF\nM2 pLoF, missense\nM3 synonymous\n"
CUTOFFS = (0.001, 0.01, 1.0)


def simulate(directory: Path, seed: int = 11) -> dict:
    """Rare variants (MAF 0.0005-0.02) in 30 genes, ~1% missing calls, some overlap/common/uncalled variants."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 9, N_GENES)
    m = int(sizes.sum()) + 10  # + unannotated filler
    aaf = np.exp(rng.uniform(np.log(0.0005), np.log(0.02), m))
    aaf[[3, 17]] = 0.985  # ALT is the common allele: never folded into rare bins
    dosage = rng.binomial(2, aaf, size=(N_SAMPLES, m)).astype(np.float32)
    dosage[rng.random(dosage.shape) < 0.01] = np.nan
    dosage[:, 5] = np.nan  # a variant without calls
    dosage[:2, 8] = [1, np.nan]  # make sure singletons and missing carriers exist
    rows, start = [], 0
    for g, size in enumerate(sizes):
        for j in range(start, start + size):
            rows.append((f"v{j}", f"G{g}", ANNOTS[rng.integers(3)], round(float(rng.uniform(0.1, 2)), 3)))
        if g % 5 == 0:  # the gene's last variant also belongs to the next gene
            rows.append((f"v{start + size - 1}", f"G{g + 1}", "pLoF", 1.5))
        start += size
    bim = pd.DataFrame(
        {
            "CHROM": "1",
            "ID": [f"v{j}" for j in range(m)],
            "CM": 0.0,
            "POS": np.arange(m) + 100,
            "ALT": "T",
            "REF": "C",
        }
    )
    write_plink(directory / "geno", dosage, bim=bim)
    anno = directory / "anno.txt"
    anno.write_text("ID GENE ANNOT WEIGHT\n" + "".join(f"{v}\t{g}\t{a}\t{w}\n" for v, g, a, w in rows))
    (directory / "masks.txt").write_text(MASK_TEXT)
    return {"dir": directory, "dosage": dosage, "rows": rows}


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> dict:
    return simulate(tmp_path_factory.mktemp("burden"))


def reference(dosage, rows, masks, cutoffs, rule, beta, anno_w, missing, singletons=False) -> dict:
    """Obvious loops: {column id: ((n,) burdens, n_carriers)} for every column with >= 1 variant."""
    n, m = dosage.shape
    index = {f"v{j}": j for j in range(m)}
    aaf = []
    for j in range(m):
        calls = [float(dosage[i, j]) for i in range(n) if not math.isnan(dosage[i, j])]
        aaf.append(sum(calls) / (2 * len(calls)) if calls else math.nan)
    bins = ([("singleton", None)] if singletons else []) + [
        ("all" if c == 1 else f"{c:g}", c) for c in cutoffs
    ]
    out = {}
    for gene in dict.fromkeys(g for _, g, _, _ in rows):
        for name, annots in masks:
            for label, cutoff in bins:
                chosen = []
                for vid, g, annot, weight in rows:
                    j = index[vid]
                    if g != gene or annot not in annots or math.isnan(aaf[j]):
                        continue
                    alt_count = 2 * aaf[j] * sum(not math.isnan(x) for x in dosage[:, j])
                    if (cutoff is None and round(alt_count) == 1) or (
                        cutoff is not None and aaf[j] <= cutoff
                    ):
                        maf = min(aaf[j], 1 - aaf[j])
                        w = (25 * (1 - maf) ** 24 if beta else 1.0) * (weight if anno_w else 1.0)
                        chosen.append((j, w))
                if not chosen:
                    continue
                burden, carriers = np.zeros(n), 0
                for i in range(n):
                    values, carrier = [], False
                    for j, w in chosen:
                        g = float(dosage[i, j])
                        if math.isnan(g):
                            if missing == "zero":
                                continue
                            g = 2 * aaf[j]
                        else:
                            carrier = carrier or g > 0
                        values.append(g * w)
                    carriers += carrier
                    if values:
                        total = sum(values)
                        burden[i] = (
                            max(values) if rule == "max" else min(total, 2) if rule == "comphet" else total
                        )
                out[f"{gene}.{name}.{label}"] = (burden, carriers)
    return out


def load(sim):
    masks = read_masks(sim["dir"] / "masks.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BurdenInputWarning)
        return PlinkFileset(sim["dir"] / "geno"), read_annotations(sim["dir"] / "anno.txt"), masks


CONFIGS = [
    (rule, beta, anno_w, missing)
    for rule in ("max", "sum", "comphet")
    for beta in (False, True)
    for anno_w in (False, True)
    for missing in ("zero", "mean")
    if rule != "comphet" or not (beta or anno_w)
]


@pytest.mark.parametrize("rule,beta,anno_w,missing", CONFIGS)
def test_matches_reference_loop(sim, rule, beta, anno_w, missing):
    plink, annotations, masks = load(sim)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = compute_burdens(
            plink, annotations, masks, aaf_bins=CUTOFFS, rule=rule, beta_weights=beta,
            annotation_weights=anno_w, missing=missing, singletons=True, min_carriers=0, chunk_size=7,
        )  # fmt: skip
    ref = reference(
        sim["dosage"],
        sim["rows"],
        [(k.name, k.annotations) for k in masks],
        CUTOFFS,
        rule,
        beta,
        anno_w,
        missing,
        True,
    )
    assert list(result.columns["id"]) == list(ref)  # same columns, gene → mask → bin order
    dense = result.matrix.toarray()
    assert result.matrix.format == "csr" and result.matrix.shape == (N_SAMPLES, len(ref))
    assert np.all(result.matrix.data != 0)
    for k, (column_id, (burden, carriers)) in enumerate(ref.items()):
        np.testing.assert_allclose(dense[:, k], burden, rtol=1e-6, atol=1e-6, err_msg=column_id)
        assert result.columns.loc[k, "n_carriers"] == carriers, column_id
    assert result.summary["n_columns"] == len(ref) and result.summary["n_variants_no_calls"] == 1


def test_chunking_and_reference_bins(sim):
    plink, annotations, masks = load(sim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BurdenInputWarning)
        one = compute_burdens(plink, annotations, masks, aaf_bins=(0.01, 1.0), chunk_size=1, min_carriers=0)
        whole = compute_burdens(
            plink, annotations, masks, aaf_bins="all,0.01", chunk_size=10_000, min_carriers=0
        )
    assert (one.matrix != whole.matrix).nnz == 0 and one.columns.equals(whole.columns)
    assert list(one.columns["aaf_bin"].unique()) == ["0.01", "all"]
    # v3 has ALT frequency 0.985: it counts in the 'all' bin only, not in 0.01 (no folding to the minor allele)
    _, gene, annot, _ = next(r for r in sim["rows"] if r[0] == "v3")
    mask = next(k.name for k in masks if annot in k.annotations)
    n_variants = one.columns.set_index("id")["n_variants"]
    assert n_variants[f"{gene}.{mask}.all"] == n_variants.get(f"{gene}.{mask}.0.01", 0) + 1


def test_min_carriers_filter(sim):
    plink, annotations, masks = load(sim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BurdenInputWarning)
        full = compute_burdens(plink, annotations, masks, aaf_bins=CUTOFFS, min_carriers=0)
        kept = compute_burdens(plink, annotations, masks, aaf_bins=CUTOFFS, min_carriers=3)
    wanted = full.columns["n_carriers"] >= 3
    assert 0 < wanted.sum() < len(full.columns)
    assert list(kept.columns["id"]) == list(full.columns.loc[wanted, "id"])
    assert (kept.matrix != full.matrix[:, np.flatnonzero(wanted)]).nnz == 0
    assert kept.summary["n_columns_below_min_carriers"] == int((~wanted).sum())
    carriers = np.asarray((kept.matrix > 0).sum(axis=0)).ravel()
    assert np.all(carriers >= 3)


def test_write_long_and_wide(sim, tmp_path):
    plink, annotations, masks = load(sim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BurdenInputWarning)
        result = compute_burdens(
            plink, annotations, masks, aaf_bins=(0.001, 0.01), rule="sum", beta_weights=True
        )
    write_burdens(result, tmp_path / "long.parquet")
    long = pl.read_parquet(tmp_path / "long.parquet")
    assert long.columns == ["FID", "IID", "gene", "mask", "aaf_bin", "burden"]
    assert long.height == result.matrix.nnz and (long["burden"] != 0).all()
    ids = long["gene"] + "." + long["mask"] + "." + long["aaf_bin"]
    col = pd.Index(result.columns["id"]).get_indexer(ids.to_list())
    row = pd.Index(result.samples["IID"]).get_indexer(long["IID"].to_list())
    rebuilt = np.zeros(result.matrix.shape)
    rebuilt[row, col] = long["burden"].to_numpy()
    np.testing.assert_array_equal(rebuilt, result.matrix.toarray())
    write_burdens(result, tmp_path / "wide.parquet", layout="wide")
    wide = pl.read_parquet(tmp_path / "wide.parquet")
    assert wide.columns == ["FID", "IID", *result.columns["id"]] and wide.height == N_SAMPLES
    np.testing.assert_array_equal(wide.drop("FID", "IID").to_numpy(), result.matrix.toarray())
    meta = read_burden_metadata(tmp_path / "wide.parquet")
    assert meta["rule"] == "sum" and meta["columns"]["id"] == list(result.columns["id"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "long.parquet",
        "wide.parquet",
    ]  # no temp files left
    with pytest.raises(BurdenInputError, match="long layout"):
        write_burdens(result, tmp_path / "big.parquet", layout="wide", max_wide_cells=10)


@pytest.mark.filterwarnings("ignore:.*no non-missing call")
def test_set_list_restricts_variants(sim, tmp_path):
    plink, annotations, masks = load(sim)
    rows = [r for r in sim["rows"] if r[1] in ("G1", "G2")]
    g1 = [v for v, g, _, _ in rows if g == "G1"][:2]
    g2 = [v for v, g, _, _ in rows if g == "G2"]
    (tmp_path / "sets.txt").write_text(f"G1 1 5000 {','.join(g1)}\nG2 1 6000 {','.join(g2)},nope\n")
    with pytest.warns(BurdenInputWarning) as record:
        result = compute_burdens(
            plink,
            annotations,
            masks,
            aaf_bins=(1.0,),
            set_list=read_set_list(tmp_path / "sets.txt"),
            min_carriers=0,
        )
    messages = " | ".join(str(w.message) for w in record)
    assert (
        "are not in the set list" in messages and "set-list (gene, variant) pair(s) have no row" in messages
    )
    assert set(result.columns["gene"]) <= {"G1", "G2"}
    assert set(result.columns.loc[result.columns["gene"] == "G1", "pos"]) <= {5000}
    kept = [r for r in rows if (r[1] == "G1" and r[0] in g1) or r[1] == "G2"]
    ref = reference(
        sim["dosage"], kept, [(k.name, k.annotations) for k in masks], (1.0,), "max", False, False, "zero"
    )
    assert list(result.columns["id"]) == list(ref)
    for k, (burden, _) in enumerate(ref.values()):
        np.testing.assert_array_equal(result.matrix.toarray()[:, k], burden)


# ---- bad input -------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_malformed_annotation_lines(tmp_path):
    with pytest.raises(BurdenInputError, match=r"anno.txt: line 3 has 2 fields"):
        read_annotations(write(tmp_path / "anno.txt", "v1 G1 pLoF\n\nv2 G1\n"))
    with pytest.raises(BurdenInputError, match=r"line 2: weight 'heavy'"):
        read_annotations(write(tmp_path / "anno.txt", "v1 G1 pLoF 1\nv2 G1 pLoF heavy\n"))
    with pytest.raises(BurdenInputError, match=r"line 1 has 5 fields"):
        read_annotations(write(tmp_path / "anno.txt", "v1 G1 pLoF 1 x\n"))
    with pytest.raises(BurdenInputError, match="no annotation rows"):
        read_annotations(write(tmp_path / "anno.txt", "# nothing\n"))
    with pytest.raises(BurdenInputError, match="file not found"):
        read_annotations(tmp_path / "absent.txt")


def test_duplicated_variant_gene_rows(tmp_path):
    with pytest.warns(
        BurdenInputWarning, match=r"1 duplicated \(ID, GENE\) row\(s\) dropped \(first repeat at line 3"
    ):
        table = read_annotations(write(tmp_path / "a.txt", "v1 G1 pLoF\nv1 G2 pLoF\nv1 G1 pLoF\n")).table
    assert len(table) == 2
    with pytest.raises(BurdenInputError, match=r"'v1' in gene 'G1' is annotated twice differently \(line 1"):
        read_annotations(write(tmp_path / "a.txt", "v1 G1 pLoF\nv1 G1 missense\n"))


def test_bad_mask_definitions(sim, tmp_path):
    plink, annotations, _ = load(sim)
    masks = read_masks(write(tmp_path / "m.txt", "M1 pLoF\nM2 pLoF,misense\n"))
    with pytest.raises(
        BurdenInputError, match=r"m.txt: line 2: mask 'M2' uses annotation\(s\) \['misense'\]"
    ):
        compute_burdens(plink, annotations, masks)
    with pytest.raises(BurdenInputError, match=r"m.txt: line 2: mask name 'M1' already defined on line 1"):
        read_masks(write(tmp_path / "m.txt", "M1 pLoF\nM1 missense\n"))
    with pytest.raises(BurdenInputError, match=r"line 1: mask 'M1' lists no annotations"):
        read_masks(write(tmp_path / "m.txt", "M1\n"))
    (mask,) = read_masks(write(tmp_path / "m.txt", "M2 pLoF, missense\n"))
    assert (mask.name, mask.annotations, mask.line) == ("M2", ("pLoF", "missense"), 1)


def test_variants_missing_from_genotypes(sim, tmp_path):
    plink, _, masks = load(sim)
    partial = read_annotations(write(tmp_path / "a.txt", "v0 G1 pLoF\nx1 G1 pLoF\nx2 G9 pLoF\n"))
    with pytest.warns(BurdenInputWarning, match=r"2 of 3 annotation row\(s\) .* 1 of 2 gene\(s\) have none"):
        compute_burdens(plink, partial, [Mask("M1", ("pLoF",))], aaf_bins=(1.0,), min_carriers=0)
    nothing = read_annotations(write(tmp_path / "a.txt", "x1 G1 pLoF\nx2 G9 pLoF\n"))
    with pytest.raises(BurdenInputError, match="none of its 2 variant IDs"):
        compute_burdens(plink, nothing, [Mask("M1", ("pLoF",))])


@pytest.mark.filterwarnings("ignore:.*no non-missing call")
def test_never_all_zero(sim, tmp_path):
    plink, annotations, masks = load(sim)
    with pytest.raises(BurdenInputError, match=r"no \(gene, mask, AAF bin\) column has >= 100000 carrier"):
        compute_burdens(plink, annotations, masks, min_carriers=100_000)
    uncalled = read_annotations(write(tmp_path / "a.txt", "v5 G1 pLoF\n"))  # v5 has no calls at all
    with (
        pytest.raises(BurdenInputError, match="carrier"),
        pytest.warns(BurdenInputWarning, match="no non-missing"),
    ):
        compute_burdens(plink, uncalled, [Mask("M1", ("pLoF",))], aaf_bins=(1.0,))


def test_bad_options_and_ambiguous_ids(sim, tmp_path):
    plink, annotations, masks = load(sim)
    with pytest.raises(BurdenInputError, match="comphet"):
        compute_burdens(plink, annotations, masks, rule="comphet", beta_weights=True)
    with pytest.raises(BurdenInputError, match="unknown burden rule"):
        compute_burdens(plink, annotations, masks, rule="mean")
    no_weights = read_annotations(write(tmp_path / "a.txt", "v0 G1 pLoF\n"))
    with pytest.raises(BurdenInputError, match="no 4th column"):
        compute_burdens(plink, no_weights, [Mask("M1", ("pLoF",))], annotation_weights=True)
    for text in ("0.01,abc", "0", "1.5", ""):
        with pytest.raises(BurdenInputError, match="AAF bin"):
            parse_aaf_bins(text)
    assert parse_aaf_bins("all,0.01, 0.001") == (0.001, 0.01, 1.0)
    dosage = np.ones((4, 2), dtype=np.float32)
    bim = pd.DataFrame({"CHROM": "1", "ID": ["a", "a"], "CM": 0.0, "POS": [1, 2], "ALT": "T", "REF": "C"})
    write_plink(tmp_path / "dup", dosage, bim=bim)
    anno = read_annotations(write(tmp_path / "a.txt", "a G1 pLoF\n"))
    with pytest.raises(BurdenInputError, match=r"variant ID 'a' .* occurs 2 times in the .bim"):
        compute_burdens(PlinkFileset(tmp_path / "dup"), anno, [Mask("M1", ("pLoF",))])
    with pytest.raises(BurdenInputError, match=r"sets.txt: line 1: position 'x'"):
        read_set_list(write(tmp_path / "sets.txt", "G1 1 x v1,v2\n"))
    assert issubclass(BurdenInputError, GeneticsError)
