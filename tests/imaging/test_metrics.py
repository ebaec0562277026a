"""Metrics against sklearn or a loop version; bootstrap fast paths against the per-resample loop."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, mean_squared_error, r2_score, roc_auc_score

import imaging.metrics
from imaging.errors import ImagingError
from imaging.metrics import (
    MetricInputError,
    auroc,
    bootstrap_ci,
    classes_from_probabilities,
    dice_per_class,
    mean_dice,
    mse,
    quadratic_weighted_kappa,
    r2,
)


def test_docstring_examples_run():
    assert doctest.testmod(imaging.metrics).failed == 0


def _dice_loop(pred, target, num_classes):
    """Obvious reference: one class at a time with boolean masks."""
    out = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        denominator = p.sum() + t.sum()
        out.append(np.nan if denominator == 0 else 2 * (p & t).sum() / denominator)
    return np.array(out)


@pytest.mark.parametrize("shape", [(9, 11), (3, 5, 6, 7)])
def test_dice_per_class_matches_loop(shape):
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, size=shape)
    pred = np.where(rng.random(shape) < 0.7, target, rng.integers(0, 4, size=shape))
    expected = _dice_loop(pred, target, 5)  # class 4 absent from both → NaN
    got = dice_per_class(pred, target, num_classes=5, include_background=True)
    np.testing.assert_allclose(got, expected, equal_nan=True)
    assert np.isnan(got[4])
    np.testing.assert_allclose(dice_per_class(pred, target, 5), expected[1:], equal_nan=True)
    assert mean_dice(pred, target, 5) == pytest.approx(np.nanmean(expected[1:]))


def test_dice_edge_cases():
    only_background = np.zeros((4, 4), dtype=int)
    assert np.isnan(mean_dice(only_background, only_background, 3))
    target = only_background.copy()
    target[0, 0] = 1
    assert dice_per_class(only_background, target, 2).tolist() == [0.0]
    with pytest.raises(MetricInputError, match="outside 0..1"):
        dice_per_class(target * 2, target, 2)
    with pytest.raises(MetricInputError, match="shape"):
        dice_per_class(target, target[:2], 2)
    with pytest.raises(MetricInputError, match="integer"):
        dice_per_class(target.astype(float), target, 2)


def test_qwk_matches_sklearn():
    rng = np.random.default_rng(1)
    for _trial in range(20):
        y = rng.integers(0, 5, size=40)
        p = np.clip(y + rng.integers(-2, 3, size=40), 0, 4)
        expected = cohen_kappa_score(y, p, weights="quadratic", labels=np.arange(5))
        assert quadratic_weighted_kappa(y, p, num_classes=5) == pytest.approx(expected, abs=1e-12)
    # The implicit K (1 + largest label) gives the same value: the weight scale cancels.
    assert quadratic_weighted_kappa(y, p) == pytest.approx(expected, abs=1e-12)
    assert quadratic_weighted_kappa(y, y) == pytest.approx(1.0)
    assert np.isnan(quadratic_weighted_kappa(np.ones(5, int), np.ones(5, int)))


def test_qwk_rejects_scores_and_logits():
    with pytest.raises(MetricInputError, match="class labels"):
        quadratic_weighted_kappa(np.array([0, 1, 2]), np.array([0.2, 1.5, 2.0]))
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]])
    with pytest.raises(MetricInputError, match="softmax"):
        classes_from_probabilities(logits)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert classes_from_probabilities(probabilities).tolist() == [0, 1]


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=200)
    score = np.round(y * 0.5 + rng.normal(size=200), 1)  # rounding creates many ties
    assert auroc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert auroc(y.astype(bool), score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert np.isnan(auroc(np.ones(5, int), np.arange(5.0)))
    with pytest.raises(MetricInputError, match="0/1"):
        auroc(np.array([0, 1, 2]), np.arange(3.0))


def test_auroc_multiclass_matches_sklearn_ovr():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=90)
    logits = rng.normal(size=(90, 3)) + np.eye(3)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, probabilities, multi_class="ovr", average="macro")
    assert auroc(y, probabilities) == pytest.approx(expected, abs=1e-12)


def test_mse_r2_match_sklearn():
    rng = np.random.default_rng(4)
    y = rng.normal(size=50)
    p = y + rng.normal(scale=0.5, size=50)
    assert mse(y, p) == pytest.approx(mean_squared_error(y, p), abs=1e-12)
    assert r2(y, p) == pytest.approx(r2_score(y, p), abs=1e-12)
    assert np.isnan(r2(np.full(4, 3.0), np.arange(4.0)))
    with pytest.raises(MetricInputError, match="NaN"):
        mse(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(ImagingError):
        mse(np.arange(3.0), np.arange(4.0))


def _loop_bootstrap(metric, arrays, counts):
    rows = np.arange(len(arrays[0]))
    return np.array([metric(*(a[np.repeat(rows, c)] for a in arrays)) for c in counts])


@pytest.mark.parametrize("name", ["auroc", "qwk", "mse", "r2"])
def test_vectorised_kernels_match_per_resample_loop(name):
    rng = np.random.default_rng(5)
    n = 30
    y_binary = rng.integers(0, 2, size=n)
    y_grade = rng.integers(0, 4, size=n)
    y_real = rng.normal(size=n)
    cases = {
        "auroc": (auroc, (y_binary, np.round(rng.normal(size=n), 1))),
        "qwk": (quadratic_weighted_kappa, (y_grade, np.clip(y_grade + rng.integers(-1, 2, size=n), 0, 3))),
        "mse": (mse, (y_real, y_real + rng.normal(size=n))),
        "r2": (r2, (y_real, y_real + rng.normal(size=n))),
    }
    metric, arrays = cases[name]
    counts = imaging.metrics._resample_counts(np.random.default_rng(0), n, 50, None)
    assert counts.shape == (50, n) and (counts.sum(axis=1) == n).all()
    fast = imaging.metrics._BATCHED[metric](counts, *arrays)
    np.testing.assert_allclose(fast, _loop_bootstrap(metric, arrays, counts), rtol=1e-10, equal_nan=True)


def test_bootstrap_fast_path_equals_generic_path():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, size=60)
    score = y + rng.normal(size=60)
    fast = bootstrap_ci(auroc, y, score, n_boot=300, seed=3)
    slow = bootstrap_ci(lambda a, b: auroc(a, b), y, score, n_boot=300, seed=3)  # not in the fast table
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert fast.estimate == pytest.approx(roc_auc_score(y, score))
    assert fast.low < fast.estimate < fast.high
    assert bootstrap_ci(auroc, y, score, n_boot=300, seed=3) == fast  # same seed, same interval


def test_bootstrap_skips_and_counts_undefined_resamples():
    y = np.zeros(12, dtype=int)
    y[0] = 1  # one positive: many resamples miss it and AUROC is undefined there
    score = np.arange(12.0)
    result = bootstrap_ci(auroc, y, score, n_boot=400, seed=0)
    # P(resample misses row 0) = (11/12)^12 ≈ 0.35.
    assert 0.25 < result.n_skipped / 400 < 0.45
    assert result.n_valid + result.n_skipped == 400
    assert all(np.isfinite(result))


def test_bootstrap_interval_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(100):
        y = rng.normal(size=40)
        p = rng.normal(size=40)
        # True MSE of y - p with both N(0, 1) is 2.
        _, low, high = bootstrap_ci(mse, y, p, n_boot=300, seed=trial)
        hits += low <= 2.0 <= high
    assert 85 <= hits <= 100


def test_group_bootstrap_keeps_groups_together():
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(10), 2)  # ten people with two images each
    counts = imaging.metrics._resample_counts(rng, 20, 200, groups)
    assert (counts[:, 0::2] == counts[:, 1::2]).all()
    assert (counts.sum(axis=1) == 20).all()
    # Perfectly correlated pairs: the group bootstrap sees 10 independent units, so its interval is
    # wider than the naive row bootstrap that treats 20 images as independent.
    values = np.repeat(rng.normal(size=10), 2)
    mean_sq = lambda v, z: float(np.mean((v - z) ** 2))  # noqa: E731
    zeros = np.zeros(20)
    _, lo_rows, hi_rows = bootstrap_ci(mean_sq, values, zeros, n_boot=500)
    _, lo_groups, hi_groups = bootstrap_ci(mean_sq, values, zeros, n_boot=500, groups=groups)
    assert hi_groups - lo_groups > hi_rows - lo_rows
    with pytest.raises(MetricInputError, match="groups"):
        bootstrap_ci(mse, values, zeros, groups=groups[:5])


def test_bootstrap_rejects_mismatched_rows():
    with pytest.raises(MetricInputError, match="rows"):
        bootstrap_ci(mse, np.arange(5.0), np.arange(4.0))


def test_bootstrap_of_the_mean_batched_equals_the_loop():
    from imaging.metrics import bootstrap_ci

    x = np.random.default_rng(3).normal(size=257)
    batched = bootstrap_ci(np.mean, x, n_boot=300, seed=5)
    looped = bootstrap_ci(lambda v: float(np.mean(v)), x, n_boot=300, seed=5)
    assert batched.estimate == pytest.approx(looped.estimate)
    assert (batched.low, batched.high) == pytest.approx((looped.low, looped.high), abs=1e-12)
