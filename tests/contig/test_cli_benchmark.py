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
        split = "test" if i >= 16 else "val" if i >= 12 else "train"
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
    n_train = table.groupby("protocol")["n_train"].apply(sorted).to_dict()
    assert n_train == {"linear": [8, 16], "finetune": [6, 12]}  # fine-tuning validates on the 4 val people
    assert (table.loc[table["protocol"] == "finetune", "n_val"] == 4).all()
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


def test_benchmark_command_never_mixes_runs(folder, tmp_path):
    out = tmp_path / "out"
    failed = CliRunner().invoke(command, ["--data", str(folder), "--out", str(out), "tasks=[{target: age}]"])
    assert failed.exit_code != 0 and not out.exists()  # bad input: no folder left behind
    args = ["--data", str(folder), "--out", str(out), "--quiet", "tasks=[{target: finding, kind: binary}]"]
    args += ["methods=[{source: 'timm:test_efficientnet'}]", "fractions=[1.0]", "seeds=[0]", "n_boot=10"]
    args += ["probe_c=1.0", "image_size=16"]
    _ok(CliRunner().invoke(command, args))
    again = CliRunner().invoke(command, args)
    assert again.exit_code == 2 and "already holds an earlier run" in again.output
    (out / "results.parquet").write_bytes(b"stale")
    _ok(CliRunner().invoke(command, [*args, "--overwrite"]))
    assert pd.read_parquet(out / "results.parquet")["protocol"].tolist() == ["linear"]
