"""Held-out proxy accuracy against chance: rotation learns with the layout head, not with a global mean."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from imaging.ssl.proxy_eval import SUMMARY, held_out_indices
from imaging.ssl.train import SslConfig, train_ssl


def two_blob_volumes(n: int, side: int = 16, seed: int = 0) -> list[torch.Tensor]:
    """(1, side³) volumes: a bright and a dim ball in two adjacent octants (jittered ±1), plus noise.

    Every 3D rotation class moves the pair to a different pair of octants, so the rotation can be read
    from where the balls are; balls look alike from every side, so a global mean of features cannot.
    """
    g = torch.Generator().manual_seed(seed)
    axes = (torch.arange(side, dtype=torch.float32),) * 3
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (3, side, side, side)
    q = side // 4
    volumes = []
    for _ in range(n):
        jitter = torch.randint(-1, 2, (2, 3), generator=g).float()
        bright = torch.tensor([q, q, q], dtype=torch.float32) + jitter[0]
        dim = torch.tensor([q, q, 3 * q], dtype=torch.float32) + jitter[1]
        ball = [((grid - c[:, None, None, None]) ** 2).sum(0) <= 4 for c in (bright, dim)]
        noise = 0.2 * torch.randn(side, side, side, generator=g)
        volumes.append((2.0 * ball[0] + 1.0 * ball[1] + noise)[None])
    return volumes


def _rotation_run(tmp_path, pool_grid: int, steps: int = 60, lr: float = 0.01) -> dict:
    config = SslConfig(
        out=str(tmp_path / f"grid{pool_grid}_lr{lr:g}"), task="rotation", dim=3,
        encoder_kwargs={"base_width": 4, "depth": 2}, task_options={"pool_grid": pool_grid},
        max_steps=steps, epochs=None, batch_size=8, lr=lr, warmup_steps=0, eval_every=30, log_every=30,
        val_fraction=0.5, device="cpu", progress=False, seed=0,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_ssl(config, dataset=two_blob_volumes(48))
    result["warnings"] = [str(w.message) for w in caught if "not clearly above chance" in str(w.message)]
    result["log"] = (Path(config.out) / "train.log").read_text()
    return result


def test_rotation_reads_the_layout_and_reports_held_out_accuracy_against_chance(tmp_path):
    layout = _rotation_run(tmp_path, pool_grid=2)
    summary = json.loads((tmp_path / "grid2_lr0.01" / SUMMARY).read_text())
    assert summary["n_held_out_images"] == 24 and summary["n_train_images"] == 24
    assert summary["n_held_out_draws"] == 96  # four label draws per held-out image
    assert summary["proxy_chance"] == pytest.approx(0.1)
    assert summary["above_chance"] and summary["final"]["val_proxy_acc"] >= 0.5
    metrics = pd.read_csv(tmp_path / "grid2_lr0.01" / "metrics.csv")
    evaluated = metrics.dropna(subset=["val_proxy_acc"])
    assert evaluated["step"].tolist() == [30, 60]
    assert np.allclose(evaluated["proxy_chance"], 0.1) and "proxy_init_loss" in metrics
    assert not layout["warnings"] and "warning:" not in layout["log"]

    # The same budget with the global mean of the deepest level: far below the layout head.
    pooled = _rotation_run(tmp_path, pool_grid=1)
    assert pooled["proxy"]["final"]["val_proxy_acc"] < 0.35

    # A run that learns nothing (lr 0) is at chance and says so, once.
    frozen = _rotation_run(tmp_path, pool_grid=2, steps=2, lr=0.0)
    assert not frozen["proxy"]["above_chance"] and len(frozen["warnings"]) == 1
    assert (
        sum("warning: rotation: held-out proxy accuracy" in line for line in frozen["log"].splitlines()) == 1
    )


def test_held_out_images_keep_persons_together_and_leave_a_batch():
    ids = [f"P{i // 2}" for i in range(20)]  # two images per person
    train, held = held_out_indices(20, 0.2, batch_size=4, seed=0, ids=ids)
    assert len(held) == 4 and sorted([*train, *held]) == list(range(20))
    assert not {ids[i] for i in train} & {ids[i] for i in held}
    train, held = held_out_indices(5, 0.5, batch_size=4, seed=0)  # 5 − 2 < 4: nothing held out
    assert len(held) == 0 and len(train) == 5


def test_a_run_with_nothing_held_out_says_its_accuracy_was_not_measured(tmp_path):
    config = SslConfig(
        out=str(tmp_path / "run"), task="rotation", dim=3, encoder_kwargs={"base_width": 2, "depth": 2},
        max_steps=1, batch_size=2, device="cpu", progress=False,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="too few images to hold any out"):
        result = train_ssl(config, dataset=two_blob_volumes(2, side=8))
    assert result["proxy"]["n_held_out_images"] == 0 and result["proxy"]["proxy_chance"] is None
    assert "val_proxy_acc" not in pd.read_csv(tmp_path / "run" / "metrics.csv")


def test_the_puzzle_reports_its_tile_accuracy_against_one_over_k(tmp_path):
    """The Sinkhorn puzzle logs ``tile_accuracy``; held-out evaluation reads it through ``accuracy_key``."""
    config = SslConfig(
        out=str(tmp_path / "puzzle"), task="puzzle", dim=3, encoder_kwargs={"base_width": 4, "depth": 2},
        task_options={"grid": 2}, max_steps=4, epochs=None, batch_size=4, eval_every=4, val_fraction=0.5,
        device="cpu", progress=False, seed=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # four steps need not beat chance
        result = train_ssl(config, dataset=two_blob_volumes(16))
    assert result["proxy"]["proxy_chance"] == pytest.approx(1 / 8)  # a 2×2×2 grid: 8 tiles
    assert 0.0 <= result["proxy"]["final"]["val_proxy_acc"] <= 1.0
    metrics = pd.read_csv(tmp_path / "puzzle" / "metrics.csv").dropna(subset=["val_proxy_acc"])
    assert metrics["proxy_chance"].tolist() == [pytest.approx(0.125)]
    # contig ssl builds the puzzles a template cannot solve unless the task options say otherwise
    from imaging.puzzle.task import HARD_PUZZLES

    saved = result["config"].task_options
    assert {k: saved[k] for k in HARD_PUZZLES} == HARD_PUZZLES and saved["grid"] == 2
