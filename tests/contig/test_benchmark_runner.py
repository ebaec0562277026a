"""``run_benchmark`` end to end on a tiny simulated biobank; feature tables and label tables."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from contig.benchmark import (
    COLUMNS,
    FINETUNE_COLUMNS,
    BenchmarkConfig,
    BenchmarkError,
    MethodSpec,
    TaskSpec,
    run_benchmark,
)
from contig.benchmark.data import load_images, read_features, read_labels
from contig.biobank import BiobankConfig, simulate_biobank
from imaging.training.config import ConfigError, load_config


@pytest.fixture(scope="module")
def biobank(tmp_path_factory):
    """60 people, ~110 fundus images of 64 px (about 5 s on 2 cores)."""
    out = tmp_path_factory.mktemp("biobank")
    start = time.perf_counter()
    simulate_biobank(out, BiobankConfig(n_individuals=60, progress=False))
    print(f"simulated the biobank in {time.perf_counter() - start:.1f} s")
    return out


def _cheat_features(labels: pd.DataFrame, path, seed=0) -> None:
    """Per-image features that carry the grade (feature 0) plus noise, keyed by image path."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"IID": labels["IID"], "image": labels["image"]})
    table["feat_000"] = labels["grade"] + 0.05 * rng.normal(size=len(labels))
    table["feat_001"] = rng.normal(size=len(labels))
    table.sample(frac=1.0, random_state=seed).to_parquet(path)  # shuffled: the join must realign rows


def test_run_benchmark_end_to_end(biobank, tmp_path):
    labels = read_labels(biobank)
    _cheat_features(labels, tmp_path / "features.parquet")
    config = BenchmarkConfig(
        data=str(biobank),
        out=str(tmp_path / "bench"),
        tasks=[TaskSpec(target="grade", kind="ordinal"), TaskSpec(target="grade", kind="binary", threshold=0, name="any")],
        methods=[
            MethodSpec(source="timm:test_efficientnet", name="tiny"),
            MethodSpec(source=f"features:{tmp_path / 'features.parquet'}", name="cheat"),
        ],
        protocols=["linear", "knn", "finetune"],
        fractions=[0.2, 1.0],
        seeds=[0, 1],
        n_boot=50,
        probe_c=1.0,  # one fit per probe (the inner CV is tested in test_benchmark_protocols)
        image_size=32,
        finetune_steps=1,
        finetune_batch_size=8,
        device="cpu",
    )  # fmt: skip
    results = run_benchmark(config)
    assert list(results.columns) == COLUMNS + FINETUNE_COLUMNS
    # tiny: 3 protocols, cheat: 2 (features are never fine-tuned); 2 tasks × 2 fractions × 2 seeds.
    assert len(results) == (3 + 2) * 2 * 2 * 2
    saved = pd.read_parquet(tmp_path / "bench" / "results.parquet")
    pd.testing.assert_frame_equal(saved, results)
    n_test = int((labels["split"] == "test").sum())
    assert (results["n_test"] == n_test).all()
    n_pool, n_val = int(labels["split"].isin(["train", "val"]).sum()), int((labels["split"] == "val").sum())
    probes, tuned = results[results["protocol"] != "finetune"], results[results["protocol"] == "finetune"]
    assert set(probes.loc[probes["fraction"] == 1.0, "n_train"]) == {n_pool}
    # fine-tuning holds the val people out of its training pool and validates on them
    assert set(tuned.loc[tuned["fraction"] == 1.0, "n_train"]) == {n_pool - n_val}
    assert set(tuned["n_val"]) == {n_val} and set(tuned["steps_trained"]) == {1}
    assert probes[FINETUNE_COLUMNS].isna().all().all()
    cheat = results[
        (results["method"] == "cheat") & (results["protocol"] == "linear") & (results["task"] == "grade")
    ]
    assert (cheat.loc[cheat["fraction"] == 1.0, "value"] > 0.9).all()  # the join kept rows aligned
    assert ((results["low"] <= results["value"] + 1e-12) | results["low"].isna()).all()
    for task in ("grade", "any"):
        with Image.open(tmp_path / "bench" / f"{task}.png") as image:
            assert image.format == "PNG" and image.size[0] > 300
    assert load_config(tmp_path / "bench" / "config.yaml", BenchmarkConfig) == config
    assert not list((tmp_path / "bench").glob(".*tmp*"))  # no temporary files left behind


def test_images_are_read_and_standardised(biobank):
    labels = read_labels(biobank)
    images = load_images(biobank, labels["image"].tolist()[:6])
    assert images.shape == (6, 3, 64, 64) and images.dtype == torch.float32
    torch.testing.assert_close(images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    assert load_images(biobank, labels["image"].tolist()[:2], image_size=16).shape == (2, 3, 16, 16)


def test_feature_tables_join_by_image_or_person(tmp_path):
    labels = pd.DataFrame({"IID": ["a", "a", "b", "c"], "image": ["a1", "a2", "b1", "c1"], "split": "train"})
    per_person = pd.DataFrame({"IID": ["c", "a", "b"], "age": [70, 50, 60], "feat_000": [3.0, 1.0, 2.0]})
    per_person.to_parquet(tmp_path / "person.parquet")
    np.testing.assert_array_equal(read_features(tmp_path / "person.parquet", labels)[:, 0], [1, 1, 2, 3])
    no_prefix = pd.DataFrame({"IID": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "y": [0.0, 0.0, 1.0]})
    no_prefix.to_csv(tmp_path / "plain.csv", index=False)
    assert read_features(tmp_path / "plain.csv", labels).shape == (4, 2)
    per_person.iloc[1:].to_parquet(tmp_path / "missing.parquet")
    with pytest.raises(BenchmarkError, match=r"no features for 1 labelled image\(s\) \(IID c"):
        read_features(tmp_path / "missing.parquet", labels)
    pd.concat([per_person, per_person]).to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(BenchmarkError, match="duplicated IID"):
        read_features(tmp_path / "dup.parquet", labels)


def test_bad_inputs_raise_typed_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="label table not found"):
        read_labels(tmp_path)
    (tmp_path / "downstream").mkdir()
    labels = pd.DataFrame(
        {"IID": ["a", "b"], "image": ["a.png", "b.png"], "grade": [0, 1], "split": ["train", "test"]}
    )
    labels.to_parquet(tmp_path / "downstream" / "labels.parquet")
    config = BenchmarkConfig(data=str(tmp_path), out=str(tmp_path / "o"), tasks=[TaskSpec(target="height")])
    with pytest.raises(BenchmarkError, match="needs column 'height'"):
        run_benchmark(config)
    config = BenchmarkConfig(data=str(tmp_path), out=str(tmp_path / "o"), test_split="holdout")
    with pytest.raises(BenchmarkError, match="0 test"):
        run_benchmark(config)
    config = BenchmarkConfig(data=str(tmp_path), out=str(tmp_path / "o"), protocols=["finetune"])
    with pytest.raises(BenchmarkError, match="no rows of split 'val' to stop fine-tuning early"):
        run_benchmark(config)  # the table has no val people: said before any image is read
    with pytest.raises(ConfigError, match="finetune_val_split 'tune' is not one of train_splits"):
        BenchmarkConfig(finetune_val_split="tune")
    with pytest.raises(ConfigError, match="fraction 5"):
        BenchmarkConfig(fractions=[5])
    with pytest.raises(ConfigError, match="kind one of"):
        MethodSpec(source="imagenet:resnet50")
    with pytest.raises(ConfigError, match="threshold"):
        TaskSpec(kind="ordinal", threshold=1)
