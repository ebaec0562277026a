"""The demo's downstream benchmark: label-efficiency of ContIG vs SimCLR vs random init.

Training pool = the ``train`` split (the people ContIG and SimCLR were pretrained on, now with labels),
test = the ``test`` split. Tasks from ``downstream/labels.parquet``:

* ``glaucoma_suspect`` (binary, AUROC) and ``grade`` (5 ordinal grades, QWK): linear probe (L2 logistic
  regression, C = 0.05 on standardised features) on frozen features at every label fraction;
  ``glaucoma_suspect`` is also fine-tuned end to end at every fraction;
* every rendered image trait (``truth/image_traits.parquet``, regression R² at 100% labels): how much of
  each trait the frozen features carry linearly.

Intervals are 95% percentile bootstraps over test people (``contig.benchmark``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from contig.benchmark import benchmark_features, benchmark_finetune
from contig.dataset import ImageSettings, MultimodalDataset
from contig.demo.settings import DemoSettings

CLASSIFICATION_TASKS = {"glaucoma_suspect": "binary", "grade": "ordinal"}
FINETUNE_TASK = "glaucoma_suspect"
PROBE_C = 0.05  # fixed L2 strength on standardised features: inner CV per fit cost minutes on 2 cores
HEADLINE_METRIC = {"binary": "auroc", "ordinal": "qwk", "regression": "r2"}


def read_image_table(biobank: Path, name: str) -> pd.DataFrame:
    """A per-image table of the biobank (``downstream/labels.parquet``, ``truth/image_traits.parquet``)
    with ``IID`` as text and ``image`` made an absolute path."""
    table = pd.read_parquet(biobank / name).astype({"IID": str})
    table["image"] = [str(biobank / path) for path in table["image"]]
    return table


def _features(per_image: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return per_image.filter(like="feat_").to_numpy(np.float64)[rows]


def evaluate(
    labels: pd.DataFrame,
    per_image: dict[str, pd.DataFrame],
    encoders: dict[str, nn.Module],
    biobank: Path,
    s: DemoSettings,
    seed: int,
    progress: bool,
) -> pd.DataFrame:
    """All downstream rows (``contig.benchmark.COLUMNS``); ``per_image`` rows align with ``labels``."""
    rows = np.flatnonzero(labels["split"].isin(["train", "test"]).to_numpy())
    table = labels.iloc[rows].reset_index(drop=True)
    ids, test = table["IID"].to_numpy(str), (table["split"] == "test").to_numpy()
    features = {method: _features(frame, rows) for method, frame in per_image.items()}
    frames = []
    for task, kind in CLASSIFICATION_TASKS.items():
        frames.append(
            benchmark_features(
                features,
                table[task].to_numpy(),
                ids,
                test,
                kind,
                task=task,
                fractions=s.fractions,
                seeds=(seed,),
                n_boot=s.n_boot,
                probe_c=PROBE_C,
            )
        )
    traits = table[["IID", "image"]].merge(
        read_image_table(biobank, "truth/image_traits.parquet"),
        on=["IID", "image"],
        how="left",
        validate="one_to_one",
    )
    for trait in [c for c in traits.columns if c not in ("IID", "image", "eye", "visit")]:
        frames.append(
            benchmark_features(
                features,
                traits[trait].to_numpy(np.float64),
                ids,
                test,
                "regression",
                task=f"trait:{trait}",
                fractions=(1.0,),
                seeds=(seed,),
                n_boot=s.n_boot,
            )  # fmt: skip
        )
    images = torch.stack([item["image"] for item in MultimodalDataset(table, ImageSettings())])
    frames.append(
        benchmark_finetune(
            encoders,
            images,
            table[FINETUNE_TASK].to_numpy(),
            ids,
            test,
            CLASSIFICATION_TASKS[FINETUNE_TASK],
            task=FINETUNE_TASK,
            fractions=s.fractions,
            seeds=(seed,),
            steps=s.finetune_steps,
            lr=5e-4,
            batch_size=32,
            n_boot=s.n_boot,
        )  # fmt: skip
    )
    return pd.concat(frames, ignore_index=True)


def summary(results: pd.DataFrame) -> dict:
    """``{task: {protocol: {method: {fraction: {metric, value, low, high, n_train}}}}}``, headline metric only."""
    out: dict = {}
    for row in results.itertuples(index=False):
        kind = "regression" if row.task.startswith("trait:") else CLASSIFICATION_TASKS[row.task]
        if row.metric != HEADLINE_METRIC[kind]:
            continue
        cell = out.setdefault(row.task, {}).setdefault(row.protocol, {}).setdefault(row.method, {})
        cell[f"{row.fraction:g}"] = {
            "metric": row.metric,
            "value": _plain(row.value),
            "low": _plain(row.low),
            "high": _plain(row.high),
            "n_train": int(row.n_train),
        }
    return out


def _plain(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)
