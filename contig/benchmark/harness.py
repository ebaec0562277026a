"""In-memory benchmark: methods × protocols × label fractions × seeds → one long results table.

The entry points for code that already holds its data (the ContIG demo, notebooks):

- ``benchmark_features``: frozen features per method (numpy arrays), linear probe and/or k-NN;
- ``benchmark_finetune``: encoders per method, full fine-tuning on image tensors; with validation tensors
  (people of neither part) it early-stops on them and adds ``FINETUNE_COLUMNS`` to the table.

Both take one row per image: labels ``y`` (N,), person ``ids`` (N,) and a boolean ``test`` (N,) marking
the held-out rows; the rest is the training pool. For each fraction and seed, people of the training
pool are subsampled (``label_fraction_subset``: stratified by class, nested across fractions), the
protocol is fitted and the test rows scored with a 95% percentile bootstrap that resamples people.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(80, 4)); y = (X[:, 0] > 0).astype(int)
>>> ids = np.arange(80).astype(str); test = np.arange(80) >= 60
>>> table = benchmark_features({"raw": X}, y, ids, test, "binary", fractions=(0.1, 1.0), n_boot=100)
>>> table[["method", "protocol", "fraction", "metric"]].values.tolist()
[['raw', 'linear', 0.1, 'auroc'], ['raw', 'linear', 1.0, 'auroc']]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from contig.benchmark.errors import BenchmarkError
from contig.benchmark.finetune import finetune_encoder
from contig.benchmark.probes import KINDS, METRICS, Kind, knn_probe, linear_probe, score_predictions
from contig.benchmark.subsets import label_fraction_subset
from imaging.metrics import BootstrapCI

COLUMNS = [
    "task",
    "method",
    "protocol",
    "fraction",
    "seed",
    "metric",
    "value",
    "low",
    "high",
    "n_train",
    "n_test",
]
# Added by benchmark_finetune with validation tensors: how long each run trained and how well it validated.
FINETUNE_COLUMNS = ["steps_trained", "best_step", "val_loss", "val_metric", "n_val"]
FEATURE_PROTOCOLS = ("linear", "knn")
PROTOCOLS = (*FEATURE_PROTOCOLS, "finetune")
DEFAULT_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)
_NAN = float("nan")
_NAN_SCORES = {kind: {m: BootstrapCI(_NAN, _NAN, _NAN, 0, 0) for m in METRICS[kind]} for kind in KINDS}
log = logging.getLogger(__name__)

# (train rows, seed) → test predictions, or (test predictions, extra columns of the run's rows)
Predictor = Callable[[np.ndarray, int], "np.ndarray | tuple[np.ndarray, dict]"]


def benchmark_features(
    features: Mapping[str, np.ndarray],
    y: np.ndarray,
    ids: np.ndarray,
    test: np.ndarray,
    kind: Kind,
    *,
    task: str = "task",
    protocols: Sequence[str] = ("linear",),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0,),
    n_boot: int = 1000,
    alpha: float = 0.05,
    probe_c: float | None = None,
    knn_k: int = 20,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """Linear probe / k-NN on each method's (N, F) features (rows aligned with ``y``, ``ids``, ``test``).

    Returns: a table with ``COLUMNS``, one row per method × protocol × fraction × seed × metric.
    """
    y, ids, test = _check_rows(y, ids, test, kind)
    unknown = sorted(set(protocols) - set(FEATURE_PROTOCOLS))
    if unknown:
        raise BenchmarkError(
            f"protocol(s) {unknown} do not run on features; use {', '.join(FEATURE_PROTOCOLS)}"
        )
    frames = []
    for method, X in features.items():
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise BenchmarkError(
                f"method {method!r}: features have shape {X.shape}, expected ({y.shape[0]}, F)"
            )
        train_X, test_X = X[~test], X[test]
        train_y = y[~test]
        for protocol in protocols:
            if protocol == "linear":

                def predict(rows, seed, train_X=train_X, train_y=train_y, test_X=test_X):
                    return linear_probe(
                        train_X[rows], train_y[rows], test_X, kind, probe_c, num_classes, seed
                    )
            else:

                def predict(rows, seed, train_X=train_X, train_y=train_y, test_X=test_X):
                    return knn_probe(train_X[rows], train_y[rows], test_X, kind, knn_k, num_classes)

            frames.append(
                _evaluate(
                    predict, y, ids, test, kind, task, method, protocol, fractions, seeds, n_boot, alpha
                )
            )
    return _concat(frames)


def benchmark_finetune(
    encoders: Mapping[str, nn.Module],
    images: torch.Tensor,
    y: np.ndarray,
    ids: np.ndarray,
    test: np.ndarray,
    kind: Kind,
    *,
    task: str = "task",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0,),
    steps: int = 100,
    lr: float = 1e-4,
    batch_size: int = 16,
    device: str = "cpu",
    n_boot: int = 1000,
    alpha: float = 0.05,
    num_classes: int | None = None,
    val_images: torch.Tensor | None = None,
    val_y: np.ndarray | None = None,
    eval_every: int = 10,
    patience: int = 5,
) -> pd.DataFrame:
    """Fine-tune each encoder (a fresh copy per fraction and seed) on (N, C, H, W) or (N, C, D, H, W) images.

    Without ``val_images`` every run trains ``steps`` steps. With ``val_images`` (N_val, ...) and ``val_y``
    (N_val,) of people in neither the training pool nor the test rows, ``steps`` is the cap and each run
    stops early on the validation loss (``contig.benchmark.finetune.finetune_encoder``: evaluated every
    ``eval_every`` steps, stopped after ``patience`` evaluations without improvement, best weights
    restored); the validation set is the same at every fraction.

    Returns: a table with ``COLUMNS`` (protocol "finetune"), plus ``FINETUNE_COLUMNS`` with validation:
    ``steps_trained``, ``best_step``, ``val_loss`` and ``val_metric`` (the headline metric of the kind on
    the validation set at ``best_step``) and ``n_val`` (validation images).
    """
    y, ids, test = _check_rows(y, ids, test, kind)
    if images.shape[0] != y.shape[0]:
        raise BenchmarkError(f"{images.shape[0]} images but {y.shape[0]} labels; give one label per image")
    train_images, test_images = images[torch.from_numpy(~test)], images[torch.from_numpy(test)]
    train_y = y[~test]
    if val_images is not None:
        val_y = np.asarray(val_y) if val_y is not None else np.zeros(0)
        if val_images.shape[0] != val_y.shape[0] or val_y.ndim != 1 or val_y.size == 0:
            raise BenchmarkError(
                f"{val_images.shape[0]} validation images but {val_y.shape} labels; give one label per image"
            )
    frames = []
    for method, encoder in encoders.items():

        def predict(rows, seed, encoder=encoder):
            result = finetune_encoder(
                encoder, train_images[torch.from_numpy(rows)], train_y[rows], test_images, kind,
                val_images=val_images, val_y=val_y, max_steps=steps, eval_every=eval_every, patience=patience,
                lr=lr, seed=seed, device=device, batch_size=batch_size, num_classes=num_classes,
            )  # fmt: skip
            if val_images is None:
                return result.predictions
            extra = {"steps_trained": result.steps_trained, "best_step": result.best_step}
            extra |= {"val_loss": result.val_loss, "val_metric": result.val_metric, "n_val": len(val_y)}
            return result.predictions, extra

        frames.append(
            _evaluate(predict, y, ids, test, kind, task, method, "finetune", fractions, seeds, n_boot, alpha)
        )
    return _concat(frames)


def _evaluate(
    predict: Predictor,
    y: np.ndarray,
    ids: np.ndarray,
    test: np.ndarray,
    kind: str,
    task: str,
    method: str,
    protocol: str,
    fractions: Iterable[float],
    seeds: Iterable[int],
    n_boot: int,
    alpha: float,
) -> pd.DataFrame:
    """Score ``predict`` at every fraction × seed; the bootstrap resamples test people (``ids``)."""
    train_y, train_ids = y[~test], ids[~test]
    test_y, test_ids = y[test], ids[test]
    stratify = kind != "regression"
    records, extras = [], []
    for seed in seeds:
        for fraction in fractions:
            rows = label_fraction_subset(train_ids, train_y, fraction, seed, stratify=stratify)
            run = (task, method, protocol, float(fraction), int(seed))
            prediction = predict(rows, seed)
            prediction, extra = prediction if isinstance(prediction, tuple) else (prediction, {})
            if np.all(np.isfinite(prediction)):
                options = {"n_boot": n_boot, "seed": seed, "groups": test_ids, "alpha": alpha}
                scores = score_predictions(test_y, prediction, kind, **options)
            else:  # e.g. a diverged fine-tuning: record NaN and go on
                log.warning("%s/%s/%s at fraction %g, seed %d: non-finite predictions", *run)
                scores = _NAN_SCORES[kind]
            for metric, (value, low, high) in scores.items():
                records.append((*run, metric, value, low, high, rows.size, int(test.sum())))
                extras.append(extra)
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    if any(extras):
        frame = pd.concat([frame, pd.DataFrame(extras, index=frame.index)], axis=1)
    return frame.sort_values(["fraction", "seed", "metric"], kind="stable").reset_index(drop=True)


def _check_rows(y, ids, test, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind not in KINDS:
        raise BenchmarkError(f"unknown task kind {kind!r}; use one of {', '.join(KINDS)}")
    y, ids, test = np.asarray(y), np.asarray(ids).astype(str), np.asarray(test)
    if test.dtype != bool:
        raise BenchmarkError(f"test must be a boolean (N,) mask of held-out rows, got dtype {test.dtype}")
    if not (y.ndim == 1 and y.shape == ids.shape == test.shape):
        raise BenchmarkError(
            f"y, ids and test must be (N,) arrays of one length, got {y.shape}, {ids.shape}, {test.shape}"
        )
    if not test.any() or test.all():
        raise BenchmarkError(
            f"{int(test.sum())} of {test.size} rows are test rows; both parts must be non-empty"
        )
    shared = np.intersect1d(ids[test], ids[~test])
    if shared.size:
        raise BenchmarkError(
            f"{shared.size} people have images in both train and test (e.g. {shared[0]}); split by person"
        )
    return y, ids, test


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
