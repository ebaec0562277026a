"""`contig burden` end to end on simulated rare variants, through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from click.testing import CliRunner

from contig.cli.burden import command
from genetics.burden_inputs import read_annotations
from genetics.plink import write_plink


def simulate(directory: Path) -> None:
    """200 people × 60 rare variants (MAF 0.0005-0.02, 1% missing) in 12 genes; masks over pLoF/missense."""
    rng = np.random.default_rng(3)
    n, m = 200, 60
    aaf = np.exp(rng.uniform(np.log(0.0005), np.log(0.02), m))
    dosage = rng.binomial(2, aaf, size=(n, m)).astype(np.float32)
    dosage[rng.random(dosage.shape) < 0.01] = np.nan
    write_plink(directory / "geno", dosage)
    annots = ("pLoF", "missense", "synonymous")
    lines = [f"1:{j + 1}\tG{j // 5}\t{annots[j % 3]}\t{0.5 + j % 4}\n" for j in range(m)]
    (directory / "anno.txt").write_text("".join(lines))
    (directory / "masks.txt").write_text("Mask1 pLoF\nMask2 pLoF,missense\n")


def run(*args: str):
    return CliRunner().invoke(command, list(args))


def test_burden_command(tmp_path):
    simulate(tmp_path)
    out = tmp_path / "out" / "burdens.parquet"
    common = ["--bfile", str(tmp_path / "geno"), "--anno", str(tmp_path / "anno.txt")]
    result = run(
        *common, "--masks", str(tmp_path / "masks.txt"), "--out", str(out), "--aaf-bins", "0.01,0.001"
    )
    assert result.exit_code == 0, result.output
    assert "genes, 2 masks" in result.stdout and "people carry a qualifying variant" in result.stdout
    table = pl.read_parquet(out)
    assert table.columns == ["FID", "IID", "gene", "mask", "aaf_bin", "burden"]
    assert table.height > 0 and set(table["mask"]) == {"Mask1", "Mask2"}
    assert set(table["burden"].unique()) <= {1.0, 2.0}  # max rule, no weights

    wide = tmp_path / "wide.parquet"
    args = ["--masks", str(tmp_path / "masks.txt"), "--out", str(wide), "--rule", "sum", "--beta-weights"]
    result = run(*common, *args, "--anno-weights", "--layout", "wide", "--min-carriers", "2")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(wide)
    assert (
        frame.height == 200
        and frame.width > 2
        and (frame.drop("FID", "IID").to_numpy() > 0).sum(axis=0).min() >= 2
    )


def test_burden_help_has_example():
    result = run("--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and "contig burden --bfile" in result.output


def test_burden_bad_input_exits_nonzero(tmp_path):
    simulate(tmp_path)
    (tmp_path / "bad_masks.txt").write_text("Mask1 pLoF\nMask2 pLoF,misense\n")
    out = tmp_path / "never.parquet"
    result = run(
        "--bfile", str(tmp_path / "geno"), "--anno", str(tmp_path / "anno.txt"),
        "--masks", str(tmp_path / "bad_masks.txt"), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code != 0 and not out.exists()
    message = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(message) == 1 and "'misense'" in message[0] and "bad_masks.txt: line 2" in message[0]

    (tmp_path / "partial.txt").write_text("1:1 G0 pLoF\n1:2 G0 missense\nrs999 G0 pLoF\n")
    assert read_annotations(tmp_path / "partial.txt").table.shape[0] == 3
    result = run(
        "--bfile", str(tmp_path / "geno"), "--anno", str(tmp_path / "partial.txt"),
        "--masks", str(tmp_path / "masks.txt"), "--out", str(out), "--aaf-bins", "all", "--min-carriers", "0",
    )  # fmt: skip
    assert "warning:" in result.stderr and "1 of 3 annotation row(s)" in result.stderr

    result = run("--bfile", str(tmp_path / "nope"), "--anno", "a", "--masks", "b", "--out", str(out))
    assert result.exit_code != 0 and "file not found" in result.stderr
