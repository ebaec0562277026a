"""The demo's downstream stage on a hand-made biobank: refused label fractions, early-stopped fine-tuning,
the heritability-free negative control of the trait probes, and the summary for any method names."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from contig.benchmark import COLUMNS, FINETUNE_COLUMNS
from contig.demo import downstream
from contig.demo.settings import DemoConfig

SETTINGS = DemoConfig(
    n_individuals=190,
    image_size=8,
    split_fractions=(0.5, 0.15, 0.35),
    image_encoder="unused",
    pretrain_steps=1,
    batch_size=8,
    lr=1e-3,
    max_snps=1,
    feature_pcs=1,
    fractions=(0.1, 0.5, 1.0),
    finetune_steps=8,
    n_boot=50,
    finetune_eval_every=2,
    finetune_patience=2,
    min_positives=10,
)
# People per split and glaucoma suspects among them: 10% of 30 suspects is 3, refused; 50% is 15.
SPLITS = {"train": (100, 30), "val": (30, 6), "test": (60, 15)}


class SmallEncoder(nn.Module):
    num_features = 4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def biobank(tmp_path_factory):
    """Two images per person; glaucoma, grade and two image traits, one heritable, one not."""
    root = tmp_path_factory.mktemp("biobank")
    (root / "images").mkdir()
    (root / "truth").mkdir()
    (root / "downstream").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for split, (n, positive) in SPLITS.items():
        for i in range(n):
            iid = f"{split}{i:03d}"
            for eye in ("left", "right"):
                path = f"images/{iid}_{eye}.png"
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / path)
                grade = int(rng.integers(0, 5)) if i % 3 else 0
                rows.append((iid, eye, path, int(i < positive and eye == "left"), grade, split))
    labels = pd.DataFrame(rows, columns=["IID", "eye", "image", "glaucoma_suspect", "grade", "split"])
    labels.to_parquet(root / "downstream" / "labels.parquet")
    traits = labels[["IID", "eye", "image"]].copy()
    traits["vessel_caliber"] = rng.normal(size=len(traits))
    traits["macula_darkness"] = rng.normal(size=len(traits))
    traits.to_parquet(root / "truth" / "image_traits.parquet")
    truth = {"traits": {"vessel_caliber": {"h2_expected": 0.31}, "macula_darkness": {"h2_expected": 0.0}}}
    (root / "truth.json").write_text(json.dumps(truth))
    return root


def _features(traits: pd.DataFrame, signal: str | None, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(len(traits), 6))
    if signal:
        X[:, 0] = traits[signal] + 0.3 * rng.normal(size=len(traits))
    return pd.DataFrame(X, columns=[f"feat_{k}" for k in range(6)])


@pytest.fixture(scope="module")
def results(biobank):
    labels = downstream.read_image_table(biobank, "downstream/labels.parquet")
    traits = labels[["IID", "image"]].merge(
        downstream.read_image_table(biobank, "truth/image_traits.parquet"), on=["IID", "image"]
    )
    per_image = {
        "contig": _features(traits, "vessel_caliber", 1),  # carries the heritable trait
        "confounded": _features(traits, "macula_darkness", 2),  # carries only the heritability-free one
        "random": _features(traits, None, 3),
    }
    torch.manual_seed(0)
    encoders = {"contig": SmallEncoder(), "random": SmallEncoder()}
    return downstream.evaluate(labels, per_image, encoders, biobank, SETTINGS, seed=0, progress=False)


def test_fractions_with_too_few_positives_are_refused_with_their_counts(results):
    glaucoma = results[(results["task"] == "glaucoma_suspect") & (results["protocol"] == "linear")]
    by_fraction = glaucoma.drop_duplicates("fraction").set_index("fraction")
    # stratified by the person's worst label: a fraction keeps round(f × 30) of the 30 training suspects
    assert by_fraction["n_train_positive"].to_dict() == {0.1: 3, 0.5: 15, 1.0: 30}
    assert by_fraction["n_train_people"].to_dict() == {0.1: 10, 0.5: 50, 1.0: 100}
    assert (glaucoma["n_test_people"] == 60).all() and (glaucoma["n_test_positive"] == 15).all()
    assert by_fraction.loc[0.1, "skipped"] == (
        "3 positive / 7 negative of 10 training people (need >= 10 of each)"
    )
    refused = glaucoma[glaucoma["fraction"] == 0.1]
    assert refused["value"].isna().all() and set(refused["method"]) == {"contig", "confounded", "random"}
    scored = glaucoma[glaucoma["fraction"] > 0.1]
    assert scored["skipped"].isna().all() and scored["value"].notna().all()
    assert (scored["n_train_positive"] >= SETTINGS.min_positives).all()
    assert by_fraction.loc[1.0, "train_class_counts"] == "0:70,1:30"
    # the refused fraction still says how many labelled rows it would have had
    assert list(by_fraction["n_train"]) == [10 * 2, 50 * 2, 100 * 2]
    assert set(COLUMNS + downstream.COUNT_COLUMNS) <= set(results.columns)


def test_fine_tuning_stops_on_the_validation_people_and_reports_it(results):
    rows = results[results["protocol"] == "finetune"]
    assert set(rows["method"]) == {"contig", "random"} and set(rows["fraction"]) == {0.1, 0.5, 1.0}
    trained = rows[rows["fraction"] > 0.1]
    assert set(FINETUNE_COLUMNS) <= set(rows.columns)
    assert (trained["steps_trained"] <= SETTINGS.finetune_steps).all()
    assert (trained["best_step"] <= trained["steps_trained"]).all() and (trained["best_step"] >= 2).all()
    assert (trained["n_val_people"] == 30).all() and (trained["n_val_positive"] == 6).all()
    assert (trained["n_val"] == 60).all() and trained["val_loss"].notna().all()
    assert rows.loc[rows["fraction"] == 0.1, "steps_trained"].isna().all()  # refused: nothing trained


def test_trait_probes_mark_the_heritability_free_trait_as_negative_control(results):
    traits = results[results["task"].str.startswith("trait:") & (results["metric"] == "r2")]
    marks = traits.drop_duplicates("task").set_index("task")
    assert marks.loc["trait:macula_darkness", "negative_control"] is True
    assert marks.loc["trait:vessel_caliber", "negative_control"] is False
    assert marks["h2"].to_dict() == {"trait:vessel_caliber": 0.31, "trait:macula_darkness": 0.0}
    r2 = traits.set_index(["method", "task"])["value"]
    assert r2["contig", "trait:vessel_caliber"] > 0.8 and r2["random", "trait:vessel_caliber"] < 0.1


def test_probe_gain_over_random_tells_heritable_from_heritability_free(results):
    gains = results[results["task"] == downstream.GAIN_TASK].set_index(["method", "protocol"])
    assert set(gains.index.get_level_values("method")) == {"contig", "confounded"}  # random is the control
    contig, confounded = gains.loc["contig"], gains.loc["confounded"]
    assert contig.loc["heritable_mean", "low"] > 0.7 and confounded.loc["heritable_mean", "high"] < 0.1
    assert contig.loc["heritability_free", "high"] < 0.1 and confounded.loc["heritability_free", "low"] > 0.7
    assert (
        contig.loc["heritable_minus_free", "low"]
        > 0.5
        > -0.5
        > confounded.loc["heritable_minus_free", "high"]
    )
    assert contig.loc["heritable_mean", "traits"] == "vessel_caliber"
    assert contig.loc["heritability_free", "traits"] == "macula_darkness"


def test_heritability_comes_from_truth_json(biobank, tmp_path):
    copy = tmp_path / "bb"
    copy.mkdir()
    truth = json.loads((biobank / "truth.json").read_text())
    truth["traits"]["vessel_caliber"]["h2_expected"] = 0.0
    (copy / "truth.json").write_text(json.dumps(truth))
    assert downstream.heritabilities(copy) == {"vessel_caliber": 0.0, "macula_darkness": 0.0}


def test_summary_holds_counts_refusals_fine_tuning_and_gains_for_any_methods(results):
    summary = downstream.summary(results)
    json.dumps(summary)  # plain values only
    linear = summary["glaucoma_suspect"]["linear"]
    assert set(linear) == {"contig", "confounded", "random"} and set(linear["contig"]) == {"0.1", "0.5", "1"}
    refused = linear["contig"]["0.1"]
    assert refused["value"] is None and refused["skipped"].startswith("3 positive / 7 negative")
    assert linear["contig"]["1"]["n_train_positive"] == 30 and linear["contig"]["1"]["n_test_positive"] == 15
    tuned = summary["glaucoma_suspect"]["finetune"]["random"]["1"]
    assert {"steps_trained", "best_step", "val_metric"} <= set(tuned)
    assert summary["trait:macula_darkness"]["linear"]["contig"]["1"]["negative_control"] is True
    gain = summary[downstream.GAIN_TASK]
    assert set(gain) == set(downstream.GAIN_PROTOCOLS) and set(gain["heritable_mean"]) == {
        "contig",
        "confounded",
    }
    assert gain["heritable_minus_free"]["contig"]["1"]["metric"] == "r2_gain"
    assert set(summary["grade"]["linear"]["random"]["1"]) >= {"metric", "value", "low", "high", "n_train"}


def test_results_round_trip_through_parquet(results, tmp_path):
    results.to_parquet(tmp_path / "downstream.parquet", index=False)
    again = pd.read_parquet(tmp_path / "downstream.parquet")
    assert len(again) == len(results)
    assert downstream.summary(again) == downstream.summary(results)


def test_docstring_examples_run():
    import doctest

    assert doctest.testmod(downstream).failed == 0


def test_methods_keep_the_callers_order_and_fine_tuning_is_optional(biobank, results):
    assert list(downstream.summary(results)["glaucoma_suspect"]["linear"]) == [
        "contig",
        "confounded",
        "random",
    ]
    labels = downstream.read_image_table(biobank, "downstream/labels.parquet")
    rng = np.random.default_rng(4)
    features = pd.DataFrame(rng.normal(size=(len(labels), 3)), columns=["feat_0", "feat_1", "feat_2"])
    rows = downstream.evaluate(labels, {"only": features}, {}, biobank, SETTINGS, seed=0, progress=False)
    assert "finetune" not in set(rows["protocol"]) and set(rows["method"]) == {"only"}
    assert downstream.GAIN_TASK not in set(rows["task"])  # no random init: no gain to report


def test_a_permuted_control_gets_its_own_gain_rows():
    from contig.demo.downstream import _gains

    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 2))  # column 0 heritable, column 1 heritability-free
    learned = y + rng.normal(scale=[0.3, 1.0], size=y.shape)
    permuted = y + rng.normal(scale=[1.0, 1.0], size=y.shape)
    rows = _gains(y, {"contig": learned, "contig_permuted": permuted}, ["a", "b"], {"a": 0.4, "b": 0.0},
                  np.arange(200), 200, 0, 100, 200, control="contig_permuted")  # fmt: skip
    assert set(rows["task"]) == {"probe_r2_gain_vs_contig_permuted"} and set(rows["method"]) == {"contig"}
    difference = rows.set_index("protocol").loc["heritable_minus_free"]
    assert difference["low"] > 0
