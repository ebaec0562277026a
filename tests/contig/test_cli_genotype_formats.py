"""`contig gwas`, `contig pgs` and `contig burden` on --pfile and --bgen/--sample/--bgen-ref inputs, and the
one-line errors for a wrong combination of genotype flags. Numbers are checked against plink2 in
tests/gwas/test_vs_plink2_dosage.py; here the commands run end to end and agree across formats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contig.cli import main
from genetics.pgen import PgenFileset
from tests.conftest import run_binary

N, M = 150, 40


@pytest.fixture(scope="module")
def files(tmp_path_factory, plink2_bin):
    folder = tmp_path_factory.mktemp("cli_formats")
    common = ["--threads", "1", "--seed", "2"]
    run_binary(
        [plink2_bin, "--dummy", str(N), str(M), "0.02", "dosage-freq=0.5", "acgt", "--make-pgen", "--out", "d",
         *common],
        folder,
    )  # fmt: skip
    run_binary([plink2_bin, "--pfile", "d", "--export", "bgen-1.2", "bits=8", "--out", "d", *common], folder)
    pgen = PgenFileset(folder / "d")
    rng = np.random.default_rng(1)
    iids = pgen.fam["IID"].to_numpy()
    pd.DataFrame({"IID": iids, "f0": rng.normal(size=N), "f1": rng.normal(size=N)}).to_csv(
        folder / "pheno.tsv", sep="\t", index=False
    )
    bim = pgen.bim.iloc[:10]
    rows = [f"{i}\t{c}\t{p}\t{a}\t{r}\t{w:.4f}" for i, c, p, a, r, w in
            zip(bim.ID, bim.CHROM, bim.POS, bim.ALT, bim.REF, rng.normal(size=10), strict=True)]  # fmt: skip
    header = "###PGS CATALOG SCORING FILE\n#format_version=2.0\n#pgs_id=PGS1\n#genome_build=NR\n"
    columns = "rsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\n"
    (folder / "score.txt").write_text(header + columns + "\n".join(rows) + "\n")
    (folder / "anno.txt").write_text(
        "".join(f"{i} GENE{k % 3} pLoF\n" for k, i in enumerate(pgen.bim.ID[:12]))
    )
    (folder / "masks.txt").write_text("Mask1 pLoF\n")
    return folder


def _inputs(folder, source: str) -> list[str]:
    if source == "pfile":
        return ["--pfile", str(folder / "d")]
    return ["--bgen", str(folder / "d.bgen"), "--sample", str(folder / "d.sample"), "--bgen-ref", "ref-last"]


def test_gwas_pgs_burden_agree_between_pfile_and_bgen(files, tmp_path):
    tables = {}
    for source in ("pfile", "bgen"):
        out = tmp_path / source
        main(["gwas", *_inputs(files, source), "--pheno", str(files / "pheno.tsv"), "--out", str(out / "gwas"),
              "--no-plots", "--no-clump", "--quiet"])  # fmt: skip
        main(["pgs", *_inputs(files, source), "--score", str(files / "score.txt"), "--allow-ambiguous",
              "--out", str(out / "pgs.parquet")])  # fmt: skip
        main(["burden", *_inputs(files, source), "--anno", str(files / "anno.txt"), "--masks",
              str(files / "masks.txt"), "--aaf-bins", "all", "--rule", "sum", "--layout", "wide",
              "--out", str(out / "burden.parquet")])  # fmt: skip
        tables[source] = [
            pd.read_parquet(out / "gwas" / "sumstats.parquet"),
            pd.read_parquet(out / "pgs.parquet"),
            pd.read_parquet(out / "burden.parquet"),
        ]
    (gwas_p, pgs_p, burden_p), (gwas_b, pgs_b, burden_b) = tables["pfile"], tables["bgen"]
    assert len(gwas_p) == 2 * M and (gwas_p["ID"].to_numpy() == gwas_b["ID"].to_numpy()).all()
    np.testing.assert_allclose(gwas_p["BETA"], gwas_b["BETA"], atol=0.05)  # 8-bit BGEN vs 1/16384 .pgen
    np.testing.assert_allclose(pgs_p["PGS1_SUM"], pgs_b["PGS1_SUM"], atol=0.05)
    numeric = burden_p.select_dtypes("number").columns
    assert len(numeric) == 3
    np.testing.assert_allclose(burden_p[numeric], burden_b[numeric], atol=0.05)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give exactly one genotype input"),
        (["--pfile", "x", "--bfile", "y"], "give exactly one genotype input"),
        (["--pfile", "x", "--sample", "s"], "--sample and --bgen-ref go with --bgen"),
        (["--bgen", "x.bgen"], "--bgen needs --bgen-ref"),
        (["--pfile", "missing"], r"missing\.pgen: file not found; --pfile expects PREFIX"),
    ],
)
def test_genotype_flag_errors_are_one_line(files, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["pgs", *args, "--score", str(files / "score.txt"), "--out", str(tmp_path / "s.parquet")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert pd.Series([err]).str.contains(message).item(), err


def test_resume_with_the_other_bgen_allele_order_is_refused(files, tmp_path, monkeypatch, capsys):
    """--bgen-ref flips every dosage of the same files: a journal made the other way must not be reused."""
    import gwas.runner

    original, calls = gwas.runner.compute_chunk, {"n": 0}

    def crash_on_the_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    out = tmp_path / "gwas"
    args = ["gwas", "--bgen", str(files / "d.bgen"), "--sample", str(files / "d.sample"), "--chunk-size", "8",
            "--threads", "1", "--pheno", str(files / "pheno.tsv"), "--out", str(out), "--no-plots", "--no-clump",
            "--quiet"]  # fmt: skip
    monkeypatch.setattr(gwas.runner, "compute_chunk", crash_on_the_third_chunk)
    with pytest.raises(SystemExit):
        main([*args, "--bgen-ref", "ref-last"])
    monkeypatch.setattr(gwas.runner, "compute_chunk", original)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*args, "--bgen-ref", "ref-first", "--resume"])
    assert stop.value.code == 2 and "--resume continues only the same command" in capsys.readouterr().err
