"""Downstream metrics in float64 and a percentile bootstrap for their 95% intervals.

Every metric takes plain arrays (numpy or anything ``np.asarray`` accepts) and returns a float (or one
float per class for Dice). An undefined value is NaN, never an exception: AUROC with one class only, R²
of a constant target, QWK when both raters use one class, Dice of a class absent from both maps.

>>> y = np.array([0, 0, 1, 1])
>>> auroc(y, np.array([0.1, 0.4, 0.35, 0.8]))
0.75
>>> quadratic_weighted_kappa(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]))
0.8
>>> dice_per_class(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [2, 0]]), num_classes=3).round(3).tolist()
[1.0, 0.667]
>>> estimate, low, high = bootstrap_ci(mse, np.arange(20.0), np.arange(20.0) + 1, n_boot=200)
>>> float(estimate), float(low), float(high)
(1.0, 1.0, 1.0)

The bootstrap resamples rows (or whole groups, e.g. the two eyes of one person) with replacement. It
draws every resample at once as a (n_boot, N) matrix of counts; AUROC, QWK, MSE and R² then evaluate all
resamples in one vectorised pass, any other metric is called once per resample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from imaging.errors import ImagingError

__all__ = [
    "BootstrapCI",
    "MetricInputError",
    "auroc",
    "bootstrap_ci",
    "classes_from_probabilities",
    "dice_per_class",
    "dice_per_volume",
    "mean_dice",
    "mse",
    "quadratic_weighted_kappa",
    "r2",
]

# Resamples evaluated at once in the vectorised paths: bounds the (chunk, N) work arrays to ~2e6 cells.
_CELLS_PER_CHUNK = 2_000_000


class MetricInputError(ImagingError, ValueError):
    """Arrays passed to a metric have mismatched lengths, bad values or the wrong shape."""


# ----------------------------------------------------------------------------------------- metrics


def dice_per_class(
    pred: np.ndarray, target: np.ndarray, num_classes: int, include_background: bool = False
) -> np.ndarray:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of each class of two integer label maps.

    Args:
        pred, target: integer label maps of one shape, e.g. (H, W), (D, H, W) or a batch (B, D, H, W);
            all voxels are pooled (for a per-image mean call this per image).
        num_classes: K; labels must lie in 0..K-1, class 0 is background.
        include_background: also report class 0.

    Returns:
        float64 (K-1,) for classes 1..K-1, or (K,) for 0..K-1 with ``include_background``. A class absent
        from both ``pred`` and ``target`` is NaN (no evidence either way); ``mean_dice`` skips it.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise MetricInputError(f"dice: pred shape {pred.shape} differs from target shape {target.shape}")
    _check_labels(pred, target, num_classes)
    confusion = np.bincount(
        target.ravel().astype(np.int64) * num_classes + pred.ravel(), minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)  # rows = target class, columns = predicted class
    intersection = np.diag(confusion).astype(np.float64)
    total = confusion.sum(axis=0) + confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * intersection / total, np.nan)
    return dice if include_background else dice[1:]


def _check_labels(pred: np.ndarray, target: np.ndarray, num_classes: int) -> None:
    """Both label maps hold integers in 0..num_classes-1."""
    for name, labels in (("pred", pred), ("target", target)):
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise MetricInputError(f"dice: {name} must hold integer class labels, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise MetricInputError(
                f"dice: {name} holds labels outside 0..{num_classes - 1}; check num_classes={num_classes}"
            )


def dice_per_volume(
    pred: np.ndarray, target: np.ndarray, num_classes: int, include_background: bool = False
) -> np.ndarray:
    """Dice of every foreground class in every volume: the per-volume table that segmentation scores average.

    Args:
        pred, target: (N, *S) integer label maps (N volumes or images), labels in 0..K-1.
        num_classes: K (class 0 is background).
        include_background: also report class 0 (then (N, K)).

    Returns:
        float64 (N, K-1) (or (N, K)): row ``n`` is ``dice_per_class(pred[n], target[n], K)``; a class absent from both
        the prediction and the truth of a volume is NaN there (left out of that class's mean over volumes).

    >>> t = np.array([[0, 1, 1, 2], [0, 0, 1, 1]])
    >>> dice_per_volume(np.array([[0, 1, 0, 2], [0, 0, 1, 1]]), t, 3).round(3).tolist()
    [[0.667, 1.0], [1.0, nan]]
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim < 2:
        raise MetricInputError(
            f"dice_per_volume: pred {pred.shape} and target {target.shape} must be one (N, *S) shape"
        )
    _check_labels(pred, target, num_classes)
    n, k = pred.shape[0], num_classes
    flat_p = pred.reshape(n, -1).astype(np.int64)
    flat_t = target.reshape(n, -1).astype(np.int64)
    offsets = (np.arange(n) * k)[:, None]
    predicted = np.bincount((flat_p + offsets).ravel(), minlength=n * k).reshape(n, k)
    truth = np.bincount((flat_t + offsets).ravel(), minlength=n * k).reshape(n, k)
    hits = np.where(flat_p == flat_t, flat_t + offsets, n * k)  # n·k collects the misses
    intersection = np.bincount(hits.ravel(), minlength=n * k + 1)[: n * k].reshape(n, k)
    total = (predicted + truth).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * intersection / total, np.nan)
    return dice if include_background else dice[:, 1:]


def mean_dice(
    pred: np.ndarray, target: np.ndarray, num_classes: int, include_background: bool = False
) -> float:
    """Mean of :func:`dice_per_class` over the classes present in ``pred`` or ``target`` (NaN if none)."""
    dice = dice_per_class(pred, target, num_classes, include_background)
    present = dice[~np.isnan(dice)]
    return float(present.mean()) if present.size else float("nan")


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Cohen's kappa with quadratic weights (i - j)² of two integer gradings 0..K-1, shape (N,).

    Pass class predictions (e.g. :func:`classes_from_probabilities`), not scores. ``num_classes`` defaults
    to 1 + the largest label seen. Equals sklearn's ``cohen_kappa_score(weights="quadratic",
    labels=range(K))``; NaN when chance disagreement is zero (both raters always give one same grade).
    """
    y_true, y_pred = _paired_1d("quadratic_weighted_kappa", y_true, y_pred)
    k = _num_grades(num_classes, y_true, y_pred)
    weights = np.ones((1, y_true.size))
    return float(_qwk_weighted(weights, y_true.astype(np.int64), y_pred.astype(np.int64), k)[0])


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; ties count one half (the Mann–Whitney U statistic / (n1 n0)).

    Args:
        y_true: (N,) labels. Binary: 0/1 (or False/True). Multiclass: integers 0..K-1.
        score: (N,) score of the positive class, or (N, K) class probabilities → macro mean of the K
            one-vs-rest AUROCs (sklearn's ``multi_class="ovr"``).

    Returns NaN when a class needed is absent (only one class in ``y_true``).
    """
    score = np.asarray(score, dtype=np.float64)
    y_true = np.asarray(y_true)
    if score.ndim == 2:
        if y_true.shape != score.shape[:1]:
            raise MetricInputError(f"auroc: y_true shape {y_true.shape} does not match scores {score.shape}")
        values = [auroc(y_true == c, score[:, c]) for c in range(score.shape[1])]
        return float(np.mean(values))
    y_true, score = _paired_1d("auroc", y_true, score)
    positive = _binary("auroc", y_true)
    return float(_auroc_weighted(np.ones((1, y_true.size)), positive, score)[0])


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error of (N,) targets and predictions."""
    y_true, y_pred = _as_float64("mse", y_true, y_pred)
    return float(_mse_weighted(np.ones((1, y_true.size)), y_true, y_pred)[0])


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot of (N,) targets; NaN for a constant target."""
    y_true, y_pred = _as_float64("r2", y_true, y_pred)
    return float(_r2_weighted(np.ones((1, y_true.size)), y_true, y_pred)[0])


def classes_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(N, K) class probabilities → (N,) int64 most probable class (for QWK and accuracy).

    Rows must be probabilities (non-negative, summing to 1 within 1e-4), not logits; apply a softmax first.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise MetricInputError(f"expected (N, K) class probabilities, got shape {probabilities.shape}")
    if probabilities.size and (
        probabilities.min() < 0 or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    ):
        raise MetricInputError(
            "class probabilities must be non-negative and sum to 1 per row; these look like logits, "
            "apply a softmax first"
        )
    return probabilities.argmax(axis=1).astype(np.int64)


# ------------------------------------------------------------------------------------------ bootstrap


class BootstrapCI(tuple):
    """``(estimate, low, high)``; also ``n_valid`` and ``n_skipped`` resamples (metric undefined → skipped)."""

    n_valid: int
    n_skipped: int

    def __new__(cls, estimate: float, low: float, high: float, n_valid: int, n_skipped: int):
        interval = super().__new__(cls, (estimate, low, high))
        interval.n_valid, interval.n_skipped = n_valid, n_skipped
        return interval

    @property
    def estimate(self) -> float:
        return self[0]

    @property
    def low(self) -> float:
        return self[1]

    @property
    def high(self) -> float:
        return self[2]

    def __repr__(self) -> str:
        return (
            f"BootstrapCI(estimate={self[0]:.4g}, low={self[1]:.4g}, high={self[2]:.4g}, "
            f"n_valid={self.n_valid}, n_skipped={self.n_skipped})"
        )


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> BootstrapCI:
    """Percentile bootstrap interval of ``metric(*arrays)``.

    Args:
        metric: called as ``metric(*arrays)`` on arrays sharing their first axis N (rows = samples).
        arrays: the metric's arguments, e.g. ``(y_true, score)``; each (N, ...).
        n_boot: number of resamples.
        seed: seed of the resampling generator (same seed → same interval).
        alpha: 1 - confidence level; the interval is the alpha/2 and 1 - alpha/2 quantiles.
        groups: (N,) cluster labels (e.g. person IDs when a person has two images): whole groups are
            resampled, so rows of one group stay together. None resamples rows.

    Returns:
        :class:`BootstrapCI` ``(estimate, low, high)``: the metric on all rows and the interval. Resamples on
        which the metric is undefined (NaN/inf, e.g. one class only for AUROC) are skipped and counted in
        ``n_skipped``; if none is valid the interval is (NaN, NaN).
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    if not arrays:
        raise MetricInputError("bootstrap_ci needs at least one array to resample")
    n = arrays[0].shape[0] if arrays[0].ndim else 0
    for position, array in enumerate(arrays):
        if array.ndim == 0 or array.shape[0] != n:
            raise MetricInputError(
                f"bootstrap_ci: array {position} has {array.shape[0] if array.ndim else 0} rows, "
                f"array 0 has {n}; pass arrays with one row per sample"
            )
    if n_boot < 1 or not 0 < alpha < 1:
        raise MetricInputError(f"bootstrap_ci: need n_boot >= 1 and 0 < alpha < 1, got {n_boot}, {alpha}")
    estimate = float(metric(*arrays))
    rng = np.random.default_rng(seed)
    batched = _BATCHED.get(metric)
    values = []
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, n_boot, chunk):
        counts = _resample_counts(rng, n, min(chunk, n_boot - start), groups)  # (b, N) int
        if batched is not None:
            values.append(batched(counts, *arrays))
        else:
            rows = np.arange(n)
            values.append(
                np.array([metric(*(a[np.repeat(rows, c)] for a in arrays)) for c in counts], np.float64)
            )
    values = np.concatenate(values)
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return BootstrapCI(estimate, float("nan"), float("nan"), 0, n_boot)
    low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(estimate, float(low), float(high), int(valid.size), int(n_boot - valid.size))


def _resample_counts(rng: np.random.Generator, n: int, n_boot: int, groups: np.ndarray | None) -> np.ndarray:
    """(n_boot, N) int64: how often each row is drawn in each resample (rows of a group drawn together)."""
    if groups is None:
        draws = rng.integers(0, n, size=(n_boot, n))
        return _row_bincount(draws, n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise MetricInputError(f"bootstrap_ci: groups has shape {groups.shape}, expected ({n},), one per row")
    _, group_of_row = np.unique(groups, return_inverse=True)
    n_groups = int(group_of_row.max()) + 1 if n else 0
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    return _row_bincount(draws, n_groups)[:, group_of_row]


def _row_bincount(draws: np.ndarray, size: int) -> np.ndarray:
    """Per-row bincount of a (B, M) index matrix with values < size → (B, size)."""
    offsets = np.arange(draws.shape[0])[:, None] * size
    return np.bincount((draws + offsets).ravel(), minlength=draws.shape[0] * size).reshape(-1, size)


# ---------------------------------------- vectorised kernels: weights (B, N) = counts of each row per resample


def _auroc_weighted(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(B,) AUROC with row weights; tied scores are pooled so each tie counts one half."""
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]]) if score.size else []
    w = weights[:, order].astype(np.float64)
    pos_mask = positive[order]
    pos = np.add.reduceat(w * pos_mask, starts, axis=1) if score.size else w[:, :0]  # (B, ties)
    neg = np.add.reduceat(w * ~pos_mask, starts, axis=1) if score.size else w[:, :0]
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each tie group
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)


def _mse_weighted(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    w = weights.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * (y_true - y_pred) ** 2).sum(axis=1) / w.sum(axis=1)


def _r2_weighted(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    w = weights.astype(np.float64)
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * y_true).sum(axis=1, keepdims=True) / total
        ss_tot = (w * (y_true - mean) ** 2).sum(axis=1)
        ss_res = (w * (y_true - y_pred) ** 2).sum(axis=1)
        # A constant target has SS_tot ~ rounding error; treat it as undefined.
        scale = (w * y_true**2).sum(axis=1) + 1.0
        return np.where(ss_tot > 1e-12 * scale, 1.0 - ss_res / ss_tot, np.nan)


def _qwk_weighted(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(B,) quadratic weighted kappa from (B, K, K) weighted confusion matrices."""
    cell = y_true * k + y_pred  # (N,)
    onehot = np.zeros((cell.size, k * k))
    onehot[np.arange(cell.size), cell] = 1.0
    observed = (weights.astype(np.float64) @ onehot).reshape(-1, k, k)
    total = observed.sum(axis=(1, 2))
    expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :]
    grades = np.arange(k)
    penalty = (grades[:, None] - grades[None, :]) ** 2 / max(k - 1, 1) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        disagreement = (penalty * observed).sum(axis=(1, 2)) / total
        chance = (penalty * expected).sum(axis=(1, 2)) / total**2
        return np.where(chance > 0, 1.0 - disagreement / chance, np.nan)


def _auroc_batched(counts: np.ndarray, y_true: np.ndarray, score: np.ndarray) -> np.ndarray:
    if np.ndim(score) != 1:  # multiclass: one call per resample
        rows = np.arange(len(y_true))
        return np.array([auroc(y_true[np.repeat(rows, c)], score[np.repeat(rows, c)]) for c in counts])
    return _auroc_weighted(counts, _binary("auroc", y_true), score.astype(np.float64))


def _qwk_batched(counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    y_true, y_pred = _paired_1d("quadratic_weighted_kappa", y_true, y_pred)
    k = _num_grades(None, y_true, y_pred)
    return _qwk_weighted(counts, y_true.astype(np.int64), y_pred.astype(np.int64), k)


_BATCHED: dict[Callable[..., float], Callable[..., np.ndarray]] = {
    auroc: _auroc_batched,
    quadratic_weighted_kappa: _qwk_batched,
    mse: lambda counts, y, p: _mse_weighted(counts, *_as_float64("mse", y, p)),
    r2: lambda counts, y, p: _r2_weighted(counts, *_as_float64("r2", y, p)),
    np.mean: lambda counts, x: counts @ np.asarray(x, np.float64) / counts.sum(axis=1),
}


# ------------------------------------------------------------------------------------------ validation


def _paired_1d(name: str, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two (N,) numeric arrays of one length, finite; floats become float64, integers stay integers."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise MetricInputError(f"{name}: expected two (N,) arrays of one length, got {a.shape} and {b.shape}")
    checked = []
    for x in (a, b):
        if x.dtype.kind not in "biuf":
            raise MetricInputError(f"{name}: expected numbers, got dtype {x.dtype}")
        if x.dtype.kind == "f":
            x = x.astype(np.float64)
            if not np.all(np.isfinite(x)):
                raise MetricInputError(
                    f"{name}: inputs contain NaN or inf; drop or impute those samples first"
                )
        checked.append(x)
    return checked[0], checked[1]


def _as_float64(name: str, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _paired_1d(name, a, b)
    return a.astype(np.float64), b.astype(np.float64)


def _binary(name: str, y_true: np.ndarray) -> np.ndarray:
    values = np.unique(y_true)
    if not np.all(np.isin(values, [0, 1])):
        raise MetricInputError(
            f"{name}: binary labels must be 0/1, got values {values[:5].tolist()}; for K classes pass (N, K) scores"
        )
    return y_true.astype(bool)


def _num_grades(num_classes: int | None, y_true: np.ndarray, y_pred: np.ndarray) -> int:
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (np.any(labels != np.round(labels)) or labels.min() < 0):
            raise MetricInputError(
                f"quadratic_weighted_kappa: {name} must hold class labels 0..K-1 (e.g. "
                "classes_from_probabilities(p)), not scores or negative values"
            )
    seen = int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1
    if num_classes is not None and seen > num_classes:
        raise MetricInputError(
            f"quadratic_weighted_kappa: labels reach {seen - 1} but num_classes={num_classes}"
        )
    return num_classes or seen
