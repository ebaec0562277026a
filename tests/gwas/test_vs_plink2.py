"""contig gwas against plink2 --glm on simulated genotypes with missing calls, NA phenotypes and a
categorical covariate.

plink2 prints 6 significant digits, so a row can only be compared to the half-unit of the last digit it
prints; the test demands agreement to max(1e-6, that half-unit) in LOG10_P and identical text after
rounding for P in all but boundary cases (1e-8 of slack covers plink2's own arithmetic). Full-precision agreement is checked against statsmodels in
test_kernel.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genetics.plink import PlinkFileset
from gwas.runner import GwasConfig, prepare, run_chunks
from tests.conftest import run_binary, simulate_gwas_data


def _print_halfulp_log10(p: np.ndarray) -> np.ndarray:
    """Largest |Δ log10| that 6-significant-digit printing of p can cause."""
    with np.errstate(divide="ignore"):
        mantissa = p / 10.0 ** np.floor(np.log10(p))
    return np.log10(1 + 0.5e-5 / mantissa)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, plink2_bin):
    folder = tmp_path_factory.mktemp("gwas_vs_plink2")
    data = simulate_gwas_data(folder, n=500, m=400, n_pheno=8)
    run_binary(
        [
            plink2_bin,
            "--bfile", str(data["prefix"]),
            "--pheno", str(data["pheno"]),
            "--covar", str(data["covar"]),
            "--glm", "hide-covar", "omit-ref", "cols=+a1freq",
            "--threads", "2",
            "--out", str(folder / "plink2"),
        ],
        folder,
    )  # fmt: skip
    return folder, data


@pytest.mark.parametrize("chunk_size", [64, 4096])
def test_drop_mode_equals_plink2(simulated, chunk_size):
    folder, data = simulated
    options = GwasConfig(progress=False, chunk_size=chunk_size)
    prepared = prepare(PlinkFileset(data["prefix"]), data["pheno"], data["covar"], options)
    run = run_chunks(prepared, folder / f"contig_{chunk_size}", options)
    ours = pd.read_parquet(run.sumstats)
    assert sorted(ours["phenotype"].unique()) == [f"feat{j}" for j in range(8)]
    worst = 0.0
    for phenotype, mine in ours.groupby("phenotype", sort=False):
        theirs = pd.read_csv(folder / f"plink2.{phenotype}.glm.linear", sep="\t", na_values="NA")
        mine = mine.reset_index(drop=True)
        assert list(theirs["ID"]) == list(mine["ID"])
        assert (theirs["A1"] == mine["A1"]).all()
        np.testing.assert_array_equal(theirs["OBS_CT"], mine["OBS_CT"])
        assert list(theirs["ERRCODE"]) == list(mine["ERRCODE"])
        ok = theirs["ERRCODE"] == "."
        np.testing.assert_allclose(theirs["A1_FREQ"], mine["A1_FREQ"], atol=5e-7, rtol=5e-6)
        for column in ("BETA", "SE", "T_STAT"):
            np.testing.assert_allclose(theirs.loc[ok, column], mine.loc[ok, column], rtol=5.1e-6, atol=1e-300)
        delta = np.abs(-np.log10(theirs.loc[ok, "P"].to_numpy()) - mine.loc[ok, "LOG10_P"].to_numpy())
        # 1e-8 of slack for plink2's own arithmetic (it solves each regression separately).
        allowed = np.maximum(1e-6, _print_halfulp_log10(theirs.loc[ok, "P"].to_numpy())) + 1e-8
        assert np.all(delta <= allowed), f"{phenotype}: max excess {np.max(delta - allowed)}"
        printed = mine.loc[ok, "P"].map(lambda v: float(f"{v:.6g}"))
        assert (printed.to_numpy() == theirs.loc[ok, "P"].to_numpy()).mean() > 0.99
        worst = max(worst, float(delta.max()))
    assert worst < 3e-6
    assert ours.query("ID == 'rs10' and phenotype == 'feat0'")["LOG10_P"].item() > 10  # planted effect found


def test_missing_genotype_mean_mode_uses_all_samples(simulated):
    folder, data = simulated
    options = GwasConfig(progress=False, missing_genotype="mean")
    prepared = prepare(PlinkFileset(data["prefix"]), data["pheno"], data["covar"], options)
    run = run_chunks(prepared, folder / "contig_mean", options)
    ours = pd.read_parquet(run.sumstats)
    first = ours[ours["phenotype"] == "feat0"]
    assert first["OBS_CT"].nunique() == 1  # every variant: the phenotype's complete samples
    assert (ours["ERRCODE"] != ".").sum() == 2 * 8  # monomorphic + all-missing variants, every phenotype
