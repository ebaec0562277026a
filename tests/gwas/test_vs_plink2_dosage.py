"""GWAS and polygenic scores on dosages (.pgen, 8-bit BGEN) against plink2 --glm and --score on the same files.

Data: ``plink2 --dummy ... dosage-freq=0.5 --make-pgen`` (half the calls are fractional dosages, with missing
calls), exported with ``--export bgen-1.2 bits=8``; phenotypes with a planted dosage effect and a covariate.

Tolerances: every LOG10_P within plink2's printed precision (6 significant digits, as in
test_vs_plink2.py). On the BGEN this holds because contig rounds each expected count to plink2's 1/16384
dosage unit exactly as plink2 --bgen imports it (tests/genetics/test_pgen_bgen.py checks every 8-bit pair).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genetics.bgen import BgenFileset
from genetics.pgen import PgenFileset
from genetics.pgs import score
from gwas.runner import GwasConfig, prepare, run_chunks
from tests.conftest import run_binary

N, M, P = 400, 150, 3
GLM = ["--glm", "hide-covar", "omit-ref", "cols=+a1freq", "--threads", "1"]


def _printed_halfulp_log10(p: np.ndarray) -> np.ndarray:
    """Largest |Δ log10| that 6-significant-digit printing of p can cause."""
    mantissa = p / 10.0 ** np.floor(np.log10(p))
    return np.log10(1 + 0.5e-5 / mantissa)


@pytest.fixture(scope="module")
def data(tmp_path_factory, plink2_bin):
    folder = tmp_path_factory.mktemp("dosage_vs_plink2")
    common = ["--threads", "1", "--seed", "3"]
    run_binary(
        [plink2_bin, "--dummy", str(N), str(M), "0.02", "dosage-freq=0.5", "acgt", "--make-pgen", "--out", "d",
         *common],
        folder,
    )  # fmt: skip
    run_binary([plink2_bin, "--pfile", "d", "--export", "bgen-1.2", "bits=8", "--out", "d", *common], folder)
    pgen = PgenFileset(folder / "d")
    rng = np.random.default_rng(5)
    dosage = pgen.read()
    filled = np.where(np.isnan(dosage), np.nanmean(dosage, axis=0), dosage)
    age = rng.normal(50, 10, N)
    y = rng.normal(size=(N, P)) + 0.03 * age[:, None]
    y[:, 0] += 0.8 * filled[:, 10]
    y[rng.random(y.shape) < 0.03] = np.nan
    iids = pgen.fam["IID"].to_numpy()
    pheno = pd.DataFrame({"#IID": iids, **{f"y{j}": y[:, j] for j in range(P)}})
    pheno.to_csv(folder / "pheno.txt", sep="\t", index=False, na_rep="NA", float_format="%.8g")
    pd.DataFrame({"#IID": iids, "age": age}).to_csv(folder / "covar.txt", sep="\t", index=False)
    flags = ["--pheno", "pheno.txt", "--pheno-name", *[f"y{j}" for j in range(P)], "--covar", "covar.txt"]
    run_binary([plink2_bin, "--pfile", "d", *flags, *GLM, "--out", "pgen"], folder)
    bgen = ["--bgen", "d.bgen", "ref-last", "--sample", "d.sample"]
    run_binary([plink2_bin, *bgen, *flags, *GLM, "--out", "bgen"], folder)
    return folder


def _compare(folder, reader, tag: str) -> list[np.ndarray]:
    """Run contig's GWAS on ``reader``; per phenotype, |Δ LOG10_P| / printed half-unit for OK rows."""
    options = GwasConfig(progress=False, chunk_size=64)
    prepared = prepare(reader, folder / "pheno.txt", folder / "covar.txt", options)
    ours = pd.read_parquet(run_chunks(prepared, folder / f"contig_{tag}", options).sumstats)
    ratios = []
    for phenotype, mine in ours.groupby("phenotype", sort=False):
        theirs = pd.read_csv(folder / f"{tag}.{phenotype}.glm.linear", sep="\t", na_values="NA")
        mine = mine.reset_index(drop=True)
        assert list(theirs["ID"]) == list(mine["ID"])
        assert list(theirs["A1"]) == list(mine["A1"]) == list(mine["ALT"])
        np.testing.assert_array_equal(theirs["OBS_CT"], mine["OBS_CT"])
        assert list(theirs["ERRCODE"]) == list(mine["ERRCODE"])
        ok = (theirs["ERRCODE"] == ".").to_numpy()
        np.testing.assert_allclose(theirs["A1_FREQ"], mine["A1_FREQ"], atol=5e-6)
        p = theirs.loc[ok, "P"].to_numpy()
        delta = np.abs(-np.log10(p) - mine.loc[ok, "LOG10_P"].to_numpy())
        ratios.append(delta / (np.maximum(1e-6, _printed_halfulp_log10(p)) + 1e-8))
    assert ours.query("ID == @ours.ID.iloc[10] and phenotype == 'y0'")["LOG10_P"].item() > 10  # planted
    return ratios


@pytest.mark.parametrize("source", ["pgen", "bgen"])
def test_gwas_on_dosages_equals_plink2_glm(data, source):
    if source == "pgen":
        reader = PgenFileset(data / "d")
    else:
        reader = BgenFileset(data / "d.bgen", data / "d.sample", "ref-last")
    for ratio in _compare(data, reader, source):
        # 1% over the half-unit for plink2's own arithmetic (it solves each variant's regression alone)
        assert np.all(ratio <= 1.01), f"|Δ LOG10_P| / plink2's printed precision up to {ratio.max()}"


def _write_score(path, rows: pd.DataFrame) -> None:
    header = ["###PGS CATALOG SCORING FILE", "#format_version=2.0", "#pgs_id=PGS900100", "#genome_build=NR"]
    lines = (
        header + ["\t".join(rows.columns)] + ["\t".join(map(str, r)) for r in rows.itertuples(index=False)]
    )
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("source", ["pgen", "bgen"])
def test_pgs_on_dosages_equals_plink2_score(data, plink2_bin, tmp_path, source):
    """SUM and AVG on dosages, missing dosages mean-imputed from founder frequencies, as plink2 --score."""
    pgen = PgenFileset(data / "d")
    rng = np.random.default_rng(8)
    chosen = np.sort(rng.choice(M, 80, replace=False))
    bim = pgen.bim.iloc[chosen]
    flip = rng.random(chosen.size) < 0.4
    rows = pd.DataFrame(
        {
            "rsID": bim["ID"].to_numpy(),
            "chr_name": bim["CHROM"].to_numpy(),
            "chr_position": bim["POS"].to_numpy(),
            "effect_allele": np.where(flip, bim["REF"], bim["ALT"]),
            "other_allele": np.where(flip, bim["ALT"], bim["REF"]),
            "effect_weight": [f"{w:.6g}" for w in rng.normal(0, 0.1, chosen.size)],
        }
    )
    _write_score(tmp_path / "score.txt", rows)
    rows[["rsID", "effect_allele", "effect_weight"]].to_csv(
        tmp_path / "plink2_score.txt", sep="\t", index=False
    )
    if source == "pgen":
        reader, genotypes = pgen, ["--pfile", str(data / "d")]
    else:
        reader = BgenFileset(data / "d.bgen", data / "d.sample", "ref-last")
        genotypes = ["--bgen", str(data / "d.bgen"), "ref-last", "--sample", str(data / "d.sample")]
    result = score(reader, tmp_path / "score.txt", allow_ambiguous=True)
    assert result.report.loc[0, "matched"] == chosen.size
    assert np.isnan(reader.read(chosen)).any()  # imputation is exercised
    run_binary(
        [plink2_bin, *genotypes, "--score", "plink2_score.txt", "1", "2", "3", "header",
         "cols=+scoresums,+denom", "--threads", "1", "--out", "ref"],
        tmp_path,
    )  # fmt: skip
    ref = pd.read_csv(tmp_path / "ref.sscore", sep="\t")
    assert ref["#IID"].tolist() == result.scores["IID"].tolist()
    for stat in ("SUM", "AVG"):
        # plink2 prints 6 significant digits; atol covers sums that cancel to near 0
        np.testing.assert_allclose(
            result.scores[f"PGS900100_{stat}"], ref[f"SCORE1_{stat}"], rtol=1e-5, atol=2e-6
        )
