"""`contig mil simulate | train | predict` end to end on a tiny synthetic set, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from contig.cli import cli
from contig.cli.mil import command
from imaging.io import write_png

H, W = 64, 128
TINY = ["backbone=mobilenetv3_small_050", "embed_dim=16", "attention_dim=8", "progress=false", "log_every=1"]


def _predict(run: Path, images: Path, out: Path, *extra: str):
    args = ["predict", "--run", str(run), "--images", str(images), "--out", str(out), "--device", "cpu"]
    return CliRunner().invoke(command, [*args, *extra])


def _ok(result) -> None:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Simulate 16 images and train 3 steps (with a validation CSV)."""
    root = tmp_path_factory.mktemp("mil")
    runner = CliRunner()
    sim = ["--n", "16", "--height", str(H), "--width", str(W), "--mask-fraction", "0.5", "--seed", "1"]
    _ok(runner.invoke(command, ["simulate", "--out", str(root / "bw"), *sim]))
    csv = root / "bw" / "labels.csv"
    args = ["train", "--data", str(csv), "--val-data", str(csv), "--out", str(root / "run")]
    args += ["--max-steps", "3", "--batch-size", "8", "--device", "cpu", "--seed", "0", *TINY]
    _ok(runner.invoke(command, args))
    return {"root": root, "csv": csv, "images": root / "bw" / "images", "run": root / "run"}


def test_mil_is_a_contig_subcommand():
    result = CliRunner().invoke(cli, ["mil", "--help"])
    _ok(result)
    assert "simulate" in result.output and "predict" in result.output


def test_simulate_writes_images_masks_and_labels(trained):
    table = pd.read_csv(trained["csv"], keep_default_na=False)
    assert len(table) == 16 and set(table.label) <= {0, 1}
    assert all((trained["root"] / "bw" / p).is_file() for p in table.image)
    assert all((trained["root"] / "bw" / p).is_file() for p in table["mask"] if p)


def test_train_writes_a_run_directory(trained):
    run = trained["run"]
    for name in ("config.yaml", "metrics.csv", "model.yaml", "last.safetensors", "best.safetensors"):
        assert (run / name).is_file(), name
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"loss", "image", "val_auroc", "val_pointing"} <= set(metrics.columns)
    assert metrics.step.max() == 3
    config = (run / "config.yaml").read_text()
    assert "monitor: val_auroc" in config and "backbone: mobilenetv3_small_050" in config


def test_predict_writes_heatmaps_json_and_predictions(trained, tmp_path):
    out = tmp_path / "pred"
    _ok(_predict(trained["run"], trained["images"], out))
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 16 and table.prob.between(0, 1).all()
    record = json.loads((out / "bw00000.json").read_text())
    assert record["grid"] == [4, 8] and len(record["patches"]) == 32
    w = np.array([p["attention"] for p in record["patches"]])
    p = np.array([p["prob"] for p in record["patches"]])
    assert record["prob"] == pytest.approx((w * p).sum() / max(w.sum(), record["k_min"]), abs=1e-5)
    assert (out / "bw00000_heatmap.png").stat().st_size > 0


def test_predict_with_an_excluded_region_follows_the_formula(trained, tmp_path):
    region = np.zeros((H, W), np.uint8)
    region[:, W // 2 :] = 255  # the right half: patch columns 4..7
    write_png(tmp_path / "region.png", region)
    out = tmp_path / "pred"
    _ok(_predict(trained["run"], trained["images"], out, "--exclude", str(tmp_path / "region.png")))
    record = json.loads((out / "bw00003.json").read_text())
    kept = [p for p in record["patches"] if p["col"] < 4]
    assert all(p["keep"] == 1.0 for p in kept) and sum(p["keep"] for p in record["patches"]) == 16
    mass = sum(p["attention"] for p in kept)
    by_hand = sum(p["attention"] * p["prob"] for p in kept) / max(mass, record["k_min"])
    assert record["prob"] == pytest.approx(by_hand, abs=1e-5)
    assert record["region"]["mode"] == "exclude" and "prob_unedited" in record
    assert "prob_unedited" in pd.read_csv(out / "predictions.csv").columns
    # --attend with the same region keeps exactly the other half
    _ok(
        _predict(
            trained["run"], trained["images"], tmp_path / "att", "--attend", str(tmp_path / "region.png")
        )
    )
    attended = json.loads((tmp_path / "att" / "bw00003.json").read_text())
    assert [p["keep"] for p in attended["patches"]] == [1.0 - p["keep"] for p in record["patches"]]
    assert attended["prob_unedited"] == pytest.approx(record["prob_unedited"])


def test_predict_usage_errors(trained, tmp_path):
    region = tmp_path / "r.png"
    write_png(region, np.ones((H, W), np.uint8))
    both = _predict(
        trained["run"], trained["images"], tmp_path / "o", "--attend", str(region), "--exclude", str(region)
    )
    assert both.exit_code != 0 and "not both" in both.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _predict(trained["run"], empty, tmp_path / "o")
    assert result.exit_code != 0 and "holds no images" in result.output
    no_data = CliRunner().invoke(command, ["train", "--out", str(tmp_path / "r"), "--max-steps", "1"])
    assert no_data.exit_code != 0 and "--data" in no_data.output


def test_predict_with_a_corrupt_image_writes_nothing(trained, tmp_path):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(trained["images"], images)
    corrupt = sorted(images.iterdir())[5]
    corrupt.write_bytes(corrupt.read_bytes()[:30])
    out = tmp_path / "pred"
    result = _predict(trained["run"], images, out)
    assert result.exit_code != 0 and corrupt.name in result.output
    assert not out.exists() or not any(out.iterdir())  # no heatmaps, no JSON, no partial table
    _ok(_predict(trained["run"], trained["images"], out))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no staging left
