"""Protocols on frozen features (linear probe, k-NN) and the metrics each task kind is scored with.

Every protocol returns test predictions in one format per task kind:

| kind         | labels          | prediction                         | metrics (``score_predictions``)  |
|--------------|-----------------|------------------------------------|----------------------------------|
| "binary"     | 0/1             | (N,) probability of class 1        | auroc                            |
| "multiclass" | 0..K-1          | (N, K) class probabilities         | auroc (macro one-vs-rest), accuracy |
| "ordinal"    | grades 0..K-1   | (N, K) class probabilities         | qwk (on the most probable grade) |
| "regression" | real            | (N,) predicted value               | mse, r2                          |

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(60, 5)); y = (X[:, 0] > 0).astype(int)
>>> p = linear_probe(X[:40], y[:40], X[40:], kind="binary")
>>> p.shape, bool(score_predictions(y[40:], p, "binary", n_boot=100)["auroc"].estimate > 0.9)
((20,), True)
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from contig.benchmark.errors import BenchmarkError
from imaging.metrics import (
    BootstrapCI,
    auroc,
    bootstrap_ci,
    classes_from_probabilities,
    quadratic_weighted_kappa,
    r2,
)
from imaging.metrics import mse as mse_metric

Kind = Literal["binary", "multiclass", "ordinal", "regression"]
KINDS = ("binary", "multiclass", "ordinal", "regression")
METRICS = {
    "binary": ("auroc",),
    "multiclass": ("auroc", "accuracy"),
    "ordinal": ("qwk",),
    "regression": ("mse", "r2"),
}
C_GRID = np.logspace(-4, 1, 6)  # inverse L2 strength searched by the inner CV
ALPHA_GRID = np.logspace(-2, 4, 7)  # ridge strength searched by RidgeCV (efficient leave-one-out)


def linear_probe(
    train_X: np.ndarray,
    train_y: np.ndarray,
    test_X: np.ndarray,
    kind: Kind = "binary",
    C: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Standardise features, fit a linear model on (N_train, F) ``train_X``, predict (N_test, F) ``test_X``.

    Classification: L2 logistic regression (multinomial for K > 2). With ``C=None`` the inverse strength C
    is chosen from ``C_GRID`` by inner stratified k-fold CV on log-loss, k = min(3, smallest class count);
    when a class has fewer than 2 training samples C is fixed at 1. Regression: ridge, with alpha chosen
    from ``ALPHA_GRID`` by leave-one-out CV, or alpha = 1 / C for a fixed C. Inner folds split rows, not
    people. If training labels hold a single class the prediction is that class for every test row.

    With more features than training rows the standardised features are projected onto the span of the
    training rows first (an exact reparametrisation: the L2-penalised solution lies in that span), which
    makes the fit several times faster and changes no prediction beyond the solver tolerance.

    Returns: test predictions in the format of ``kind`` (module table).
    """
    train_X, train_y, test_X = _check(train_X, train_y, test_X, kind)
    train_X, test_X = _standardise_and_project(train_X, test_X)
    if kind == "regression":
        model = Ridge(alpha=1.0 / C) if C is not None else RidgeCV(alphas=ALPHA_GRID)
        return model.fit(train_X, train_y).predict(test_X).astype(np.float64)
    classes, counts = np.unique(train_y, return_counts=True)
    if classes.size < 2:
        return _format(np.ones((test_X.shape[0], 1)), classes, kind, num_classes)
    folds = min(3, int(counts.min()))
    if C is None and folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        model = LogisticRegressionCV(Cs=C_GRID, cv=cv, scoring="neg_log_loss", max_iter=2000)
    else:
        model = LogisticRegression(C=1.0 if C is None else C, max_iter=2000)
    with warnings.catch_warnings():  # sklearn >= 1.8 warns of changing defaults that do not apply here
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(train_X, train_y)
    return _format(model.predict_proba(test_X), classes, kind, num_classes)


def knn_probe(
    train_X: np.ndarray,
    train_y: np.ndarray,
    test_X: np.ndarray,
    kind: Kind = "binary",
    k: int = 20,
    num_classes: int | None = None,
) -> np.ndarray:
    """k-nearest-neighbour probe with cosine distance (k = min(k, N_train), uniform vote).

    Class probabilities are the neighbours' class shares; regression predicts the neighbours' mean.
    Returns: test predictions in the format of ``kind`` (module table).
    """
    train_X, train_y, test_X = _check(train_X, train_y, test_X, kind)
    k = max(1, min(k, train_X.shape[0]))
    if kind == "regression":
        model = KNeighborsRegressor(n_neighbors=k, metric="cosine")
        return model.fit(train_X, train_y).predict(test_X).astype(np.float64)
    classes = np.unique(train_y)
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_X, train_y)
    return _format(model.predict_proba(test_X), classes, kind, num_classes)


def accuracy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of rows whose most probable class (N, K) equals the (N,) label."""
    return float(np.mean(classes_from_probabilities(probabilities) == np.asarray(y_true)))


def score_predictions(
    y_true: np.ndarray,
    prediction: np.ndarray,
    kind: Kind,
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
    alpha: float = 0.05,
) -> dict[str, BootstrapCI]:
    """Each metric of ``kind`` (module table) with its percentile bootstrap interval.

    ``groups`` (N,) (person IDs) makes the bootstrap resample people rather than images.
    """
    y_true = np.asarray(y_true)
    prediction = np.asarray(prediction, dtype=np.float64)
    options = {"n_boot": n_boot, "seed": seed, "groups": groups, "alpha": alpha}
    if kind == "binary":
        return {"auroc": bootstrap_ci(auroc, y_true.astype(np.int64), prediction, **options)}
    if kind == "multiclass":
        y = y_true.astype(np.int64)
        return {
            "auroc": bootstrap_ci(auroc, y, prediction, **options),
            "accuracy": bootstrap_ci(accuracy, y, prediction, **options),
        }
    if kind == "ordinal":
        grades = classes_from_probabilities(prediction)
        return {"qwk": bootstrap_ci(quadratic_weighted_kappa, y_true.astype(np.int64), grades, **options)}
    if kind == "regression":
        y = y_true.astype(np.float64)
        return {
            "mse": bootstrap_ci(mse_metric, y, prediction, **options),
            "r2": bootstrap_ci(r2, y, prediction, **options),
        }
    raise BenchmarkError(f"unknown task kind {kind!r}; use one of {', '.join(KINDS)}")


def _standardise_and_project(train_X: np.ndarray, test_X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise with training statistics; if F > N_train, express rows in a basis of the training span."""
    scaler = StandardScaler().fit(train_X)
    train_X, test_X = scaler.transform(train_X), scaler.transform(test_X)
    if train_X.shape[1] <= train_X.shape[0]:
        return train_X, test_X
    _, singular, vt = np.linalg.svd(train_X, full_matrices=False)
    basis = vt[singular > 1e-10 * max(singular.max(initial=0.0), 1e-300)].T  # (F, rank)
    if basis.shape[1] == 0:  # constant features: nothing to learn, keep one zero column for sklearn
        return np.zeros((train_X.shape[0], 1)), np.zeros((test_X.shape[0], 1))
    return train_X @ basis, test_X @ basis


def _check(train_X, train_y, test_X, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind not in KINDS:
        raise BenchmarkError(f"unknown task kind {kind!r}; use one of {', '.join(KINDS)}")
    train_X, test_X = np.asarray(train_X, np.float64), np.asarray(test_X, np.float64)
    train_y = np.asarray(train_y)
    if train_X.ndim != 2 or test_X.ndim != 2 or train_X.shape[1] != test_X.shape[1]:
        raise BenchmarkError(
            f"features must be (N, F) with one F for train and test, got {train_X.shape} and {test_X.shape}"
        )
    if train_y.shape != (train_X.shape[0],):
        raise BenchmarkError(
            f"train_y has shape {train_y.shape}, expected ({train_X.shape[0]},): one label per row"
        )
    if train_X.shape[0] == 0:
        raise BenchmarkError("no training rows; raise the label fraction or check the split column")
    if not (np.isfinite(train_X).all() and np.isfinite(test_X).all()):
        raise BenchmarkError("features contain NaN or inf; check the encoder or the feature table")
    if kind != "regression":
        if np.any(train_y != np.round(train_y)) or train_y.min() < 0:
            raise BenchmarkError(
                f"{kind} labels must be integers 0..K-1, got {np.unique(train_y)[:5].tolist()}"
            )
        if kind == "binary" and train_y.max() > 1:
            raise BenchmarkError(
                f"binary labels must be 0/1, got {np.unique(train_y)[:5].tolist()}; set a threshold"
            )
        train_y = train_y.astype(np.int64)
    return train_X, train_y.astype(np.float64) if kind == "regression" else train_y, test_X


def _format(proba: np.ndarray, classes: np.ndarray, kind: str, num_classes: int | None) -> np.ndarray:
    """Columns of the seen ``classes`` → (N,) P(class 1) for binary, else (N, K) with unseen classes at 0."""
    k = 2 if kind == "binary" else max(int(classes.max()) + 1, num_classes or 0)
    full = np.zeros((proba.shape[0], k))
    full[:, classes] = proba
    return full[:, 1] if kind == "binary" else full
