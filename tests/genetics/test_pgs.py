"""Polygenic scores: PGS Catalog reading, variant matching, and SUM/AVG identical to plink2 --score.

plink2 2.00a3.5 prints --score results with 6 significant digits and has no flag for more. To compare to
1e-9 relative anyway, the main design makes plink2's exact results short decimals: integer weights, and
every variant with missing calls has 240 observed samples and an ALT count divisible by 6, so its imputed
dosage is a multiple of 0.025; with |w| ≤ 3 every SUM is a multiple of 0.025 below 1000 and every AVG (the
denominators are 50, 100 and 250) has at most 6 significant digits. A second test uses realistic float
weights and compares to plink2's printed precision (rtol 1e-5).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genetics.errors import PlinkFormatError
from genetics.pgs import score
from genetics.pgs_catalog import ScoreFileError, read_scoring_file
from genetics.plink import PlinkFileset, write_plink
from tests.conftest import run_binary

N, M = 250, 400
PAIRS = [("A", "G"), ("G", "A"), ("C", "T"), ("T", "C"), ("A", "C"), ("C", "A"), ("G", "T"), ("T", "G")]
AMBIGUOUS = [("A", "T"), ("T", "A"), ("C", "G"), ("G", "C")]
THIRD = {frozenset(p): next(b for b in "ACGT" if b not in p) for p in PAIRS}


def write_pgs(path: Path, header: dict[str, str], rows: pd.DataFrame) -> Path:
    """Write a PGS Catalog format 2.0 file (gzipped when ``path`` ends with .gz)."""
    lines = ["###PGS CATALOG SCORING FILE - see https://www.pgscatalog.org/downloads/", "#format_version=2.0"]
    lines += ["##POLYGENIC SCORE (PGS) INFORMATION"] + [f"#{k}={v}" for k, v in header.items()]
    lines += ["\t".join(rows.columns)] + ["\t".join(map(str, r)) for r in rows.itertuples(index=False)]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def _genotypes(rng: np.random.Generator) -> np.ndarray:
    """(N, M) ALT dosages; 100 variants have 10 missing calls (1% overall) and an ALT count divisible by 6."""
    g = rng.binomial(2, rng.uniform(0.05, 0.95, M), size=(N, M)).astype(np.float64)
    for j in rng.choice(M, 100, replace=False):
        g[rng.choice(N, 10, replace=False), j] = np.nan
        need = -int(np.nansum(g[:, j])) % 6
        up = np.flatnonzero(g[:, j] < 2)  # NaN < 2 is False: only observed calls change
        g[rng.choice(up, need, replace=False), j] += 1
    return g


@pytest.fixture(scope="module")
def design(tmp_path_factory) -> dict:
    """Fileset + two scoring files (plain by rsID, gzipped harmonized) and what should match in each mode."""
    folder = tmp_path_factory.mktemp("pgs")
    rng = np.random.default_rng(11)
    chrom = np.repeat(["1", "2", "3"], [150, 150, 100])
    pos = np.concatenate(
        [np.sort(rng.choice(np.arange(10_000, 5_000_000), k, replace=False)) for k in (150, 150, 100)]
    )
    kind = rng.permutation(np.r_[np.zeros(60, int), np.ones(M - 60, int)])  # 0 = ambiguous pair
    alleles = [AMBIGUOUS[rng.integers(4)] if k == 0 else PAIRS[rng.integers(8)] for k in kind]
    alt, ref = np.array([a for a, _ in alleles]), np.array([r for _, r in alleles])
    ids = np.array([f"rs{100 + 7 * i}" for i in range(M)], dtype=object)
    special = rng.choice(np.flatnonzero(kind == 1), 40, replace=False)  # .bim IDs that are not rsIDs
    ids[special] = [f"{chrom[j]}:{pos[j]}:{ref[j]}:{alt[j]}" for j in special]
    bim = pd.DataFrame({"CHROM": chrom, "ID": ids, "CM": 0.0, "POS": pos, "ALT": alt, "REF": ref})
    g = _genotypes(rng)
    write_plink(folder / "geno", g, bim)

    plain = np.setdiff1d(np.flatnonzero(kind == 1), special)
    amb = np.flatnonzero(kind == 0)
    a_good, a_bad, b_good, b_bad = plain[:125], plain[125:129], plain[115:140], plain[140:143]
    b_good = np.r_[b_good, special[:25]]  # 10 variants shared with score A; 25 found only by position
    assert np.isnan(g[:, a_good]).sum() > 100 and np.isnan(g[:, b_good]).sum() > 20  # imputation is exercised

    def rows(index, flip, wrong=None):
        effect = np.where(flip, ref[index], alt[index])
        other = np.where(flip, alt[index], ref[index])
        if wrong is not None:  # allele mismatch: effect allele or other allele not in the .bim pair
            third = [THIRD[frozenset((alt[j], ref[j]))] for j in index]
            effect = np.where(wrong == 0, third, effect)
            other = np.where(wrong == 1, third, other)
        return pd.DataFrame(
            {
                "rsID": ids[index],
                "chr_name": chrom[index],
                "chr_position": pos[index],
                "effect_allele": effect,
                "other_allele": other,
                "effect_weight": [f"{w:.1f}" for w in rng.choice([-3, -2, -1, 1, 2, 3], len(index))],
            }
        )

    absent = pd.DataFrame(
        {"rsID": [f"rs999{i}" for i in range(6)], "chr_name": "4", "chr_position": np.arange(6) + 900_000}
    )
    absent = absent.assign(effect_allele="A", other_allele="G", effect_weight="1.5")
    score_a = pd.concat(
        [
            rows(a_good, rng.random(125) < 0.35),
            rows(amb[:10], rng.random(10) < 0.5),
            rows(a_bad, np.zeros(4, bool), wrong=np.array([0, 0, 1, 1])),
            absent,
        ]
    ).sort_values(["chr_name", "chr_position"], ignore_index=True)
    score_b = pd.concat(
        [rows(b_good, rng.random(50) < 0.35), rows(amb[10:15], np.zeros(5, bool))]
        + [rows(b_bad, np.zeros(3, bool), wrong=np.array([1, 1, 0])), absent.iloc[:4]],
        ignore_index=True,
    )
    score_b.loc[score_b["rsID"].str.contains(":"), "rsID"] = [f"rs8{i:05d}" for i in range(25)]
    score_b = score_b.assign(hm_source="ENSEMBL", hm_rsID=score_b["rsID"], hm_chr=score_b["chr_name"])
    score_b = score_b.assign(hm_pos=score_b["chr_position"], chr_position=score_b["chr_position"] - 12_345)
    infer = score_b.index[:12]  # other allele only via hm_inferOtherAllele for some rows
    score_b["hm_inferOtherAllele"] = ""
    score_b.loc[infer, "hm_inferOtherAllele"] = score_b.loc[infer, "other_allele"] + "/N"
    score_b.loc[infer, "other_allele"] = ""
    path_a = write_pgs(
        folder / "PGS900001.txt",
        {"pgs_id": "PGS900001", "genome_build": "GRCh38", "variants_number": str(len(score_a))},
        score_a,
    )
    path_b = write_pgs(
        folder / "PGS900002_hmPOS_GRCh38.txt.gz",
        {"pgs_id": "PGS900002", "genome_build": "GRCh37", "HmPOS_build": "GRCh38"},
        score_b,
    )
    truth = {  # rows plink2 must score, by .bim ID: (file, mode) -> bim indices
        ("a", "id"): a_good,
        ("a", "position"): a_good,
        ("b", "id"): b_good[:25],
        ("b", "position"): b_good,
    }
    return {"prefix": folder / "geno", "bim": bim, "g": g, "a": path_a, "b": path_b, "truth": truth}


def _truth_rows(design: dict, key: str, mode: str) -> pd.DataFrame:
    """The (bim ID, effect allele, weight) rows that should be scored, rewritten with .bim IDs."""
    sf = read_scoring_file(design[key])
    index = design["truth"][(key, mode)]
    bim = design["bim"].iloc[index]
    v = sf.variants
    by_pos = v.assign(
        CHROM=v["hm_chr"].where(v["hm_chr"] != "", v["chr_name"]),
        POS=v["hm_pos"].fillna(v["chr_position"]).astype(int),
    )
    by_pos = by_pos.merge(bim, on=["CHROM", "POS"])
    assert len(by_pos) == len(index) and by_pos.eval("effect_allele == ALT or effect_allele == REF").all()
    return pd.DataFrame({"ID": by_pos["ID"], "A1": by_pos["effect_allele"], "W": by_pos["effect_weight"]})


def _plink2(plink2_bin: str, prefix: Path, rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """plink2 --score on ``rows`` (ID, allele, weight columns with a header line); the .sscore table."""
    rows.to_csv(folder / "plink2_input.txt", sep="\t", index=False)
    args = [plink2_bin, "--bfile", str(prefix), "--score", "plink2_input.txt", "1", "2", "3", "header"]
    run_binary(args + ["cols=+scoresums,+denom", "--out", "ref"], folder)
    return pd.read_csv(folder / "ref.sscore", sep="\t")


@pytest.mark.parametrize("mode", ["id", "position"])
def test_sum_and_avg_equal_plink2(design, plink2_bin, tmp_path, mode):
    result = score(design["prefix"], [design["a"], design["b"]], match=mode, chunk_size=64)
    for key, pgs_id in (("a", "PGS900001"), ("b", "PGS900002")):
        ref = _plink2(plink2_bin, design["prefix"], _truth_rows(design, key, mode), tmp_path)
        assert (ref["DENOM"] == 2 * len(design["truth"][(key, mode)])).all()
        assert ref["IID"].tolist() == result.scores["IID"].tolist()
        for stat in ("SUM", "AVG"):
            ours = result.scores[f"{pgs_id}_{stat}"].to_numpy()
            np.testing.assert_allclose(ours, ref[f"SCORE1_{stat}"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("mode", "expected_b"),
    [("id", [25, 29, 3, 5]), ("position", [50, 4, 3, 5])],
)
def test_match_report_counts(design, mode, expected_b):
    report = score(design["prefix"], [design["a"], design["b"]], match=mode).report.set_index("pgs_id")
    columns = ["matched", "not_found", "allele_mismatch", "ambiguous_dropped"]
    assert report.loc["PGS900001", columns].tolist() == [125, 6, 4, 10]
    assert report.loc["PGS900002", columns].tolist() == expected_b
    assert report.loc["PGS900001", "n_variants"] == 145
    assert 0 < report.loc["PGS900001", "flipped"] < 125
    assert report.loc["PGS900001", "match_rate"] == pytest.approx(125 / 145)


def test_realistic_weights_and_ambiguous_kept_match_plink2(design, plink2_bin, tmp_path):
    """Float weights, ambiguous variants kept; plink2 prints 6 significant digits, hence rtol 1e-5."""
    rng = np.random.default_rng(3)
    table = read_scoring_file(design["a"]).variants
    table = table[["rsID", "chr_name", "chr_position", "effect_allele", "other_allele"]]
    table = table.assign(effect_weight=[f"{w:.6g}" for w in rng.normal(0, 0.05, len(table))])
    path = write_pgs(tmp_path / "real.txt", {"pgs_id": "REAL"}, table)
    result = score(design["prefix"], path, allow_ambiguous=True)
    assert result.report.loc[0, ["matched", "ambiguous_dropped"]].tolist() == [135, 0]
    # plink2 checks the effect allele only: leave out the rows whose other allele is wrong.
    joined = table.merge(design["bim"], left_on="rsID", right_on="ID", how="left")
    wrong_other = joined.eval(
        "effect_allele == ALT and other_allele != REF or effect_allele == REF and other_allele != ALT"
    )
    rows = table.loc[~wrong_other.to_numpy(), ["rsID", "effect_allele", "effect_weight"]]
    ref = _plink2(plink2_bin, design["prefix"], rows, tmp_path)
    assert (ref["DENOM"] == 2 * 135).all()
    for stat in ("SUM", "AVG"):
        np.testing.assert_allclose(result.scores[f"REAL_{stat}"], ref[f"SCORE1_{stat}"], rtol=1e-5)


def test_nonfounders_and_all_missing_variant_like_plink2(design, plink2_bin, tmp_path):
    """Frequencies come from founders only; a variant no founder has a call for is imputed with f = 0.5."""
    fileset = PlinkFileset(design["prefix"])
    g = design["g"].copy()
    g[:, 0] = np.nan
    g[:, 1][100:] = np.nan  # only nonfounders (rows < 100) have calls
    g[:5, 1] = np.nan
    fam = fileset.fam.assign(PAT=["dad"] * 100 + ["0"] * (N - 100))
    write_plink(tmp_path / "geno", g, fileset.bim, fam)
    rows = pd.DataFrame(
        {"ID": design["bim"]["ID"][:40], "A1": design["bim"]["REF"][:40], "W": np.arange(40) - 19.5}
    )
    pgs = rows.rename(columns={"ID": "rsID", "A1": "effect_allele", "W": "effect_weight"})
    path = write_pgs(tmp_path / "nf.txt", {"pgs_id": "NF"}, pgs)
    result = score(tmp_path / "geno", path, allow_ambiguous=True)
    ref = _plink2(plink2_bin, tmp_path / "geno", rows, tmp_path)
    np.testing.assert_allclose(result.scores["NF_SUM"], ref["SCORE1_SUM"], rtol=1e-5)
    np.testing.assert_allclose(result.scores["NF_AVG"], ref["SCORE1_AVG"], rtol=1e-5)


def test_dense_reference_chunking_and_parquet(design, tmp_path):
    """Without plink2: the streamed sparse result equals a dense numpy formula, for any chunk size."""
    out = tmp_path / "scores.parquet"
    result = score(design["prefix"], [design["a"], design["b"]], chunk_size=1, out=out)
    written = pd.read_parquet(out)
    assert list(written.columns) == [
        "IID",
        "FID",
        "PGS900001_SUM",
        "PGS900001_AVG",
        "PGS900002_SUM",
        "PGS900002_AVG",
    ]
    pd.testing.assert_frame_equal(written, result.scores)
    again = score(design["prefix"], [design["a"], design["b"]], chunk_size=4096)
    np.testing.assert_allclose(again.scores.iloc[:, 2:], result.scores.iloc[:, 2:], rtol=1e-12)
    g, bim = design["g"], design["bim"]
    index = design["truth"][("a", "id")]
    effect = read_scoring_file(design["a"]).variants.set_index("rsID").loc[bim["ID"].iloc[index]]
    flip = (effect["effect_allele"].to_numpy() == bim["REF"].iloc[index].to_numpy())[None, :]
    x = np.where(flip, 2 - g[:, index], g[:, index])
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    expected = x @ effect["effect_weight"].to_numpy()
    np.testing.assert_allclose(result.scores["PGS900001_SUM"], expected, rtol=1e-12)
    np.testing.assert_allclose(result.scores["PGS900001_AVG"], expected / 250, rtol=1e-12)


def test_no_variant_matched_is_an_error(design, tmp_path):
    rows = pd.DataFrame({"rsID": ["rsX1", "rsX2"], "effect_allele": "A", "effect_weight": ["0.1", "0.2"]})
    path = write_pgs(tmp_path / "none.txt", {"pgs_id": "NONE"}, rows)
    with pytest.raises(ScoreFileError, match=r"none.txt: no variant of NONE matched .*2 not found"):
        score(design["prefix"], [design["a"], path])


def test_repeated_pgs_id_and_mixed_builds_are_errors(design, tmp_path):
    with pytest.raises(ScoreFileError, match="PGS900001 is given by more than one"):
        score(design["prefix"], [design["a"], design["a"]])
    text = design["a"].read_text().replace("genome_build=GRCh38", "genome_build=GRCh37")
    other = tmp_path / "PGS900003.txt"
    other.write_text(text.replace("pgs_id=PGS900001", "pgs_id=PGS900003"))
    with pytest.raises(ScoreFileError, match="different genome builds"):
        score(design["prefix"], [design["b"], other], match="position")
    score(design["prefix"], [design["b"], other], match="id")  # builds do not matter for ID matching


def test_reads_header_and_gzip(design):
    sf = read_scoring_file(design["b"])
    assert (sf.pgs_id, sf.genome_build, sf.position_build, sf.harmonized) == (
        "PGS900002",
        "GRCh37",
        "GRCh38",
        True,
    )
    assert sf.header["format_version"] == "2.0"
    assert sf.variants["line"].iloc[0] == 8  # 6 header lines + the column line
    assert sf.variants["effect_weight"].dtype == np.float64 and sf.variants["hm_pos"].dtype == "Int64"


GOOD = "rsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\nrs1\t1\t100\tA\tG\t0.5\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#pgs_id PGS1\n" + GOOD, r"line 1: malformed header line"),
        ("#genome_build=hg99\n" + GOOD, r"unknown #genome_build='hg99'"),
        ("#format_version=1.0\n" + GOOD, r"format_version=1.0 is not supported"),
        ("#variants_number=5\n" + GOOD, r"variants_number=5 but the file has 1 variant rows; .*truncated"),
        ("#variants_number=1\n" + GOOD + "rs2\t1\t200\tA\tG\t0.1\n", r"has 2 variant rows; rows were added"),
        (
            "rsID\teffect_allele\tother_allele\nrs1\tA\tG\n",
            r"line 1: missing required column\(s\) effect_weight",
        ),
        ("effect_allele\teffect_weight\nA\t0.1\n", r"missing required column\(s\) rsID \(or chr_name"),
        (GOOD + "rs2\t1\t200\tA\tG\tbig\n", r"line 3: effect_weight 'big' is not a finite number"),
        (GOOD + "rs2\t1\t200\tA\tG\t\n", r"line 3: effect_weight '' is not a finite number"),
        (GOOD + "rs2\t1\tx200\tA\tG\t0.1\n", r"line 3: chr_position 'x200' is not a non-negative integer"),
        (GOOD + "rs1\t1\t100\tA\tG\t0.7\n", r"lines 2, 3: variant rs1 with effect allele A is duplicated"),
        (GOOD + "rs2\t1\t200\tA\t0.1\n", r"line 3: 5 tab-separated fields, expected 6"),
        ("#pgs_id=P\n", r"line 2: expected the tab-separated column line"),
        (
            GOOD.replace("effect_weight", "effect_weight\tis_interaction").replace("0.5", "0.5\tTrue"),
            "is_interaction",
        ),
    ],
)
def test_bad_scoring_files_raise_typed_errors(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ScoreFileError, match=message) as caught:
        read_scoring_file(path)
    assert str(path) in str(caught.value)


def test_not_reported_build_and_defaults(tmp_path):
    path = tmp_path / "custom_score.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("#genome_build=NR\n" + GOOD.replace("rs1\t1", "rs1\tchr1"))
    sf = read_scoring_file(path)
    assert (sf.pgs_id, sf.genome_build, sf.harmonized) == ("custom_score", None, False)
    with pytest.raises(ScoreFileError, match="file not found"):
        read_scoring_file(tmp_path / "missing.txt")


def test_chr_prefix_position_match_and_duplicates_after_matching(tmp_path):
    g = np.array([[0, 1], [2, 0], [1, 1]] * 15, dtype=np.float64)
    bim = pd.DataFrame(
        {"CHROM": ["1", "23"], "ID": ["a", "b"], "CM": 0.0, "POS": [100, 200], "ALT": "A", "REF": "G"}
    )
    write_plink(tmp_path / "g", g, bim)
    text = "#pgs_id=S\n#genome_build=GRCh38\nchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\n"
    text += "chr1\t100\tG\tA\t1.0\nchrX\t200\tA\tG\t0.5\n"
    (tmp_path / "s.txt").write_text(text)
    with pytest.warns(UserWarning, match="only 45 founders"):
        result = score(tmp_path / "g", tmp_path / "s.txt", match="position")
    np.testing.assert_allclose(result.scores["S_SUM"], (2 - g[:, 0]) + 0.5 * g[:, 1])
    (tmp_path / "s.txt").write_text(text + "1\t100\tA\tG\t2.0\n")
    with pytest.raises(ScoreFileError, match="lines 4 and 6 both match .bim variant a"):
        score(tmp_path / "g", tmp_path / "s.txt", match="position", nonfounders=True)
    write_plink(tmp_path / "g", g, bim.assign(ID="a", CHROM="1", POS=100))
    (tmp_path / "s.txt").write_text("rsID\teffect_allele\tother_allele\teffect_weight\na\tA\tG\t1\n")
    with pytest.raises(PlinkFormatError, match="line 2: the variant matches 2 .bim rows"):
        score(tmp_path / "g", tmp_path / "s.txt", nonfounders=True)


def test_dot_as_rsid_is_no_id_not_one_duplicated_variant(tmp_path):
    """Harmonised files write "." where no rsID is known: such rows are told apart by position."""
    from genetics.pgs_catalog import variant_ids

    path = tmp_path / "harmonised.txt"
    path.write_text(
        "rsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\thm_rsID\n"
        ".\t1\t100\tA\tG\t0.5\trs9\n"
        ".\t1\t200\tA\tG\t0.3\t.\n"
    )
    sf = read_scoring_file(path)  # used to fail: "variant . with effect allele A is duplicated"
    assert variant_ids(sf.variants).tolist() == ["rs9", ""]
