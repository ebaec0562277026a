"""`contig benchmark` through click's CliRunner on a tiny label folder written by the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from contig.cli.benchmark import command
from imaging.io import write_png


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 people with one 16-px grey image each; class 1 images have a bright square."""
    root = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label = i % 2
        image = rng.integers(0, 60, size=(16, 16)).astype(np.uint8)
        if label:
            image[4:12, 4:12] = 220
        write_png(root / "images" / f"p{i}.png", image)
        split = "test" if i >= 16 else "train"
        rows.append({"IID": f"p{i}", "image": f"images/p{i}.png", "finding": label, "split": split})
    (root / "downstream").mkdir()
    pd.DataFrame(rows).to_parquet(root / "downstream" / "labels.parquet")
    return root


def _ok(result) -> None:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def test_benchmark_command_writes_results(folder, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text(
        "tasks: [{target: finding, kind: binary}]\n"
        "methods: [{name: tiny, source: 'timm:test_efficientnet'}]\n"
        "protocols: [linear, finetune]\n"
        "fractions: [0.5, 1.0]\n"
    )
    args = ["--config", str(config), "--data", str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"]
    args += ["--quiet", "seeds=[0]", "n_boot=30", "finetune_steps=1", "probe_c=1.0"]
    result = CliRunner().invoke(command, args)
    _ok(result)
    assert "wrote 4 result rows" in result.output
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert sorted(table["protocol"].unique()) == ["finetune", "linear"]
    assert table["n_train"].tolist() == [8, 16, 8, 16] or sorted(table["n_train"]) == [8, 8, 16, 16]
    assert (tmp_path / "out" / "finding.png").is_file() and (tmp_path / "out" / "config.yaml").is_file()


def test_benchmark_command_reports_bad_input_in_one_line(folder, tmp_path):
    result = CliRunner().invoke(command, ["--data", str(folder), "--out", str(tmp_path), "lrr=1"])
    assert result.exit_code != 0 and "unknown key 'lrr'" in result.output
    result = CliRunner().invoke(
        command, ["--data", str(folder), "--out", str(tmp_path), "tasks=[{target: age}]"]
    )
    assert result.exit_code != 0 and "needs column 'age'" in result.output
    result = CliRunner().invoke(command, ["--out", str(tmp_path)])
    assert result.exit_code != 0 and "--data" in result.output
