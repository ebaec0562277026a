"""Hard synthetic bitewings (faint lesions, lesion mimics, few masks) and the method comparison behind
benchmarks/mil_localisation.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from imaging.mil.compare import METRICS, SETTINGS, compare_mil, image_metrics
from imaging.synthetic.bitewing import HARD_BITEWINGS, LABEL_COLUMNS, render_bitewing, simulate_bitewings


def test_hard_bitewings_are_deterministic_and_put_mimics_on_healthy_images(tmp_path):
    first = simulate_bitewings(
        tmp_path / "a", n=16, height=64, width=128, difficulty="hard", mask_fraction=0.25
    )
    again = simulate_bitewings(
        tmp_path / "b", n=16, height=64, width=128, difficulty="hard", mask_fraction=0.25
    )
    table = pd.read_csv(first)
    assert table.equals(pd.read_csv(again))
    for name in table["image"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    healthy = table[table["label"] == 0]
    assert len(healthy) > 3 and (healthy["n_mimics"] >= 1).all()  # mimics on every healthy image
    assert 0 < table["mask"].notna().sum() < len(table)  # only some images keep a mask
    # The default generator is untouched: same columns, no mimics.
    easy = pd.read_csv(simulate_bitewings(tmp_path / "c", n=4, height=64, width=128))
    assert list(easy.columns) == list(LABEL_COLUMNS)
    with pytest.raises(ValueError, match="difficulty"):
        simulate_bitewings(tmp_path / "d", n=2, difficulty="impossible")


def test_mimics_darken_teeth_outside_the_mask_and_lesions_are_fainter():
    hard = {**HARD_BITEWINGS, "noise": 0.0}
    image, mask, info = render_bitewing(np.random.default_rng(3), 64, 128, n_lesions=0, **hard)
    blank, _, _ = render_bitewing(
        np.random.default_rng(3), 64, 128, n_lesions=0, **{**hard, "mimic_contrast": (0, 0)}
    )
    assert info["n_mimics"] >= 1 and info["severity"] == 0 and not mask.any()  # a mimic is never a lesion
    region = info["mimic_mask"]
    diff = image.astype(int) - blank.astype(int)
    assert diff[region].mean() < -10  # clearly darker where the mimic is
    assert not diff[~ndimage.binary_dilation(region, iterations=4)].any()  # and nowhere else
    # fainter lesions than the default generator at the same place
    darkness = []
    for options in ({"noise": 0.0}, hard):
        with_lesion, lesion_mask, _ = render_bitewing(
            np.random.default_rng(5), 64, 128, n_lesions=1, **options
        )
        faded = {**options, "lesion_contrast": (0.0, 0.0)}
        without, _, _ = render_bitewing(np.random.default_rng(5), 64, 128, n_lesions=1, **faded)
        darkness.append((without.astype(int) - with_lesion.astype(int))[lesion_mask > 0].mean())
    assert darkness[1] < 0.7 * darkness[0]


def test_image_metrics_on_hand_made_outputs():
    outputs = {
        "score": np.array([0.9, 0.6, 0.2, 0.7]),
        "label": np.array([1, 1, 0, 0]),
        "heat": np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.1], [0.7, 0.2]]),
        "target": np.array([[1, 0], [1, 0], [0, 0], [0, 0]]),
        "has_mask": np.array([True, True, True, True]),
        "drop": np.array([0.5, 0.1, np.nan, np.nan]),
    }
    m = image_metrics(outputs)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 positive/healthy pairs ordered
    assert m["pointing"] == pytest.approx(0.5)
    assert m["heatmap_auroc"] == pytest.approx(0.75)  # lesion 0.9, 0.2 vs other 0.1, 0.8: 3 of 4 pairs
    assert m["false_alarm"] == pytest.approx(0.5)  # healthy 0.2 and 0.7
    assert m["exclusion_drop"] == pytest.approx(0.3)
    assert image_metrics(outputs, np.array([0, 0, 2]))["auroc"] == pytest.approx(1.0)


def test_compare_smoke_run_returns_every_column(tmp_path):
    size = {"height": 32, "width": 64, "difficulty": "hard"}
    train = simulate_bitewings(tmp_path / "train", n=12, mask_fraction=0.25, seed=0, **size)
    test = simulate_bitewings(
        tmp_path / "test", n=10, mask_fraction=1.0, seed=1000, positive_fraction=0.5, **size
    )
    table, runs = compare_mil(
        train,
        test,
        tmp_path / "runs",
        seeds=(0, 1),
        steps=2,
        batch_size=6,
        n_boot=10,
        model_kwargs={"embed_dim": 8, "attention_dim": 4},
    )
    assert set(table["method"]) == set(SETTINGS) == set(runs["method"])
    assert list(table.columns) == ["method", "metric", "mean", "seed_sd", "lo", "hi", "n_seeds", "n_images"]
    assert sorted(table["metric"].unique()) == sorted(METRICS)
    assert len(table) == len(SETTINGS) * len(METRICS) and (table["n_seeds"] == 2).all()
    assert set(METRICS) | {"train_s", "seed"} <= set(runs.columns) and len(runs) == 2 * len(SETTINGS)
    assert table[["mean", "lo", "hi"]].notna().all().all()
    assert (table["lo"] <= table["hi"]).all()
    with pytest.raises(Exception, match="mask"):
        compare_mil(train, train, tmp_path / "bad", seeds=(0,), steps=1)
