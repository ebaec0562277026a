"""Label-fraction subsets, probes and fine-tuning of the benchmark harness, on tiny generated data."""

from __future__ import annotations

import doctest
import importlib
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contig.benchmark import (
    BenchmarkError,
    benchmark_features,
    benchmark_finetune,
    finetune_classifier,
    knn_probe,
    label_fraction_subset,
    linear_probe,
    load_encoder,
    score_predictions,
)
from imaging.metrics import auroc, quadratic_weighted_kappa

MODULES = ["subsets", "probes", "harness", "finetune", "encoders"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"contig.benchmark.{name}")
    assert doctest.testmod(module).failed == 0


def _people(n_people=40, seed=0):
    """Rows = images; 70% of people have two images, labels per image 0..2."""
    rng = np.random.default_rng(seed)
    counts = np.where(rng.random(n_people) < 0.7, 2, 1)
    ids = np.repeat([f"P{i:03d}" for i in range(n_people)], counts)
    labels = rng.choice(3, size=ids.size, p=[0.6, 0.3, 0.1])
    return ids, labels


def test_subsets_keep_people_together_nested_and_stratified():
    ids, labels = _people()
    previous = np.array([], dtype=np.int64)
    for fraction in (0.01, 0.1, 0.25, 0.5, 1.0):
        rows = label_fraction_subset(ids, labels, fraction, seed=3)
        chosen = set(ids[rows])
        assert set(np.flatnonzero(np.isin(ids, list(chosen)))) == set(rows)  # all images of a chosen person
        assert set(previous) <= set(rows)  # nested
        stratum = {p: labels[ids == p].max() for p in np.unique(ids)}
        for c in range(3):  # per stratum: max(1, round(fraction * n)) people
            n_c = sum(v == c for v in stratum.values())
            assert sum(stratum[p] == c for p in chosen) == max(1, round(fraction * n_c))
        previous = rows
    assert np.array_equal(label_fraction_subset(ids, labels, 1.0, seed=0), np.arange(ids.size))
    other_seed = label_fraction_subset(ids, labels, 0.25, seed=4)
    assert not np.array_equal(other_seed, label_fraction_subset(ids, labels, 0.25, seed=3))
    regression = label_fraction_subset(ids, None, 0.25, seed=0)
    assert len(set(ids[regression])) == 10
    with pytest.raises(BenchmarkError, match="0.01"):
        label_fraction_subset(ids, labels, 5, seed=0)


def _blobs(n=90, features=6, classes=2, seed=0, shift=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    X = rng.normal(size=(n, features))
    X[:, 0] += shift * y
    return X, y


def test_linear_probe_matches_sklearn_with_fixed_c():
    X, y = _blobs(classes=3)
    expected = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(X[:60], y[:60])
    got = linear_probe(X[:60], y[:60], X[60:], kind="multiclass", C=0.5)
    np.testing.assert_allclose(got, expected.predict_proba(X[60:]), atol=1e-4)
    reg_y = X[:, 0] * 2 + 0.1 * X[:, 1]
    ridge = make_pipeline(StandardScaler(), Ridge(alpha=2.0)).fit(X[:60], reg_y[:60])
    got = linear_probe(X[:60], reg_y[:60], X[60:], kind="regression", C=0.5)
    np.testing.assert_allclose(got, ridge.predict(X[60:]), rtol=1e-8)


def test_projection_onto_training_span_changes_no_prediction():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 120))  # more features than training rows
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    plain = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000, tol=1e-10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        expected = plain.fit(X[:30], y[:30]).predict_proba(X[30:])[:, 1]
    got = linear_probe(X[:30], y[:30], X[30:], kind="binary", C=0.1)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_linear_probe_learns_and_cv_chooses_c():
    X, y = _blobs(n=120)
    p = linear_probe(X[:80], y[:80], X[80:], kind="binary")
    assert p.shape == (40,) and auroc(y[80:], p) > 0.85
    grades = np.clip(np.round(X[:, 0] + 0.3 * np.random.default_rng(2).normal(size=120)), 0, 3).astype(int)
    probabilities = linear_probe(X[:80], grades[:80], X[80:], kind="ordinal", num_classes=5)
    assert probabilities.shape == (40, 5) and np.allclose(probabilities.sum(axis=1), 1)
    assert np.all(probabilities[:, 4] == 0)  # class never seen in training
    assert quadratic_weighted_kappa(grades[80:], probabilities.argmax(axis=1)) > 0.5


def test_single_class_training_predicts_that_class():
    X, _ = _blobs()
    p = linear_probe(X[:10], np.ones(10, int), X[10:], kind="binary")
    assert np.all(p == 1.0)
    p = linear_probe(X[:10], np.full(10, 2), X[10:], kind="ordinal", num_classes=3)
    assert np.all(p.argmax(axis=1) == 2)


def test_knn_probe_matches_sklearn():
    X, y = _blobs(classes=3)
    expected = KNeighborsClassifier(n_neighbors=7, metric="cosine").fit(X[:60], y[:60]).predict_proba(X[60:])
    np.testing.assert_allclose(knn_probe(X[:60], y[:60], X[60:], kind="multiclass", k=7), expected)
    assert knn_probe(X[:3], y[:3], X[60:], kind="regression", k=20).shape == (30,)  # k capped at N_train


def test_probe_input_errors():
    X, y = _blobs()
    with pytest.raises(BenchmarkError, match="kind"):
        linear_probe(X, y, X, kind="survival")
    with pytest.raises(BenchmarkError, match="one label per row"):
        linear_probe(X, y[:5], X)
    with pytest.raises(BenchmarkError, match="NaN"):
        linear_probe(np.full_like(X, np.nan), y, X)
    with pytest.raises(BenchmarkError, match="0/1"):
        knn_probe(X, y * 2, X, kind="binary")


def test_score_predictions_per_kind():
    X, y = _blobs(n=60, classes=3)
    probabilities = np.eye(3)[y] * 0.7 + 0.1
    scores = score_predictions(y, probabilities, "ordinal", n_boot=50)
    assert list(scores) == ["qwk"] and scores["qwk"].estimate == pytest.approx(1.0)
    scores = score_predictions(y, probabilities, "multiclass", n_boot=50)
    assert list(scores) == ["auroc", "accuracy"] and scores["accuracy"].estimate == pytest.approx(1.0)
    scores = score_predictions(X[:, 0], X[:, 0] + 1.0, "regression", n_boot=50)
    assert scores["mse"].estimate == pytest.approx(1.0)


def test_finetune_learns_an_easy_task_and_leaves_the_encoder_unchanged():
    torch.manual_seed(0)
    y = np.array([0, 1] * 12)
    images = torch.randn(24, 1, 16, 16) * 0.1
    images[y == 1, :, 4:12, 4:12] += 2.0  # a bright square marks class 1
    encoder = load_encoder("timm:test_efficientnet", in_chans=1)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    p = finetune_classifier(
        encoder, images[:16], y[:16], images[16:], kind="binary", steps=30, lr=3e-3, seed=0
    )
    assert p.shape == (8,) and auroc(y[16:], p) == 1.0
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    again = finetune_classifier(
        encoder, images[:16], y[:16], images[16:], kind="binary", steps=30, lr=3e-3, seed=0
    )
    np.testing.assert_allclose(again, p, rtol=1e-5)  # same seed, same result on CPU
    reg = finetune_classifier(encoder, images[:16], y[:16] * 5.0, images[16:], kind="regression", steps=2)
    assert reg.shape == (8,) and np.all(np.isfinite(reg))
    volumes = torch.randn(4, 1, 8, 8, 8)
    with pytest.raises(BenchmarkError, match="one label per image"):
        finetune_classifier(encoder, volumes, y[:3], volumes, steps=1)


def test_benchmark_features_table_and_person_split_check():
    X, y = _blobs(n=100, shift=4.0)
    ids = np.repeat(np.arange(50), 2).astype(str)
    test = np.repeat(np.arange(50) >= 35, 2)
    noise = np.random.default_rng(5).normal(size=X.shape)
    table = benchmark_features(
        {"signal": X, "noise": noise}, y, ids, test, "binary", protocols=("linear", "knn"),
        fractions=(0.1, 1.0), seeds=(0, 1), n_boot=100,
    )  # fmt: skip
    assert len(table) == 2 * 2 * 2 * 2
    assert (table["n_test"] == 30).all()
    full = table[(table["fraction"] == 1.0) & (table["protocol"] == "linear")].set_index(["method", "seed"])
    assert (full.loc["signal", "value"] > 0.95).all() and (full.loc["noise", "value"] < 0.9).all()
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert set(table.loc[table["fraction"] == 1.0, "n_train"]) == {70}
    leaky = test.copy()
    leaky[0] = True  # person 0 now has one image in test and one in train
    with pytest.raises(BenchmarkError, match="split by person"):
        benchmark_features({"signal": X}, y, ids, leaky, "binary")
    with pytest.raises(BenchmarkError, match="features"):
        benchmark_features({"signal": X}, y, ids, test, "binary", protocols=("finetune",))


def test_benchmark_finetune_table():
    y = np.array([0, 1] * 10)
    images = torch.randn(20, 1, 16, 16)
    ids = np.arange(20).astype(str)
    test = np.arange(20) >= 14
    encoder = load_encoder("timm:test_efficientnet", in_chans=1)
    table = benchmark_finetune(
        {"tiny": encoder}, images, y, ids, test, "binary", fractions=(0.5, 1.0), steps=1, n_boot=20
    )
    assert table["protocol"].unique().tolist() == ["finetune"]
    assert table["fraction"].tolist() == [0.5, 1.0] and table["n_train"].tolist() == [8, 14]


def test_encoder_sources():
    assert load_encoder("random:resnet18", in_chans=1).num_features == 512
    a = load_encoder("timm:test_efficientnet", in_chans=3, seed=1)
    b = load_encoder("timm:test_efficientnet", in_chans=3, seed=1)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    with pytest.raises(BenchmarkError, match="kind one of"):
        load_encoder("imagenet:resnet18")
    with pytest.raises(BenchmarkError, match="not a timm model"):
        load_encoder("timm:not_a_model_xyz")
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_encoder("timm:test_efficientnet", weights="missing.pth")
    with pytest.raises(BenchmarkError, match="probes only"):
        load_encoder("features:f.parquet")


def test_run_sources_use_their_run_loader(monkeypatch, tmp_path):
    tiny = load_encoder("timm:test_efficientnet")
    monkeypatch.setattr("imaging.finetune.load_pretrained_encoder", lambda run_dir: tiny)
    assert load_encoder(f"ssl:{tmp_path}") is tiny
    monkeypatch.setattr("contig.embed.load_image_encoder", lambda run_dir: tiny, raising=False)
    assert load_encoder(f"contig:{tmp_path}") is tiny


def test_timm_weights_file_is_loaded(tmp_path):
    source = load_encoder("timm:test_efficientnet", in_chans=1, seed=7)
    path = tmp_path / "weights.pth"
    torch.save(source.model.state_dict(), path)
    loaded = load_encoder("timm:test_efficientnet", in_chans=1, weights=str(path), seed=8)
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(loaded.forward_features(x), source.forward_features(x))


def test_non_finite_predictions_are_recorded_as_nan():
    from contig.benchmark.harness import _evaluate

    y = np.array([0, 1] * 10)
    ids = np.arange(20).astype(str)
    test = np.arange(20) >= 10
    table = _evaluate(
        lambda rows, seed: np.full(10, np.nan),
        y,
        ids,
        test,
        "regression",
        "t",
        "m",
        "finetune",
        (1.0,),
        (0,),
        10,
        0.05,
    )
    assert table["metric"].tolist() == ["mse", "r2"] and table["value"].isna().all()
