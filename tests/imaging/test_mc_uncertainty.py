"""Scoring MC-dropout uncertainty: error-detection AUROC against sklearn, ECE against a loop, a perfect case."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from imaging.errors import ImagingError
from imaging.finetune.uncertainty import (
    error_auroc,
    expected_calibration_error,
    ordered_pairs,
    reliability_bins,
    uncertainty_scores,
    voxel_errors,
    weighted_auroc,
)


def segmentation(n: int = 6, k: int = 3, side: int = 5, seed: int = 0):
    """Random MC means (N, K, S, S, S), truth that agrees with the argmax on ~70% of voxels, and a
    coarse (tied) entropy-like score that is mildly higher on the errors."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k, side, side, side)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = np.where(
        rng.random((n, side, side, side)) < 0.7, probs.argmax(1), rng.integers(0, k, (n, side, side, side))
    )
    wrong = probs.argmax(1) != truth
    score = np.round(rng.random(truth.shape) + 0.4 * wrong, 1)  # rounding makes ties
    return probs, truth, score


def test_error_auroc_equals_sklearn_on_the_same_voxels():
    probs, truth, score = segmentation()
    truth[2] = probs[2].argmax(0)  # a volume without errors: pooled only, no within-volume AUROC
    result = error_auroc(probs, truth, score, n_boot=200)
    wrong = (probs.argmax(1) != truth).ravel()
    assert result["pooled"] == pytest.approx(roc_auc_score(wrong, score.ravel()), abs=1e-12)
    within = [
        roc_auc_score((probs[i].argmax(0) != truth[i]).ravel(), score[i].ravel()) for i in (0, 1, 3, 4, 5)
    ]
    assert result["per_volume"] == pytest.approx(np.mean(within), abs=1e-12)
    assert result["n_volumes_scored"] == len(truth) - 1
    assert result["pooled_ci_low"] <= result["pooled"] <= result["pooled_ci_high"]
    assert result["per_volume_ci_low"] <= result["per_volume"] <= result["per_volume_ci_high"]


def test_the_bootstrap_kernel_equals_sklearn_on_repeated_volumes():
    """A resample that takes volume 0 twice, volume 2 once and drops the rest is scored exactly."""
    probs, truth, score = segmentation(n=4, seed=3)
    errors = voxel_errors(probs, truth)
    table = ordered_pairs(errors, score.reshape(4, -1))
    weights = np.array([[2.0, 0.0, 1.0, 0.0]])
    chosen = [0, 0, 2]
    reference = roc_auc_score(errors[chosen].ravel(), score.reshape(4, -1)[chosen].ravel())
    value = weighted_auroc(table, errors.sum(1).astype(float), (~errors).sum(1).astype(float), weights)[0]
    assert value == pytest.approx(reference, abs=1e-12)


def test_entropy_high_exactly_on_the_wrong_voxels_gives_auroc_one():
    probs, truth, _ = segmentation(seed=1)
    wrong = probs.argmax(1) != truth
    entropy = np.where(wrong, 0.9, 0.2) + 0.01 * np.random.default_rng(0).random(truth.shape)
    result = error_auroc(probs, truth, entropy, n_boot=100)
    assert result["pooled"] == 1.0 and result["per_volume"] == 1.0
    assert result["pooled_ci_low"] == result["pooled_ci_high"] == 1.0
    assert error_auroc(probs, truth, -entropy, n_boot=10)["pooled"] == 0.0


def test_ece_equals_a_straightforward_loop():
    probs, truth, _ = segmentation(seed=2)
    bins = 10
    confidence, correct = probs.max(1).ravel(), (probs.argmax(1) == truth).ravel()
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [
            (c, ok)
            for c, ok in zip(confidence, correct, strict=True)
            if (low < c <= high) or (b == 0 and c == 0)
        ]
        if inside:
            accuracy = sum(ok for _, ok in inside) / len(inside)
            mean_confidence = sum(c for c, _ in inside) / len(inside)
            total += len(inside) / len(confidence) * abs(accuracy - mean_confidence)
    result = expected_calibration_error(probs, truth, bins=bins, n_boot=200)
    assert result["ece"] == pytest.approx(total, abs=1e-12)
    assert result["ece_ci_low"] <= result["ece"] <= result["ece_ci_high"]
    assert reliability_bins(probs, truth, bins)["count"].sum() == truth.size


def test_scores_and_reliability_figure(tmp_path):
    probs, truth, score = segmentation(n=3)
    figure = tmp_path / "reliability.png"
    scores = uncertainty_scores(
        probs, truth, {"entropy": score, "variance": score / 2}, n_boot=50, reliability_png=figure
    )
    assert figure.is_file() and figure.read_bytes()[:4] == b"\x89PNG"
    assert scores["mc_error_auroc_entropy"] == scores["mc_error_auroc_variance"]
    assert scores["mc_error_auroc_chance"] == 0.5 and 0 < scores["mc_error_rate"] < 1
    assert {"mc_ece", "mc_ece_ci_low", "mc_ece_ci_high", "mc_error_auroc_entropy_per_volume_ci_high"} <= set(
        scores
    )
    with pytest.raises(ImagingError, match="does not match targets"):
        error_auroc(probs, truth, score[:, :2])
