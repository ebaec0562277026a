"""``contig gwas`` end to end on data generated here: outputs, formats, QC flags, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gwas.runner
from contig.cli import cli
from tests.conftest import simulate_gwas_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return simulate_gwas_data(tmp_path_factory.mktemp("cli_gwas"), n=300, m=240, n_pheno=3)


def _gwas(data, out, *extra):
    args = [
        "gwas",
        "--bfile",
        str(data["prefix"]),
        "--pheno",
        str(data["pheno"]),
        "--covar",
        str(data["covar"]),
    ]
    return CliRunner().invoke(cli, [*args, "--out", str(out), "--quiet", *extra], catch_exceptions=False)


def test_outputs_and_plink2_format(data, tmp_path):
    result = _gwas(data, tmp_path / "run", "--format", "plink2", "--format", "gwas-ssf", "--chunk-size", "50")
    assert result.exit_code == 0, result.output
    assert "3 phenotype(s) × 240 variants" in result.output
    out = tmp_path / "run"
    sumstats = pd.read_parquet(out / "sumstats.parquet")
    assert list(sumstats.columns[:14]) == [
        "phenotype", "CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "OBS_CT", "BETA", "SE", "T_STAT",
        "P", "LOG10_P",
    ]  # fmt: skip
    assert len(sumstats) == 3 * 240
    glm = pd.read_csv(out / "feat0.glm.linear", sep="\t", na_values="NA")
    mine = sumstats[sumstats["phenotype"] == "feat0"].reset_index(drop=True)
    np.testing.assert_allclose(glm["BETA"], mine["BETA"], rtol=5e-6)
    assert list(glm.columns) == ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "TEST", "OBS_CT",
                                 "BETA", "SE", "T_STAT", "P", "ERRCODE"]  # fmt: skip
    ssf = pd.read_csv(out / "feat0.gwas-ssf.tsv", sep="\t", na_values="NA")
    assert list(ssf.columns[:4]) == ["chromosome", "base_pair_location", "effect_allele", "other_allele"]
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert summary.set_index("phenotype").loc["feat0", "n_p_below_5e-8"] >= 1  # planted rs10
    loci = pd.read_csv(out / "loci.tsv", sep="\t")
    assert "rs10" in set(loci["LEAD_ID"])
    assert (out / "manhattan_combined.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "run.json").read_text())["n_variants"] == 240
    assert not (out / "chunks").exists()


def test_qc_flags_restrict_variants_and_samples(data, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("".join(f"id{i} id{i}\n" for i in range(0, 300, 2)))
    result = _gwas(data, tmp_path / "qc", "--maf", "0.05", "--keep", str(keep), "--chr", "2", "--no-plots")
    assert result.exit_code == 0, result.output
    sumstats = pd.read_parquet(tmp_path / "qc" / "sumstats.parquet")
    assert set(sumstats["CHROM"]) == {"2"}
    assert sumstats["OBS_CT"].max() <= 150
    assert (sumstats["A1_FREQ"].clip(upper=None) > 0).all()


def _crash_on_the_fourth_chunk(monkeypatch):
    """Make the fourth computed chunk raise; returns the real ``compute_chunk``."""
    original = gwas.runner.compute_chunk
    calls = {"n": 0}

    def crash_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(gwas.runner, "compute_chunk", crash_on_fourth)
    return original


def test_resume_after_a_crash_gives_identical_bytes(data, tmp_path, monkeypatch):
    flags = ("--chunk-size", "40", "--no-plots", "--no-clump", "--threads", "1")
    reference = _gwas(data, tmp_path / "whole", *flags)
    assert reference.exit_code == 0
    original = _crash_on_the_fourth_chunk(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _gwas(data, tmp_path / "resumed", *flags)
    finished = sorted((tmp_path / "resumed" / "chunks").glob("chunk_*.npy"))
    # the chunk queued behind the failed one is cancelled, not computed
    assert [p.name for p in finished] == [f"chunk_{i:07d}.npy" for i in range(3)]
    assert not (tmp_path / "resumed" / "sumstats.parquet").exists()
    counting = {"n": 0}

    def count(*args, **kwargs):
        counting["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(gwas.runner, "compute_chunk", count)
    result = _gwas(data, tmp_path / "resumed", *flags, "--resume")
    assert result.exit_code == 0, result.output
    assert counting["n"] == 6 - 3  # only the unfinished chunks were computed
    whole = (tmp_path / "whole" / "sumstats.parquet").read_bytes()
    assert (tmp_path / "resumed" / "sumstats.parquet").read_bytes() == whole


def test_collinear_covariates_fail_with_one_line(data, tmp_path):
    covar = pd.read_csv(data["covar"], sep="\t")
    covar["age2"] = covar["age"]
    path = tmp_path / "covar.tsv"
    covar.to_csv(path, sep="\t", index=False)
    from contig.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["gwas", "--bfile", str(data["prefix"]), "--pheno", str(data["pheno"]), "--covar", str(path),
              "--out", str(tmp_path / "bad"), "--quiet"])  # fmt: skip
    assert exit_info.value.code != 0


def test_non_numeric_phenotype_names_file_and_column(data, tmp_path, capsys):
    pheno = pd.read_csv(data["pheno"], sep="\t")
    pheno["feat1"] = pheno["feat1"].astype(object)
    pheno.loc[5, "feat1"] = "high"
    path = tmp_path / "pheno.tsv"
    pheno.to_csv(path, sep="\t", index=False)
    from contig.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["gwas", "--bfile", str(data["prefix"]), "--pheno", str(path), "--out", str(tmp_path / "bad"),
              "--quiet"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "pheno.tsv" in err and "'feat1'" in err and "'high'" in err
    assert not (tmp_path / "bad" / "sumstats.parquet").exists()


def test_constant_phenotype_is_skipped_and_reported(data, tmp_path):
    pheno = pd.read_csv(data["pheno"], sep="\t")
    pheno["flat"] = 1.0
    path = tmp_path / "pheno.tsv"
    pheno.to_csv(path, sep="\t", index=False)
    with pytest.warns(UserWarning, match="'flat' skipped: constant"):
        result = CliRunner().invoke(
            cli,
            ["gwas", "--bfile", str(data["prefix"]), "--pheno", str(path), "--out", str(tmp_path / "c"),
             "--quiet", "--no-plots", "--no-clump"],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 0
    summary = pd.read_csv(tmp_path / "c" / "summary.tsv", sep="\t").set_index("phenotype")
    assert summary.loc["flat", "status"].startswith("skipped: constant")


def test_kill_minus_9_then_resume_gives_identical_bytes(tmp_path):
    """A real SIGKILL mid-run, then --resume: finished chunks are reused and the final file is identical."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = simulate_gwas_data(tmp_path, n=1500, m=6000, n_pheno=8, seed=5)
    args = [sys.executable, "-m", "contig", "gwas", "--bfile", str(data["prefix"]), "--pheno", str(data["pheno"]),
            "--covar", str(data["covar"]), "--chunk-size", "100", "--no-plots", "--no-clump", "--quiet"]  # fmt: skip
    whole = subprocess.run([*args, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(list((out / "chunks").glob("chunk_*.npy"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list((out / "chunks").glob("chunk_*.npy")))
    if (out / "sumstats.parquet").exists() or finished >= 60:
        pytest.skip("the run finished before it could be killed (machine much faster than expected)")
    assert finished >= 5
    from gwas.chunk import ChunkStats

    for chunk in (out / "chunks").glob("chunk_*.npy"):  # every file that looks finished is complete
        assert ChunkStats.load(chunk).beta.shape == (8, 100)
    resumed = subprocess.run([*args, "--out", str(out), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.rglob("*.tmp"))  # the killed run's partial temporary file was cleaned up
    assert (out / "sumstats.parquet").read_bytes() == (tmp_path / "whole" / "sumstats.parquet").read_bytes()


def test_phenotype_explained_by_covariates_is_skipped(data, tmp_path):
    pheno = pd.read_csv(data["pheno"], sep="\t")
    covar = pd.read_csv(data["covar"], sep="\t")
    pheno["age_again"] = pd.to_numeric(covar["age"], errors="coerce") * 2.0 + 1.0
    path = tmp_path / "pheno.tsv"
    pheno.to_csv(path, sep="\t", index=False, na_rep="NA")
    with pytest.warns(UserWarning, match="'age_again' skipped: explained exactly by the covariates"):
        result = CliRunner().invoke(
            cli,
            ["gwas", "--bfile", str(data["prefix"]), "--pheno", str(path), "--covar", str(data["covar"]),
             "--out", str(tmp_path / "e"), "--quiet", "--no-plots", "--no-clump"],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 0
    sumstats = pd.read_parquet(tmp_path / "e" / "sumstats.parquet")
    assert "age_again" not in set(sumstats["phenotype"]) and np.isfinite(sumstats["LOG10_P"]).any()


def test_a_rerun_into_the_same_folder_leaves_no_plot_of_the_earlier_run(data, tmp_path):
    out = tmp_path / "gwas"
    assert _gwas(data, out).exit_code == 0
    before = {p.name for p in out.glob("*.png")}
    first = sorted(n for n in before if n.startswith("qq_"))[0].removeprefix("qq_").removesuffix(".png")
    others = [
        n.removeprefix("qq_").removesuffix(".png") for n in before if n.startswith("qq_") and first not in n
    ]
    assert others, before
    refused = _gwas(data, out, "--pheno-name", first)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert {p.name for p in out.glob("*.png")} == before  # refused before anything was touched
    assert _gwas(data, out, "--pheno-name", first, "--overwrite").exit_code == 0
    after = {p.name for p in out.glob("*.png")}
    assert f"qq_{first}.png" in after and not any(other in name for other in others for name in after)


def test_resume_with_other_options_is_refused_not_silently_restarted(data, tmp_path, monkeypatch):
    from genetics.errors import GeneticsError

    flags = ("--chunk-size", "40", "--no-plots", "--no-clump", "--threads", "1")
    original = _crash_on_the_fourth_chunk(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _gwas(data, out, *flags)
    monkeypatch.setattr(gwas.runner, "compute_chunk", original)
    journal = sorted((out / "chunks").glob("chunk_*.npy"))
    assert journal
    with pytest.raises(GeneticsError, match="--resume continues only the same command"):
        _gwas(data, out, *flags, "--maf", "0.2", "--resume")
    assert sorted((out / "chunks").glob("chunk_*.npy")) == journal  # the journal is kept


def test_the_library_call_gives_the_command_s_bytes(data, tmp_path):
    """One run_gwas call reproduces `contig gwas` with QC and phenotype preparation, byte for byte."""
    from genetics.qc import QCConfig
    from gwas.pipeline import ClumpConfig, PreparationConfig, run_gwas
    from gwas.runner import GwasConfig

    flags = ("--maf", "0.05", "--geno", "0.1", "--pheno-pca", "2", "--pheno-residualize", "--threads", "1")
    assert _gwas(data, tmp_path / "cli", *flags).exit_code == 0
    run_gwas(
        str(data["prefix"]),
        str(data["pheno"]),
        tmp_path / "library",
        covar=str(data["covar"]),
        options=GwasConfig(threads=1, progress=False),
        clump=ClumpConfig(),
        qc=QCConfig(maf=0.05, geno=0.1),
        preparation=PreparationConfig(pca_components=2, residualize_covariates=True),
    )
    for name in ("sumstats.parquet", "summary.tsv", "loci.tsv", "manhattan_PC1.png", "qq_PC2.png"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "library" / name).read_bytes(), name
