"""`contig finetune` end to end on tiny generated volumes: one run, the grid, and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from contig.cli.finetune import command
from tests.imaging.test_finetune import make_folder, make_pretrained_run

SMALL = ["size=[8,8,8]", "encoder_kwargs={base_width: 4, depth: 2}", "freeze_steps=1"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    data = make_folder(tmp_path_factory.mktemp("data"), n=9)
    run = tmp_path_factory.mktemp("jigsaw")
    make_pretrained_run(run)
    return data, run


def test_single_run_with_mc_dropout(inputs, tmp_path):
    data, run = inputs
    args = ["--pretrained", str(run), "--task", "segment", "--data", str(data), "--label-fraction", "0.5"]
    args += ["--mc-samples", "2", "--out", str(tmp_path / "ft"), "--max-steps", "2", "--device", "cpu"]
    result = CliRunner().invoke(command, [*args, *SMALL, "dropout=0.2", "progress=false"])
    assert result.exit_code == 0, result.output
    assert "test dice" in result.output
    saved = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert saved["label_fraction"] == 0.5 and saved["transfer"]["matched"] > 0
    assert saved["init"] == str(run)
    config = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert config["mc_samples"] == 2 and config["pretrained"] == str(run) and config["max_steps"] == 2
    assert any(p.name.endswith("_entropy.nii.gz") for p in (tmp_path / "ft" / "mc_maps").iterdir())


def test_grid_over_inits_fractions_and_seeds(inputs, tmp_path):
    data, run = inputs
    args = ["--pretrained", "none", "--pretrained", f"jig={run}", "--task", "classify", "--data", str(data)]
    args += ["--label-fraction", "0.5", "--seeds", "0,1", "--out", str(tmp_path / "grid")]
    result = CliRunner().invoke(command, [*args, "--max-steps", "1", *SMALL, "progress=false"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "grid" / "results.parquet")
    assert len(table) == 4 and set(table["init"]) == {"scratch", "jig"}
    assert set(table["seed"]) == {0, 1} and table["metric"].iloc[0] == "qwk"
    assert (tmp_path / "grid" / "data_efficiency.png").is_file()
    assert "label_fraction" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "segment"], "--data"),
        (["--pretrained", "no/such/run"], "not a run directory"),
        (["--seeds", "a,b"], "comma-separated"),
        (["--label-fraction", "1.5"], "1.5"),
        (["label_fraction=0"], "label_fraction"),
    ],
)
def test_bad_input(inputs, tmp_path, args, message):
    data, _ = inputs
    extra = [] if "--task" in args else ["--data", str(data)]
    result = CliRunner().invoke(command, [*extra, *args, "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert message in result.output


def test_typed_error_for_unrelated_run(inputs, tmp_path):
    data, _ = inputs
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("encoder: unet3d\n")
    result = CliRunner().invoke(
        command, ["--pretrained", str(other), "--data", str(data), "--out", str(tmp_path / "run"), *SMALL]
    )
    assert result.exit_code == 1 and "config.yaml" in result.output
