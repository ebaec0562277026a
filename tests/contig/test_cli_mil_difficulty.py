"""`contig mil simulate --difficulty`: the default draws what it always drew; hard adds lesion mimics."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from contig.cli.mil import command
from imaging.synthetic.bitewing import LABEL_COLUMNS


def test_simulate_difficulty_hard_adds_mimics_and_easy_is_the_default(tmp_path):
    runner = CliRunner()
    base = ["simulate", "--n", "6", "--height", "32", "--width", "64", "--seed", "2"]
    for name, extra in (
        ("default", []),
        ("easy", ["--difficulty", "easy"]),
        ("hard", ["--difficulty", "hard"]),
    ):
        result = runner.invoke(command, [*base, "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    default, easy = (pd.read_csv(tmp_path / n / "labels.csv") for n in ("default", "easy"))
    assert list(default.columns) == list(LABEL_COLUMNS) and default.equals(easy)
    for image in default["image"]:
        assert (tmp_path / "default" / image).read_bytes() == (tmp_path / "easy" / image).read_bytes()
    hard = pd.read_csv(tmp_path / "hard" / "labels.csv")
    assert (hard["n_mimics"] >= 1).all()
    bad = runner.invoke(command, [*base, "--out", str(tmp_path / "bad"), "--difficulty", "extreme"])
    assert bad.exit_code != 0
