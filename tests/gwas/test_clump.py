"""gwas.clump against plink1.9 --clump on simulated LD blocks, plus the loci table."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from genetics.plink import PlinkFileset, write_plink
from gwas.clump import (
    ClumpError,
    clump,
    clump_all,
    genotype_counts,
    haplotype_r2,
    merge_loci,
    minor_allele_dosage,
    write_loci,
)


@pytest.fixture(scope="module")
def plink19(plink19_bin) -> str:
    return plink19_bin


def _fam(n: int, nonfounders: int = 0) -> pd.DataFrame:
    iids = [f"s{i}" for i in range(n)]
    fam = pd.DataFrame({"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "SEX": 0, "PHENO": "-9"})
    fam.loc[: nonfounders - 1, "PAT"] = "nobody"  # a listed parent makes a nonfounder, even if absent
    return fam


def simulate(n: int = 300, blocks: int = 8, per_block: int = 16, seed: int = 0):
    """Samples × variants dosages on chromosomes 1 and 2 made of haplotype blocks, and a trait's P values."""
    rng = np.random.default_rng(seed)
    haps, chrom, pos = [], [], []
    for name in ("1", "2"):
        at = 10_000
        for _ in range(blocks):
            ancestors = rng.random((int(rng.integers(2, 5)), per_block)) < rng.uniform(0.1, 0.9, per_block)
            h = ancestors[rng.integers(0, len(ancestors), 2 * n)]
            h ^= rng.random(h.shape) < rng.uniform(0.0, 0.08)
            haps.append(h)
            for _ in range(per_block):
                at += int(rng.integers(1_000, 6_000))
                chrom.append(name)
                pos.append(at)
            at += int(rng.integers(20_000, 120_000))
    h = np.concatenate(haps, axis=1).astype(np.float32)
    dosage = h[:n] + h[n:]
    dosage[rng.random(dosage.shape) < 0.03] = np.nan
    m = dosage.shape[1]
    bim = pd.DataFrame({"CHROM": chrom, "ID": [f"rs{i}" for i in range(m)], "CM": 0.0, "POS": pos})
    bim = bim.assign(ALT=rng.choice(["A", "C"], m), REF=rng.choice(["G", "T"], m))
    filled = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    causal = rng.choice(m, 6, replace=False)
    y = filled[:, causal] @ (rng.choice([-1, 1], 6) * rng.uniform(0.3, 0.6, 6)) + rng.normal(size=n)
    centred = filled - filled.mean(axis=0)
    sd = centred.std(axis=0)
    r = (centred * (y - y.mean())[:, None]).mean(axis=0) / np.where(sd > 0, sd * y.std(), np.inf)
    t = r * np.sqrt((n - 2) / np.maximum(1 - r**2, 1e-12))
    from scipy import stats

    return dosage, bim, 2 * stats.t.sf(np.abs(t), n - 2)


def run_plink_clump(plink: str, prefix: Path, assoc: Path, p1, p2, r2, kb) -> dict[str, tuple[str, ...]]:
    """{index ID: member IDs} from ``plink1.9 --clump`` (SP2 in file order)."""
    out = prefix.parent / f"plink_{p1}_{p2}_{r2}_{kb}"
    cmd = [
        plink,
        "--bfile",
        str(prefix),
        "--clump",
        str(assoc),
        "--clump-p1",
        repr(p1),
        "--clump-p2",
        repr(p2),
    ]
    cmd += ["--clump-r2", repr(r2), "--clump-kb", repr(kb), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    clumped = Path(f"{out}.clumped")
    if not clumped.exists():
        return {}
    result = {}
    for line in clumped.read_text().splitlines()[1:]:
        fields = line.split()
        if fields:
            members = () if fields[11] == "NONE" else tuple(f.split("(")[0] for f in fields[11].split(","))
            result[fields[2]] = members
    return result


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    d = tmp_path_factory.mktemp("clump")
    dosage, bim, p = simulate()
    write_plink(d / "sim", dosage, bim=bim, fam=_fam(len(dosage), nonfounders=20))
    table = pd.DataFrame({"SNP": bim["ID"], "P": p})
    table.to_csv(d / "assoc.txt", sep=" ", index=False)
    return d / "sim", d / "assoc.txt", table.rename(columns={"SNP": "ID"})


@pytest.mark.parametrize(
    "p1, p2, r2, kb",
    [(1e-4, 1e-2, 0.5, 250), (1e-3, 0.05, 0.2, 250), (0.01, 0.05, 0.1, 40), (0.05, 0.5, 0.05, 60),
     (0.5, 0.6, 0.01, 1000), (0.01, 0.01, 0.3, 25)],
)  # fmt: skip
def test_clump_matches_plink19(plink19, dataset, p1, p2, r2, kb):
    prefix, assoc, table = dataset
    expected = run_plink_clump(plink19, prefix, assoc, p1, p2, r2, kb)
    ours = clump(table, PlinkFileset(prefix), p1=p1, p2=p2, r2=r2, kb=kb)
    assert {row.ID: row.MEMBERS for row in ours.itertuples()} == expected
    assert list(ours["ID"]) == list(expected)  # plink's order: P ascending
    assert (ours["START"] <= ours["POS"]).all() and (ours["POS"] <= ours["END"]).all()


def test_window_edges_ties_thresholds_founders(plink19, tmp_path):
    """|distance| < 1000·kb, P == p1 is an index, P == p2 is no member, P ties by .bim order, nonfounders out."""
    rng = np.random.default_rng(3)
    n = 200
    base = rng.integers(0, 3, n).astype(np.float32)
    cols = []
    for _ in range(12):
        col = base.copy()
        noise = rng.random(n) < 0.05
        col[noise] = rng.integers(0, 3, noise.sum())
        col[rng.random(n) < 0.03] = np.nan
        cols.append(col)
    c = 1_000_000
    pos = [c, c + 249_999, c + 250_000, c + 250_001, c - 249_999, c - 250_000, c - 250_001]
    pos += [c + 100_000, c + 100_001, c + 200_000, c + 500, 5]
    bim = pd.DataFrame(
        {"CHROM": ["1"] * 11 + ["2"], "ID": [f"v{j}" for j in range(12)], "CM": 0.0, "POS": pos}
    )
    order = np.lexsort((bim["POS"], bim["CHROM"]))
    bim = bim.iloc[order].reset_index(drop=True).assign(ALT="A", REF="G")
    write_plink(tmp_path / "e", np.array(cols).T[:, order], bim=bim, fam=_fam(n, nonfounders=30))
    pvals = [1e-8, 1e-4, 0.01, 1e-3, 0.01, 1e-3, 1e-3, 1e-8, 1e-4, 0.00999, 0.5, 1e-9]
    table = pd.DataFrame({"ID": [f"v{j}" for j in range(12)] + ["absent"], "P": pvals + [1e-12]})
    table.rename(columns={"ID": "SNP"}).to_csv(tmp_path / "a.txt", sep=" ", index=False)
    fileset = PlinkFileset(tmp_path / "e")
    for p1, p2, r2, kb in [(1e-4, 1e-2, 0.1, 250), (1e-3, 1e-2, 0.1, 250), (1e-4, 1e-2, 0.1, 249.999),
                           (1e-4, 1e-2, 0.1, 250.001), (1e-8, 1e-4, 0.1, 100), (0.01, 0.01, 0.1, 250)]:  # fmt: skip
        expected = run_plink_clump(plink19, tmp_path / "e", tmp_path / "a.txt", p1, p2, r2, kb)
        with pytest.warns(UserWarning, match="not in"):
            ours = clump(table, fileset, p1=p1, p2=p2, r2=r2, kb=kb)
        assert {row.ID: row.MEMBERS for row in ours.itertuples()} == expected


def test_r2_matches_plink19_between_thresholds(plink19, tmp_path):
    """Small samples give odd genotype tables (several ML phasings, exact ties at the threshold)."""
    rng = np.random.default_rng(11)
    thresholds = [0.0, 0.1, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 0.9]
    for trial in range(4):
        n, k = int(rng.integers(6, 40)), 40
        index = rng.integers(0, 3, n).astype(np.float32)
        block = np.where(
            rng.random((n, k)) < rng.uniform(0, 0.6, k), rng.integers(0, 3, (n, k)), index[:, None]
        )
        block[:, ::3] = 2 - block[:, ::3]
        block = block.astype(np.float32)
        block[rng.random((n, k)) < 0.1] = np.nan
        write_plink(tmp_path / f"t{trial}", np.c_[index, block])
        ids = [f"1:{j + 1}" for j in range(k + 1)]
        pd.DataFrame({"SNP": ids, "P": [1e-10] + [1e-3] * k}).to_csv(tmp_path / "a.txt", sep=" ", index=False)
        oriented = minor_allele_dosage(np.c_[index, block])
        r2 = np.abs(haplotype_r2(genotype_counts(oriented[:, 0], oriented[:, 1:])))
        for threshold in thresholds:
            members = run_plink_clump(
                plink19, tmp_path / f"t{trial}", tmp_path / "a.txt", 1e-4, 0.01, threshold, 250
            )
            in_plink = np.isin(ids[1:], members.get(ids[0], ()))
            with np.errstate(invalid="ignore"):
                np.testing.assert_array_equal(
                    in_plink, r2 > threshold, err_msg=f"trial {trial} r2 > {threshold}"
                )


def test_only_founders_called_at_both_variants_count(plink19, tmp_path):
    """Founders carry perfect LD, nonfounders and the missing calls would break it if they counted."""
    rng = np.random.default_rng(5)
    founders, others = 80, 80
    index = rng.integers(0, 3, founders + others).astype(np.float32)
    linked = index.copy()
    linked[founders:] = rng.integers(0, 3, others)  # nonfounders: unrelated genotypes
    missing = rng.random(founders) < 0.2
    index[:founders][missing] = np.nan  # missing at the index only: these founders drop out of the pair
    linked[:founders][missing] = 2 - linked[:founders][missing]
    bim = pd.DataFrame({"CHROM": "1", "ID": ["a", "b"], "CM": 0.0, "POS": [100, 200], "ALT": "A", "REF": "G"})
    fam = _fam(founders + others).iloc[::-1].reset_index(drop=True)
    fam.loc[: others - 1, "PAT"] = "s0"  # the first rows (samples founders..) are nonfounders
    dosage = np.c_[index, linked][::-1]
    write_plink(tmp_path / "f", dosage, bim=bim, fam=fam)
    pd.DataFrame({"SNP": ["a", "b"], "P": [1e-9, 1e-3]}).to_csv(tmp_path / "a.txt", sep=" ", index=False)
    expected = run_plink_clump(plink19, tmp_path / "f", tmp_path / "a.txt", 1e-4, 0.01, 0.9, 250)
    ours = clump(pd.DataFrame({"ID": ["a", "b"], "P": [1e-9, 1e-3]}), PlinkFileset(tmp_path / "f"), r2=0.9)
    assert expected == {"a": ("b",)}
    assert {row.ID: row.MEMBERS for row in ours.itertuples()} == expected


def test_haplotype_r2_known_tables():
    perfect = np.array([[[10, 0, 0], [0, 0, 0], [0, 0, 10]]])
    swapped = np.array([[[0, 0, 10], [0, 0, 0], [10, 0, 0]]])
    independent = np.array([[[1, 2, 1], [2, 4, 2], [1, 2, 1]]])
    monomorphic = np.array([[[5, 3, 2], [0, 0, 0], [0, 0, 0]]])
    r2 = haplotype_r2(np.concatenate([perfect, swapped, independent, monomorphic]))
    np.testing.assert_allclose(r2[:3], [1.0, -1.0, 0.0], atol=1e-12)
    assert np.isnan(r2[3])
    assert np.isnan(haplotype_r2(np.zeros((1, 3, 3)))[0])


def test_genotype_counts_matches_loop():
    rng = np.random.default_rng(0)
    index = rng.choice([0.0, 1.0, 2.0, np.nan], 500)
    block = rng.choice([0.0, 1.0, 2.0, np.nan], (500, 7))
    counts = genotype_counts(index, block)
    for j in range(7):
        for a, da in enumerate((2, 1, 0)):
            for b, db in enumerate((2, 1, 0)):
                assert counts[j, a, b] == np.sum((index == da) & (block[:, j] == db))


def test_clump_all_polars_and_loci(dataset, tmp_path):
    prefix, _, table = dataset
    fileset = PlinkFileset(prefix)
    second = table.assign(P=np.roll(table["P"].to_numpy(), 16))  # the same signals, one LD block later
    both = pd.concat([table.assign(phenotype="f1"), second.assign(phenotype="f0")])
    both["LOG10_P"] = -np.log10(both["P"])
    clumps = clump_all(pl.from_pandas(both.drop(columns="P")), fileset, p1=1e-3, p2=0.05, r2=0.2)
    assert set(clumps["phenotype"]) == {"f0", "f1"}
    alone = clump(table, fileset, p1=1e-3, p2=0.05, r2=0.2)
    f1 = clumps[clumps["phenotype"] == "f1"].reset_index(drop=True)
    assert list(f1["ID"]) == list(alone["ID"]) and list(f1["MEMBERS"]) == list(alone["MEMBERS"])
    np.testing.assert_allclose(f1["P"], alone["P"], rtol=1e-12)
    loci = merge_loci(clumps)
    assert loci["n_clumps"].sum() == len(clumps)
    assert (loci["START"] <= loci["LEAD_POS"]).all() and (loci["LEAD_POS"] <= loci["END"]).all()
    for chrom, group in loci.groupby("CHROM"):  # loci on a chromosome do not overlap
        assert (group["START"].to_numpy()[1:] > group["END"].to_numpy()[:-1]).all(), chrom
    best = clumps.loc[clumps["LOG10_P"].idxmax()]
    assert loci["LEAD_LOG10_P"].max() == best["LOG10_P"]
    write_loci(loci, tmp_path / "loci.tsv")
    back = pd.read_csv(tmp_path / "loci.tsv", sep="\t")
    assert list(back.columns)[:4] == ["locus", "CHROM", "START", "END"] and len(back) == len(loci)
    assert not list(tmp_path.glob(".loci.tsv.*"))  # no temp file left behind


def test_merge_loci_unions_overlaps_across_phenotypes():
    clumps = pd.DataFrame(
        {
            "phenotype": ["a", "b", "a", "b", "c"],
            "CHROM": ["1", "1", "1", "2", "10"],
            "POS": [150, 260, 900, 50, 5],
            "ID": ["x", "y", "z", "w", "v"],
            "P": [1e-9, 1e-12, 1e-5, 1e-6, 1e-7],
            "LOG10_P": [9.0, 12.0, 5.0, 6.0, 7.0],
            "START": [100, 200, 800, 50, 5],
            "END": [250, 300, 950, 50, 5],
            "MEMBERS": [("m1", "y"), ("m2",), (), (), ()],
        }
    )
    loci = merge_loci(clumps)
    assert loci["CHROM"].tolist() == ["1", "1", "2", "10"]  # natural chromosome order
    first = loci.iloc[0]
    assert (first["START"], first["END"], first["LEAD_ID"], first["phenotypes"]) == (100, 300, "y", "a,b")
    assert (first["n_clumps"], first["n_variants"], first["n_phenotypes"]) == (2, 4, 2)
    assert merge_loci(clumps, gap_kb=1)["CHROM"].tolist() == ["1", "2", "10"]
    assert merge_loci(clumps.iloc[:0]).empty


def test_bad_input_raises(dataset):
    prefix, _, table = dataset
    fileset = PlinkFileset(prefix)
    with pytest.raises(ClumpError, match="twice"):
        clump(pd.concat([table, table]), fileset)
    with pytest.raises(ClumpError, match="p1"):
        clump(table, fileset, p1=0.1, p2=0.01)
    with pytest.raises(ClumpError, match="one phenotype"):
        clump(pd.concat([table.assign(phenotype="a"), table.assign(phenotype="b")]), fileset)
    with pytest.raises(ClumpError, match="P or LOG10_P"):
        clump(table[["ID"]], fileset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clump(table.assign(P=0.5), fileset).empty  # nothing significant: no clumps, no warning
