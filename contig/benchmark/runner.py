"""``run_benchmark``: a configuration in, ``results.parquet`` and one label-fraction PNG per task out.

The output folder ``config.out`` receives ``config.yaml`` (resolved configuration), ``results.parquet``
(columns ``harness.COLUMNS``, one row per task × method × protocol × fraction × seed × metric) and
``<task>.png``; every file is written atomically.

Training rows are the label table's ``train_splits`` (default train + val), test rows its
``test_split``. Fine-tuning holds out the people of ``finetune_val_split`` (default val) from its
training pool and stops early on their loss (``benchmark_finetune`` with validation tensors), so every
method is compared converged; the probes fit on the whole pool. Rows whose target is missing are left
out of that task. Methods with precomputed features (``features:``) run the probes only; fine-tuning
them is skipped and logged.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from contig.benchmark.config import BenchmarkConfig, TaskSpec
from contig.benchmark.data import load_images, read_features, read_labels
from contig.benchmark.encoders import encode, load_encoder, parse_source
from contig.benchmark.errors import BenchmarkError
from contig.benchmark.harness import COLUMNS, FEATURE_PROTOCOLS, benchmark_features, benchmark_finetune
from contig.benchmark.plots import plot_task
from genetics.atomic import atomic_path
from imaging.training.config import save_resolved

log = logging.getLogger(__name__)
RESULTS_FILE = "results.parquet"


def run_benchmark(config: BenchmarkConfig) -> pd.DataFrame:
    """Run every method × task × protocol × fraction × seed of ``config``; write and return the results."""
    if not config.data:
        raise BenchmarkError(
            "no data given; set data: to a biobank folder (contig simulate) or a label table"
        )
    labels = read_labels(config.data)
    labels = labels[labels["split"].isin([*config.train_splits, config.test_split])].reset_index(drop=True)
    test = (labels["split"] == config.test_split).to_numpy()
    if not test.any() or test.all():
        raise BenchmarkError(
            f"{config.data}: {int(test.sum())} test and {int((~test).sum())} training rows with splits "
            f"{config.train_splits} / {config.test_split!r}; check the split column or train_splits/test_split"
        )
    targets = {task.name: task_target(labels, task, config.data) for task in config.tasks}  # fail early
    val = _validation_rows(labels, config)
    out = Path(config.out)
    save_resolved(config, out / "config.yaml")
    root = Path(config.data) if Path(config.data).is_dir() else Path(config.data).parent
    probes = [p for p in config.protocols if p in FEATURE_PROTOCOLS]
    images = None
    frames = []
    for method in config.methods:
        kind, target = parse_source(method.source)
        encoder, features = None, None
        if kind == "features":
            features = read_features(target, labels)
        else:
            if images is None:
                images = load_images(root, labels["image"].tolist(), config.image_size)
            encoder = load_encoder(method.source, images.shape[1], method.weights, seed=config.init_seed)
            expected = getattr(encoder, "in_chans", images.shape[1])
            if expected != images.shape[1]:
                raise BenchmarkError(
                    f"{method.source}: the encoder takes {expected}-channel input, the images under {root} have "
                    f"{images.shape[1]}; benchmark it on images of its own kind"
                )
            if probes:
                features = encode(encoder, images, config.batch_size, config.device)
        for task in config.tasks:
            y, keep = targets[task.name]
            ids = labels["IID"].to_numpy()[keep]
            common = {"task": task.name, "fractions": config.fractions, "seeds": config.seeds}
            common |= {"n_boot": config.n_boot, "alpha": config.alpha, "num_classes": task.num_classes}
            if probes:
                log.info("%s / %s: %s", task.name, method.name, ", ".join(probes))
                frames.append(
                    benchmark_features(
                        {method.name: features[keep]}, y, ids, test[keep], task.kind, protocols=probes,
                        probe_c=config.probe_c, knn_k=config.knn_k, **common,
                    )
                )  # fmt: skip
            if "finetune" in config.protocols and encoder is None:
                log.warning("%s: precomputed features cannot be fine-tuned; skipped", method.name)
            elif "finetune" in config.protocols:
                log.info("%s / %s: finetune", task.name, method.name)
                pool, checked = keep & ~val, keep & val  # (N,) masks over the label rows
                validation = {}
                if val.any() and not checked.any():
                    log.warning(
                        "%s: no validation row has a target; fine-tuning trains every step", task.name
                    )
                if checked.any():
                    validation = {
                        "val_images": images[np.flatnonzero(checked)],
                        "val_y": y[checked[keep]],
                        "eval_every": config.finetune_eval_every,
                        "patience": config.finetune_patience,
                    }
                frames.append(
                    benchmark_finetune(
                        {method.name: encoder}, images[np.flatnonzero(pool)], y[pool[keep]], ids[pool[keep]],
                        test[pool], task.kind, steps=config.finetune_steps, lr=config.finetune_lr,
                        batch_size=config.finetune_batch_size, device=config.device, **validation, **common,
                    )
                )  # fmt: skip
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    with atomic_path(out / RESULTS_FILE) as tmp:
        results.to_parquet(tmp, index=False)
    if config.plot:
        for task, rows in results.groupby("task", sort=False):
            plot_task(rows, out / f"{_file_name(str(task))}.png")
    return results


def _validation_rows(labels: pd.DataFrame, config: BenchmarkConfig) -> np.ndarray:
    """(N,) bool: rows of ``finetune_val_split`` when fine-tuning is asked for (else none)."""
    if "finetune" not in config.protocols or config.finetune_val_split is None:
        return np.zeros(len(labels), dtype=bool)
    val = (labels["split"] == config.finetune_val_split).to_numpy()
    if not val.any():
        raise BenchmarkError(
            f"{config.data}: no rows of split {config.finetune_val_split!r} to stop fine-tuning early on; "
            "name another split with finetune_val_split=<split>, or finetune_val_split=null to train "
            "finetune_steps steps"
        )
    return val


def task_target(
    labels: pd.DataFrame, task: TaskSpec, source: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """(target values of the rows kept, (N,) bool mask of rows with a target) for one task."""
    if task.target not in labels.columns:
        columns = ", ".join(c for c in labels.columns if c not in ("IID", "image", "split"))
        raise BenchmarkError(f"{source}: task {task.name!r} needs column {task.target!r}; columns: {columns}")
    values = pd.to_numeric(labels[task.target], errors="coerce")
    keep = values.notna().to_numpy()
    if not keep.any():
        raise BenchmarkError(f"{source}: column {task.target!r} has no numeric values")
    y = values.to_numpy(np.float64)[keep]
    if task.threshold is not None:
        y = (y > task.threshold).astype(np.int64)
    elif task.kind != "regression":
        if np.any(y != np.round(y)) or y.min() < 0:
            raise BenchmarkError(f"{source}: {task.kind} column {task.target!r} must hold integers 0..K-1")
        y = y.astype(np.int64)
    return y, keep


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "task"
