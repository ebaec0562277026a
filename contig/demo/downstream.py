"""The demo's downstream benchmark: label efficiency of every method (ContIG and its controls) and the
image traits its frozen features carry, each number beside the counts and the control it must beat.

Splits are by person: training pool = the ``train`` split (the people the encoders were pretrained on,
now with labels), ``val`` = early stopping of fine-tuning only, ``test`` = every reported number.
Tasks from ``downstream/labels.parquet``:

* ``glaucoma_suspect`` (binary, AUROC) and ``grade`` (5 ordinal grades, QWK): linear probe (L2 logistic
  regression, C = 0.05 on standardised features) on frozen features at every label fraction;
  ``glaucoma_suspect`` is also fine-tuned end to end at every fraction.
* every rendered image trait (``truth/image_traits.parquet``; ridge regression R² at 100% labels): how much
  of each trait the frozen features carry linearly. Each trait row carries its heritability ``h2`` (the
  designed ``h2_expected`` of ``truth.json``); traits with h² = 0 (``macula_darkness``: age and sex only)
  are the **negative control** (``negative_control``): genetics cannot teach an encoder about them, so a
  method's R² gain over random init there is what it gains without genetics. The rows of task
  ``GAIN_TASK`` hold, per method, the R² gain over ``random`` averaged over the heritable traits, on the
  heritability-free traits, and the difference of the two, with paired 95% bootstrap intervals (the same
  resampled test people for both methods and both trait groups). A method ``m`` that has a permuted-genetics
  control ``m_permuted`` among the methods is also compared with it (task
  ``probe_r2_gain_vs_m_permuted``): the same training with and without real genetics, so its gain is the
  part genetics taught (random init also differs from ContIG in having had no training at all).

**Label fractions that can be scored.** A label fraction draws people (all images of a person together;
``contig.benchmark.label_fraction_subset``: stratified by the person's worst label, nested across
fractions). Every classification row reports its counts: ``n_train_people``/``n_train_positive`` among the
drawn training people, ``n_test_people``/``n_test_positive`` in the test split, and the per-class counts of
people (``train_class_counts``, ``test_class_counts``: "class:people" by the person's worst label). A
*positive* person has a label above 0 (binary: the finding; ordinal: any grade above 0). A (task,
fraction) is **refused**, not merged, when the drawn training people hold fewer than ``min_positives``
positives or negatives, or the test split does: its rows stay in the table with NaN values and the
reason in ``skipped``, so a table shows that the fraction was too small to score rather than a number
from one positive (at 2,500 people, 1% of the training pool has 12 people and about one glaucoma
suspect). Nothing is fitted for a refused fraction.

**Fine-tuning to convergence.** Fine-tuning (encoder + linear head, every weight trained from the first
step, random init included) stops early on the validation loss of the ``val`` people
(``contig.benchmark.finetune_encoder``): evaluated every ``finetune_eval_every`` steps, stopped after
``finetune_patience`` evaluations without improvement or at ``finetune_steps``, the best weights restored.
Rows report ``steps_trained``, ``best_step``, ``val_loss``, ``val_metric`` (AUROC of the validation people
at the best step), ``n_val`` (images), ``n_val_people`` and ``n_val_positive``. All validation people are
used at every fraction (the same for every method), which is more labels than a small fraction would have
in practice; test people are never seen before scoring.

Intervals are 95% percentile bootstraps over test people (``contig.benchmark``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from contig.benchmark import (
    benchmark_features,
    benchmark_finetune,
    label_fraction_subset,
    linear_probe,
    score_predictions,
)
from contig.benchmark.probes import METRICS
from contig.dataset import ImageConfig, MultimodalDataset
from contig.demo.settings import DemoConfig
from imaging.metrics import bootstrap_ci

CLASSIFICATION_TASKS = {"glaucoma_suspect": "binary", "grade": "ordinal"}
FINETUNE_TASK = "glaucoma_suspect"
PROBE_C = 0.05  # fixed L2 strength on standardised features: inner CV per fit cost minutes on 2 cores
FINETUNE_LR, FINETUNE_BATCH = 5e-4, 32
HEADLINE_METRIC = {"binary": "auroc", "ordinal": "qwk", "regression": "r2"}
CONTROL = "random"  # the method every trait-probe gain is measured against
PERMUTED_SUFFIX = "_permuted"  # "<method>_permuted" is <method> trained on permuted genetics: its own control
GAIN_TASK = "probe_r2_gain_vs_random"
GAIN_PROTOCOLS = ("heritable_mean", "heritability_free", "heritable_minus_free")
COUNT_COLUMNS = [
    "n_train_people",
    "n_train_positive",
    "n_test_people",
    "n_test_positive",
    "train_class_counts",
    "test_class_counts",
    "skipped",
]
_NOT_TRAITS = ("IID", "image", "eye", "visit")
log = logging.getLogger("contig.demo")


def read_image_table(biobank: Path, name: str) -> pd.DataFrame:
    """A per-image table of the biobank (``downstream/labels.parquet``, ``truth/image_traits.parquet``)
    with ``IID`` as text and ``image`` made an absolute path."""
    table = pd.read_parquet(biobank / name).astype({"IID": str})
    table["image"] = [str(biobank / path) for path in table["image"]]
    return table


def person_counts(ids: np.ndarray, y: np.ndarray) -> dict:
    """People, positive people (worst label > 0) and people per class ("class:people,...") of image rows.

    >>> person_counts(np.array(["a", "a", "b", "c"]), np.array([0, 2, 0, 1]))
    {'people': 3, 'positive': 2, 'classes': '0:1,1:1,2:1'}
    """
    people, person = np.unique(np.asarray(ids), return_inverse=True)
    y = np.asarray(y).astype(np.int64)
    worst = np.zeros(people.size, dtype=np.int64)
    np.maximum.at(worst, person, y)
    classes = np.bincount(worst)
    return {
        "people": int(people.size),
        "positive": int((worst > 0).sum()),
        "classes": ",".join(f"{k}:{int(n)}" for k, n in enumerate(classes)),
    }


def fraction_counts(
    train_ids: np.ndarray,
    train_y: np.ndarray,
    test_ids: np.ndarray,
    test_y: np.ndarray,
    fractions: tuple[float, ...],
    seed: int,
    min_positives: int,
) -> dict[float, dict]:
    """Per label fraction: the ``COUNT_COLUMNS`` of the people it draws (as the benchmark harness draws them)
    and ``skipped`` = why it is refused, e.g. "1 positive / 12 negative of 13 training people (need >= 10
    of each)" (None when it can be scored)."""
    test = person_counts(test_ids, test_y)
    out = {}
    for fraction in fractions:
        rows = label_fraction_subset(train_ids, train_y, fraction, seed, stratify=True)
        train = person_counts(train_ids[rows], train_y[rows])
        short = [
            f"{pos} positive / {people - pos} negative of {people} {where} people"
            for pos, people, where in (
                (train["positive"], train["people"], "training"),
                (test["positive"], test["people"], "test"),
            )
            if min(pos, people - pos) < min_positives
        ]
        out[float(fraction)] = {
            "n_train_people": train["people"],
            "n_train_positive": train["positive"],
            "n_test_people": test["people"],
            "n_test_positive": test["positive"],
            "train_class_counts": train["classes"],
            "test_class_counts": test["classes"],
            "skipped": f"{'; '.join(short)} (need >= {min_positives} of each)" if short else None,
            "_n_train": int(rows.size),
        }
    return out


def heritabilities(biobank: Path) -> dict[str, float]:
    """Designed heritability (``h2_expected``) of every trait in ``truth.json``."""
    truth = json.loads((biobank / "truth.json").read_text())
    return {name: float(entry["h2_expected"]) for name, entry in truth["traits"].items()}


def _features(per_image: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return per_image.filter(like="feat_").to_numpy(np.float64)[rows]


def evaluate(
    labels: pd.DataFrame,
    per_image: dict[str, pd.DataFrame],
    encoders: dict[str, nn.Module],
    biobank: Path,
    s: DemoConfig,
    seed: int,
    progress: bool,
) -> pd.DataFrame:
    """All downstream rows: ``contig.benchmark.COLUMNS`` plus ``COUNT_COLUMNS`` (classification), the
    fine-tuning columns (``contig.benchmark.FINETUNE_COLUMNS``, ``n_val_people``, ``n_val_positive``), and
    ``h2``/``negative_control`` (traits); ``per_image`` rows align with ``labels``; any method names."""
    rows = np.flatnonzero(labels["split"].isin(["train", "test"]).to_numpy())
    table = labels.iloc[rows].reset_index(drop=True)
    ids, test = table["IID"].to_numpy(str), (table["split"] == "test").to_numpy()
    features = {method: _features(frame, rows) for method, frame in per_image.items()}
    frames = []
    plans = {}
    for task, kind in CLASSIFICATION_TASKS.items():
        y = table[task].to_numpy()
        plans[task] = fraction_counts(
            ids[~test], y[~test], ids[test], y[test], tuple(s.fractions), seed, s.min_positives
        )
        scored = [f for f, plan in plans[task].items() if plan["skipped"] is None]
        for fraction, plan in plans[task].items():
            if plan["skipped"]:
                log.info("downstream %s at %g%% labels refused: %s", task, 100 * fraction, plan["skipped"])
        frame = benchmark_features(
            features, y, ids, test, kind, task=task, fractions=scored, seeds=(seed,), n_boot=s.n_boot,
            probe_c=PROBE_C,
        ) if scored else None  # fmt: skip
        frames.append(_with_counts(frame, plans[task], task, kind, "linear", list(features), seed, test))
    frames.append(_finetune(labels, table, ids, test, encoders, plans[FINETUNE_TASK], s, seed))
    frames.extend(_trait_probes(table, features, ids, test, biobank, s, seed))
    results = pd.concat([f for f in frames if len(f)], ignore_index=True)
    for column in [c for c in results.columns if pd.api.types.is_object_dtype(results[c])]:
        # NaN → None: one null for parquet and JSON
        results[column] = results[column].astype(object).where(results[column].notna(), None)
    return results


def _with_counts(
    frame: pd.DataFrame | None,
    plan: dict[float, dict],
    task: str,
    kind: str,
    protocol: str,
    methods: list[str],
    seed: int,
    test: np.ndarray,
) -> pd.DataFrame:
    """Scored rows plus NaN rows for refused fractions, each with the counts of its fraction."""
    refused = [
        (
            task,
            method,
            protocol,
            fraction,
            seed,
            metric,
            np.nan,
            np.nan,
            np.nan,
            p["_n_train"],
            int(test.sum()),
        )
        for fraction, p in plan.items()
        if p["skipped"]
        for method in methods
        for metric in METRICS[kind]
    ]
    columns = ["task", "method", "protocol", "fraction", "seed", "metric", "value", "low", "high"]
    refused = pd.DataFrame.from_records(refused, columns=[*columns, "n_train", "n_test"])
    parts = [f for f in (frame, refused) if f is not None and len(f)]
    if not parts:
        return pd.DataFrame(columns=[*columns, "n_train", "n_test", *COUNT_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    for column in COUNT_COLUMNS:
        out[column] = [plan[float(f)][column] for f in out["fraction"]]
    order = {method: k for k, method in enumerate(methods)}  # the caller's method order, then fraction
    key = lambda c: c.map(order) if c.name == "method" else c  # noqa: E731
    return out.sort_values(["method", "fraction", "metric"], key=key, kind="stable").reset_index(drop=True)


def _finetune(
    labels: pd.DataFrame,
    table: pd.DataFrame,
    ids: np.ndarray,
    test: np.ndarray,
    encoders: dict[str, nn.Module],
    plan: dict[float, dict],
    s: DemoConfig,
    seed: int,
) -> pd.DataFrame:
    """Fine-tune every encoder on ``FINETUNE_TASK`` at every fraction that can be scored, early-stopped on
    the ``val`` people."""
    kind = CLASSIFICATION_TASKS[FINETUNE_TASK]
    scored = [f for f, p in plan.items() if p["skipped"] is None]
    frame = None
    if scored and encoders:
        val = labels[labels["split"] == "val"].reset_index(drop=True)
        images = _images(table)
        val_images, val_y = _images(val), val[FINETUNE_TASK].to_numpy()
        start = time.perf_counter()
        frame = benchmark_finetune(
            encoders, images, table[FINETUNE_TASK].to_numpy(), ids, test, kind, task=FINETUNE_TASK,
            fractions=scored, seeds=(seed,), steps=s.finetune_steps, lr=FINETUNE_LR, batch_size=FINETUNE_BATCH,
            n_boot=s.n_boot, val_images=val_images, val_y=val_y, eval_every=s.finetune_eval_every,
            patience=s.finetune_patience,
        )  # fmt: skip
        counts = person_counts(val["IID"].to_numpy(str), val_y)
        frame["n_val_people"], frame["n_val_positive"] = counts["people"], counts["positive"]
        log.info(
            "downstream fine-tuning: %d runs, steps trained %s, %.0f s",
            len(encoders) * len(scored),
            frame.drop_duplicates(["method", "fraction"])["steps_trained"].tolist(),
            time.perf_counter() - start,
        )
    return _with_counts(frame, plan, FINETUNE_TASK, kind, "finetune", list(encoders), seed, test)


def _images(table: pd.DataFrame) -> torch.Tensor:
    return torch.stack([item["image"] for item in MultimodalDataset(table, ImageConfig())])


def _trait_probes(
    table: pd.DataFrame,
    features: dict[str, np.ndarray],
    ids: np.ndarray,
    test: np.ndarray,
    biobank: Path,
    s: DemoConfig,
    seed: int,
) -> list[pd.DataFrame]:
    """Ridge probe R² of every image trait per method (rows marked with h² and the negative control), and
    the paired gains over ``CONTROL`` on heritable vs heritability-free traits (``GAIN_TASK`` rows)."""
    traits = table[["IID", "image"]].merge(
        read_image_table(biobank, "truth/image_traits.parquet"),
        on=["IID", "image"],
        how="left",
        validate="one_to_one",
    )
    names = [c for c in traits.columns if c not in _NOT_TRAITS and pd.api.types.is_numeric_dtype(traits[c])]
    h2 = heritabilities(biobank)
    y = traits[names].to_numpy(np.float64)  # (N, T)
    n_train, n_test = int((~test).sum()), int(test.sum())
    people = {"n_train_people": len(np.unique(ids[~test])), "n_test_people": len(np.unique(ids[test]))}
    predictions: dict[str, np.ndarray] = {}
    records = []
    for method, X in features.items():
        predictions[method] = np.column_stack(
            [linear_probe(X[~test], y[~test, k], X[test], "regression", seed=seed) for k in range(len(names))]
        )  # (N_test, T)
        for k, trait in enumerate(names):
            scores = score_predictions(
                y[test, k],
                predictions[method][:, k],
                "regression",
                n_boot=s.n_boot,
                seed=seed,
                groups=ids[test],
            )
            for metric, (value, low, high) in scores.items():
                records.append(
                    {"task": f"trait:{trait}", "method": method, "protocol": "linear", "fraction": 1.0,
                     "seed": seed, "metric": metric, "value": value, "low": low, "high": high,
                     "n_train": n_train, "n_test": n_test, **people, "h2": h2.get(trait, np.nan),
                     "negative_control": h2.get(trait) == 0.0}
                )  # fmt: skip
    frames = [pd.DataFrame.from_records(records)]
    if CONTROL in predictions:
        frames.append(_gains(y[test], predictions, names, h2, ids[test], s.n_boot, seed, n_train, n_test))
    for control in [m for m in predictions if m.endswith(PERMUTED_SUFFIX)]:
        method = control.removesuffix(PERMUTED_SUFFIX)
        if method in predictions:  # the same training with real genetics vs permuted: the genetic part
            pair = {method: predictions[method], control: predictions[control]}
            frames.append(
                _gains(y[test], pair, names, h2, ids[test], s.n_boot, seed, n_train, n_test, control=control)
            )
    return frames


def _gains(
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    names: list[str],
    h2: dict[str, float],
    groups: np.ndarray,
    n_boot: int,
    seed: int,
    n_train: int,
    n_test: int,
    control: str = CONTROL,
) -> pd.DataFrame:
    """Per method ≠ ``control``: mean R² gain over heritable traits, gain on heritability-free traits, and
    their difference, each with a paired bootstrap interval over test people (``groups``); task
    ``probe_r2_gain_vs_<control>``."""
    heritable = [k for k, t in enumerate(names) if h2.get(t, 0.0) > 0]
    free = [k for k, t in enumerate(names) if h2.get(t) == 0.0]
    groups_traits = {
        "heritable_mean": ",".join(names[k] for k in heritable),
        "heritability_free": ",".join(names[k] for k in free),
        "heritable_minus_free": ",".join(names[k] for k in heritable)
        + " − "
        + ",".join(names[k] for k in free),
    }

    def gain(columns: list[int]):
        def metric(y, method, control):
            if not columns:
                return np.nan
            return float(np.mean(_r2_columns(y[:, columns], method[:, columns])
                                 - _r2_columns(y[:, columns], control[:, columns])))  # fmt: skip

        return metric

    def difference(y, method, control):
        return gain(heritable)(y, method, control) - gain(free)(y, method, control)

    metrics = {
        "heritable_mean": gain(heritable),
        "heritability_free": gain(free),
        "heritable_minus_free": difference,
    }
    records = []
    for method, prediction in predictions.items():
        if method == control:
            continue
        for protocol, metric in metrics.items():
            value, low, high = bootstrap_ci(
                metric, y, prediction, predictions[control], n_boot=n_boot, seed=seed, groups=groups
            )
            records.append(
                {"task": f"probe_r2_gain_vs_{control}", "method": method, "protocol": protocol, "fraction": 1.0, "seed": seed,
                 "metric": "r2_gain", "value": value, "low": low, "high": high, "n_train": n_train,
                 "n_test": n_test, "traits": groups_traits[protocol]}
            )  # fmt: skip
    return pd.DataFrame.from_records(records)


def _r2_columns(y: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """(T,) R² of each column of (N, T) targets; NaN for a constant column."""
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    ss_res = ((y - prediction) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def _headline(task: str) -> str | None:
    if task.startswith("probe_r2_gain_vs_"):
        return "r2_gain"
    if task.startswith("trait:"):
        return HEADLINE_METRIC["regression"]
    kind = CLASSIFICATION_TASKS.get(task)
    return HEADLINE_METRIC[kind] if kind else None


_CELL_EXTRAS = (
    "n_train_people",
    "n_train_positive",
    "n_test_positive",
    "skipped",
    "steps_trained",
    "best_step",
    "val_loss",
    "val_metric",
    "h2",
    "negative_control",
    "traits",
)


def summary(results: pd.DataFrame) -> dict:
    """``{task: {protocol: {method: {fraction: cell}}}}``, headline metric only, for any method names.

    A cell holds ``metric, value, low, high, n_train`` and, where the row has them, the counts
    (``n_train_people``, ``n_train_positive``, ``n_test_positive``), ``skipped`` (why a fraction was
    refused), fine-tuning's ``steps_trained``, ``best_step``, ``val_loss``, ``val_metric``, a trait's ``h2``
    and ``negative_control``. Task ``GAIN_TASK`` ("probe_r2_gain_vs_random") has protocols
    ``heritable_mean``, ``heritability_free`` and ``heritable_minus_free`` (metric ``r2_gain``, paired 95%
    interval, ``traits`` = the traits averaged): per method, the probe R² gain over random init on the
    heritable image traits, on the heritability-free ones, and the difference.
    """
    out: dict = {}
    for row in results.to_dict(orient="records"):
        if row["metric"] != _headline(row["task"]):
            continue
        cell = out.setdefault(row["task"], {}).setdefault(row["protocol"], {}).setdefault(row["method"], {})
        entry = {
            "metric": row["metric"],
            "value": _plain(row["value"]),
            "low": _plain(row["low"]),
            "high": _plain(row["high"]),
            "n_train": int(row["n_train"]),
        }
        for key in _CELL_EXTRAS:
            value = row.get(key)
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                continue
            if key in ("n_train_people", "n_train_positive", "n_test_positive", "steps_trained", "best_step"):
                value = int(value)
            elif key in ("val_loss", "val_metric", "h2"):
                value = _plain(value)
            elif key == "negative_control":
                value = bool(value)
            entry[key] = value
        cell[f"{row['fraction']:g}"] = entry
    return out


def _plain(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)
