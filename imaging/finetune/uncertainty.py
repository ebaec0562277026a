"""Scoring MC-dropout uncertainty: does it mark the voxels a segmentation gets wrong, and is it calibrated?

Error detection: each voxel is an error when the argmax of the mean probabilities differs from the truth.
An uncertainty map (predictive entropy, probability variance, mutual information) is scored by the AUROC
of ranking error voxels above correct ones (0.5 = chance, 1 = every error more uncertain than every
correct voxel):

* pooled: all test voxels together, with a 95 % bootstrap interval over **volumes** (the voxels of one
  volume are resampled together; the AUROC of every resample is exact, from a V × V table of ordered
  error/correct pairs between volumes, so the bootstrap costs no re-sorting);
* per volume: the AUROC within each volume that has both errors and correct voxels, averaged, with a
  bootstrap interval over those volumes (``imaging.metrics.bootstrap_ci``).

Calibration: the expected calibration error (ECE) of the confidence max_k p̄_k over ``bins`` equal-width
bins, Σ_b (n_b / N) |accuracy_b − confidence_b|, pooled over voxels, with a bootstrap interval over
volumes; ``plot_reliability`` draws the reliability diagram.

>>> truth = np.zeros((2, 4), dtype=np.int64)
>>> probs = np.stack([np.full((2, 4), 0.6), np.full((2, 4), 0.4)], axis=1)
>>> probs[:, :, 0] = [0.3, 0.7]  # voxel 0 is wrong: class 1 wins there
>>> entropy = np.where(probs.argmax(1) != truth, 1.0, 0.1)
>>> error_auroc(probs, truth, entropy)["pooled"]
1.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from imaging.errors import ImagingError
from imaging.io import atomic_target
from imaging.metrics import bootstrap_ci

UNCERTAINTIES = ("entropy", "variance", "mutual_information")


def _check(probs: np.ndarray, targets: np.ndarray, score: np.ndarray | None = None) -> None:
    if probs.ndim < 2 or probs.shape[:1] + probs.shape[2:] != targets.shape:
        raise ImagingError(
            f"uncertainty scores need probabilities (N, K, *S) and targets (N, *S), got {probs.shape} and "
            f"{targets.shape}; pass the MC mean and the label maps of the same volumes"
        )
    if score is not None and score.shape != targets.shape:
        raise ImagingError(
            f"uncertainty map {score.shape} does not match targets {targets.shape}; pass (N, *S)"
        )


def voxel_errors(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, K, *S) mean probabilities, (N, *S) truth → (N, V) bool: the argmax is wrong (V voxels per item)."""
    _check(probs, targets)
    return (probs.argmax(axis=1) != targets).reshape(len(targets), -1)


def ordered_pairs(errors: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(N, V) error flags and scores → (N, N) table C[v, u]: error voxels of item v scoring above correct
    voxels of item u (ties count one half). Σ C / (errors × correct) is the pooled AUROC."""
    n = len(errors)
    table = np.zeros((n, n), dtype=np.float64)
    wrong = [np.sort(score[v][errors[v]]) for v in range(n)]  # sorted runs: searchsorted walks in order
    sizes = np.array([w.size for w in wrong])
    if sizes.sum() == 0:
        return table
    queries, has = np.concatenate(wrong), np.flatnonzero(sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[has]
    for u in range(n):
        right = np.sort(score[u][~errors[u]])
        below = np.searchsorted(right, queries, side="left")
        tied = np.searchsorted(right, queries, side="right") - below
        table[has, u] = np.add.reduceat(below + 0.5 * tied, starts)
    return table


def weighted_auroc(
    table: np.ndarray, wrong: np.ndarray, right: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Pooled AUROC when item i is counted ``weights[b, i]`` times: (N, N) ``ordered_pairs`` table, (N,)
    error and correct voxel counts, (B, N) weights → (B,) AUROCs (NaN without errors or correct voxels)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bv,vu,bu->b", weights, table, weights) / ((weights @ wrong) * (weights @ right))


def error_auroc(
    probs: np.ndarray, targets: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """AUROC of ``score`` (N, *S) for the voxel errors of ``probs`` (N, K, *S) against ``targets`` (N, *S).

    Returns ``pooled`` with ``pooled_ci_low``/``pooled_ci_high`` (bootstrap over items), ``per_volume``
    (mean of the within-item AUROCs) with its interval, ``n_volumes_scored`` (items with both errors and
    correct voxels). NaN where undefined (no error, or no correct voxel).
    """
    score = np.asarray(score, dtype=np.float64)
    _check(probs, targets, score)
    errors = voxel_errors(probs, targets)
    flat = score.reshape(len(score), -1)
    table = ordered_pairs(errors, flat)
    wrong = errors.sum(axis=1).astype(np.float64)
    right = (~errors).sum(axis=1).astype(np.float64)

    def pooled(weights: np.ndarray) -> np.ndarray:
        return weighted_auroc(table, wrong, right, weights)

    ones = np.ones((1, len(errors)))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(errors), np.full(len(errors), 1 / len(errors)), size=n_boot).astype(
        np.float64
    )
    draws = pooled(counts)
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [0.025, 0.975]) if draws.size else (np.nan, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.diag(table) / (wrong * right)
    scored = within[np.isfinite(within)]
    if scored.size:
        interval = bootstrap_ci(np.mean, scored, n_boot=n_boot, seed=seed)
        per_volume = (interval.estimate, interval.low, interval.high)
    else:
        per_volume = (np.nan, np.nan, np.nan)
    return {
        "pooled": float(pooled(ones)[0]),
        "pooled_ci_low": float(low),
        "pooled_ci_high": float(high),
        "per_volume": float(per_volume[0]),
        "per_volume_ci_low": float(per_volume[1]),
        "per_volume_ci_high": float(per_volume[2]),
        "n_volumes_scored": float(scored.size),
    }


def reliability_bins(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per item and bin of the confidence max_k p̄_k on [0, 1] (``bins`` equal widths, right-closed
    except the first): ``count``, ``confidence`` (sum) and ``correct`` (sum), each (N, bins)."""
    _check(probs, targets)
    if bins < 1:
        raise ImagingError(f"reliability needs bins >= 1, got {bins}; pass bins=15")
    confidence = probs.max(axis=1).reshape(len(targets), -1).astype(np.float64)
    correct = (probs.argmax(axis=1) == targets).reshape(len(targets), -1)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    offset = index + bins * np.arange(len(targets))[:, None]
    size = bins * len(targets)

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(
            offset.ravel(), weights=None if weights is None else weights.ravel(), minlength=size
        )

    return {
        "count": total(None).reshape(-1, bins).astype(np.float64),
        "confidence": total(confidence).reshape(-1, bins),
        "correct": total(correct.astype(np.float64)).reshape(-1, bins),
    }


def ece_from_bins(count: np.ndarray, confidence: np.ndarray, correct: np.ndarray) -> float:
    """Σ_b (n_b / N) |accuracy_b − confidence_b| from per-bin totals (bins,) (or summed (N, bins))."""
    count, confidence, correct = (
        np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1]).sum(0)
        for a in (count, confidence, correct)
    )
    return float(np.abs(correct - confidence).sum() / count.sum()) if count.sum() else float("nan")


def expected_calibration_error(
    probs: np.ndarray, targets: np.ndarray, bins: int = 15, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """ECE of the voxels of ``probs`` (N, K, *S) against ``targets`` (N, *S), pooled, with a bootstrap
    interval over items: ``{"ece", "ece_ci_low", "ece_ci_high"}``."""
    table = reliability_bins(probs, targets, bins)
    rng = np.random.default_rng(seed)
    n = len(targets)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(np.float64)  # (B, N)
    totals = {key: counts @ value for key, value in table.items()}  # (B, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.abs(totals["correct"] - totals["confidence"]).sum(1) / totals["count"].sum(1)
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [0.025, 0.975]) if draws.size else (np.nan, np.nan)
    return {"ece": ece_from_bins(**table), "ece_ci_low": float(low), "ece_ci_high": float(high)}


def uncertainty_scores(
    probs: np.ndarray,
    targets: np.ndarray,
    maps: Mapping[str, np.ndarray],
    bins: int = 15,
    n_boot: int = 1000,
    reliability_png: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Flat ``mc_*`` scores of a segmentation's MC-dropout output (what ``results.json`` holds).

    Args:
        probs: (N, K, *S) mean probabilities; targets: (N, *S); maps: name → (N, *S) uncertainty
            (e.g. ``entropy``, ``variance``, ``mutual_information``).
        reliability_png: where to draw the reliability diagram (None: no figure).

    Returns ``mc_error_rate``, ``mc_error_auroc_<name>`` (pooled) with ``_ci_low``/``_ci_high``,
    ``mc_error_auroc_<name>_per_volume`` with its interval, ``mc_error_auroc_chance`` (0.5),
    ``mc_error_volumes_scored`` and ``mc_ece`` with its interval and ``mc_ece_bins``.
    """
    scores: dict[str, float] = {"mc_error_rate": float(voxel_errors(probs, targets).mean())}
    for name, score in maps.items():
        result = error_auroc(probs, targets, score, n_boot=n_boot)
        key = f"mc_error_auroc_{name}"
        scores[key] = result["pooled"]
        scores[f"{key}_ci_low"], scores[f"{key}_ci_high"] = result["pooled_ci_low"], result["pooled_ci_high"]
        scores[f"{key}_per_volume"] = result["per_volume"]
        scores[f"{key}_per_volume_ci_low"] = result["per_volume_ci_low"]
        scores[f"{key}_per_volume_ci_high"] = result["per_volume_ci_high"]
        scores["mc_error_volumes_scored"] = result["n_volumes_scored"]
    scores["mc_error_auroc_chance"] = 0.5
    ece = expected_calibration_error(probs, targets, bins, n_boot)
    scores.update({f"mc_{key}": value for key, value in ece.items()})
    scores["mc_ece_bins"] = float(bins)
    if reliability_png is not None:
        plot_reliability(reliability_bins(probs, targets, bins), reliability_png, ece["ece"])
    return scores


def plot_reliability(
    table: Mapping[str, np.ndarray], path: str | os.PathLike, ece: float | None = None
) -> Path:
    """Reliability diagram (accuracy vs confidence per bin, voxel share below) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count, confidence, correct = (
        np.asarray(table[k], dtype=np.float64).reshape(-1, np.shape(table[k])[-1]).sum(0)
        for k in ("count", "confidence", "correct")
    )
    bins = len(count)
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    filled = count > 0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5), sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    top.bar(
        centres[filled],
        correct[filled] / count[filled],
        width=1 / bins,
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    top.plot(
        centres[filled],
        confidence[filled] / count[filled],
        "o",
        color="C3",
        markersize=3,
        label="mean confidence",
    )
    top.set_ylabel("voxel accuracy")
    top.set_title("MC-dropout reliability" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, count / max(count.sum(), 1), width=1 / bins, color="grey")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (max mean probability)")
    bottom.set_ylabel("share of voxels")
    figure.tight_layout()
    path = Path(path)
    try:
        with atomic_target(path, ".png") as tmp:
            figure.savefig(tmp, dpi=120)
    finally:
        plt.close(figure)
    return path


__all__ = [
    "UNCERTAINTIES",
    "error_auroc",
    "expected_calibration_error",
    "ordered_pairs",
    "plot_reliability",
    "reliability_bins",
    "uncertainty_scores",
    "voxel_errors",
    "weighted_auroc",
]
