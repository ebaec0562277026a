"""`contig pgs` end to end on simulated genotypes and PGS Catalog files, through click's CliRunner."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from contig.cli.pgs import command
from genetics.plink import write_plink

HEADER = "###PGS CATALOG SCORING FILE\n#format_version=2.0\n#pgs_id={}\n#genome_build=GRCh38\n"
COLUMNS = "rsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\n"


def simulate(directory: Path) -> dict[str, Path]:
    """120 people × 80 variants (1% missing); one plain and one gzipped scoring file, some rows absent."""
    rng = np.random.default_rng(5)
    n, m = 120, 80
    g = rng.binomial(2, rng.uniform(0.1, 0.9, m), size=(n, m)).astype(np.float32)
    g[rng.random(g.shape) < 0.01] = np.nan
    bim = pd.DataFrame(
        {"CHROM": "1", "ID": [f"rs{i}" for i in range(m)], "CM": 0.0, "POS": np.arange(m) * 10 + 5}
    ).assign(ALT=rng.choice(["A", "C"], m))
    bim["REF"] = bim["ALT"].map({"A": "G", "C": "T"})  # no strand-ambiguous pair
    write_plink(directory / "geno", g, bim)
    paths = {}
    for k, (pgs_id, rows) in enumerate((("PGS1", range(0, 40)), ("PGS2", range(30, 80, 2)))):
        lines = [
            f"{bim.ID[j]}\t1\t{bim.POS[j]}\t{bim.ALT[j]}\t{bim.REF[j]}\t{rng.normal():.4f}\n" for j in rows
        ]
        lines.append("rs_absent\t1\t999999\tA\tG\t0.3\n")
        text = HEADER.format(pgs_id) + COLUMNS + "".join(lines)
        path = directory / (f"{pgs_id}.txt" if k == 0 else f"{pgs_id}.txt.gz")
        if k == 0:
            path.write_text(text)
        else:
            with gzip.open(path, "wt") as handle:
                handle.write(text)
        paths[pgs_id] = path
    return paths


def run(*args: str):
    return CliRunner().invoke(command, [str(a) for a in args])


def test_pgs_command_writes_scores_and_prints_report(tmp_path):
    paths = simulate(tmp_path)
    out = tmp_path / "out" / "scores.parquet"
    common = ["--bfile", tmp_path / "geno", "--score", paths["PGS1"], "--score", paths["PGS2"], "--out", out]
    result = run(*common)
    assert result.exit_code == 0, result.output
    assert "pgs_id" in result.stdout and "not_found" in result.stdout and "PGS2" in result.stdout
    assert "Wrote 2 score(s) for 120 samples" in result.stdout
    table = pd.read_parquet(out)
    assert list(table.columns) == ["IID", "FID", "PGS1_SUM", "PGS1_AVG", "PGS2_SUM", "PGS2_AVG"]
    assert len(table) == 120 and np.isfinite(table.iloc[:, 2:].to_numpy()).all()
    np.testing.assert_allclose(table["PGS1_AVG"], table["PGS1_SUM"] / 80)  # 40 matched variants

    by_position = run(*common, "--match", "position", "--allow-ambiguous")
    assert by_position.exit_code == 0, by_position.output
    np.testing.assert_allclose(pd.read_parquet(out)["PGS2_SUM"], table["PGS2_SUM"], rtol=1e-12)


def test_pgs_command_bad_input_exits_with_one_line_reason(tmp_path):
    paths = simulate(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text(COLUMNS + "rs1\t1\t15\tA\tG\tnot-a-number\n")
    result = run("--bfile", tmp_path / "geno", "--score", bad, "--out", tmp_path / "s.parquet")
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "line 2: effect_weight 'not-a-number'" in result.stderr
    assert not (tmp_path / "s.parquet").exists()

    missing = run("--bfile", tmp_path / "nowhere", "--score", paths["PGS1"], "--out", tmp_path / "s.parquet")
    assert missing.exit_code != 0 and "nowhere.bed: file not found" in missing.stderr

    unmatched = tmp_path / "unmatched.txt"
    unmatched.write_text(COLUMNS + "rsX\t1\t15\tA\tG\t0.1\n")
    result = run("--bfile", tmp_path / "geno", "--score", unmatched, "--out", tmp_path / "s.parquet")
    assert result.exit_code != 0 and "no variant of unmatched matched" in result.stderr


def test_pgs_help_has_example():
    result = run("--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and "contig pgs --bfile" in result.output
