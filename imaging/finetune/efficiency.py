"""Data-efficiency runner: label fractions × seeds × initialisations → one table and one plot.

Each combination is one fine-tuning run in ``<out>/<init>/fraction<F>/seed<S>/``. The table
``<out>/results.parquet`` has one row per run (``init``, ``label_fraction``, ``seed``, ``n_train_items``,
``n_train_persons``, ``n_test_items`` (test volumes), ``n_seeds``, how training ended (``freeze_steps``,
``steps``, ``best_step``, ``stopped_early``), ``headline`` and every test score, with its 95 % interval
over test volumes for Dice); ``<out>/data_efficiency.png`` plots the headline
metric against the label fraction, one line per initialisation (mean over seeds) with a band from the
lowest to the highest seed. With ``resume``, finished runs (those with ``results.json``) are reused.

A scratch initialisation without its own ``encoder_kwargs`` takes the architecture of the first
pretrained run, so scratch and pretrained models differ only in their initial weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from imaging.finetune.run import RESULTS, FinetuneConfig, finetune, headline_metric
from imaging.io import atomic_target
from imaging.ssl.pretrained import SSL_COMMAND
from imaging.training.run_folder import config_file, read_run_config

TABLE = "results.parquet"
PLOT = "data_efficiency.png"


def run_data_efficiency(
    config: FinetuneConfig,
    inits: Mapping[str, str | None],
    fractions: Sequence[float],
    seeds: Sequence[int],
    resume: bool = False,
) -> pd.DataFrame:
    """Fine-tune every (init, fraction, seed); write and return the table (see the module docstring).

    Args:
        config: the shared settings; ``out`` is the parent folder of the runs.
        inits: name → pretrained run directory, or None for scratch (e.g. ``{"scratch": None, "jigsaw": "runs/j"}``).
        fractions: label fractions in (0, 1].
        seeds: fine-tuning seeds (the train/val/test split stays ``config.split_seed``).
    """
    out = Path(config.out)
    scratch_arch = _first_pretrained_architecture(inits)
    rows = []
    for name, run in inits.items():
        for fraction in fractions:
            for seed in seeds:
                run_dir = out / _safe(name) / f"fraction{fraction:g}" / f"seed{seed}"
                done = run_dir / RESULTS
                if resume and done.is_file():
                    result = json.loads(done.read_text())
                else:
                    settings = {
                        "out": str(run_dir),
                        "pretrained": run,
                        "label_fraction": fraction,
                        "seed": seed,
                    }
                    if run is None and scratch_arch and not config.encoder_kwargs:
                        settings.update(scratch_arch)
                    result = finetune(dataclasses.replace(config, **settings), resume=resume)
                headline = headline_metric(result["task"], result["num_classes"])
                rows.append(
                    {
                        "init": name,
                        "label_fraction": float(fraction),
                        "seed": int(seed),
                        "n_train_items": result["n_train_items"],
                        "n_train_persons": result["n_train_persons"],
                        "n_test_items": result["n_test_items"],
                        "n_seeds": len(seeds),
                        "freeze_steps": result.get("freeze_steps"),
                        "steps": result.get("steps"),
                        "best_step": result.get("best_step"),
                        "stopped_early": result.get("stopped_early"),
                        "metric": headline,
                        "headline": result["test"].get(headline, float("nan")),
                        **{f"test_{key}": value for key, value in result["test"].items()},
                    }
                )
    table = pd.DataFrame(rows)
    _write_parquet(table, out / TABLE)
    plot_data_efficiency(table, out / PLOT)
    return table


def plot_data_efficiency(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Headline metric vs label fraction, one line per init (mean over seeds), band = min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, group in table.groupby("init", sort=False):
        stats = group.groupby("label_fraction")["headline"].agg(["mean", "min", "max"]).sort_index()
        axis.plot(stats.index, stats["mean"], marker="o", label=str(name))
        axis.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
    metric = str(table["metric"].iloc[0]) if len(table) else "metric"
    axis.set_xlabel("label fraction")
    axis.set_ylabel(f"test {metric}" + (" (foreground classes)" if metric == "dice" else ""))
    if len(table) and table["label_fraction"].nunique() > 1:
        axis.set_xscale("log")
    axis.legend(title="initialisation")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    try:
        with atomic_target(path, ".png") as tmp:
            figure.savefig(tmp, dpi=120)
    finally:
        plt.close(figure)
    return path


def _first_pretrained_architecture(inits: Mapping[str, str | None]) -> dict:
    for run in inits.values():
        if run is not None and config_file(run).is_file():
            saved = read_run_config(run, SSL_COMMAND)
            kwargs = dict(saved.get("encoder_kwargs") or {})
            return {"encoder": saved.get("encoder"), "encoder_kwargs": kwargs}
    return {}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "init"


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    with atomic_target(path, ".parquet") as tmp:
        table.to_parquet(tmp, index=False)


__all__ = ["PLOT", "TABLE", "plot_data_efficiency", "run_data_efficiency"]
