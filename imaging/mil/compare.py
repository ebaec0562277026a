"""Rank MIL methods on the same data: several seeds, bootstrap intervals over test images.

``compare_mil`` trains every setting (pooling + mask guidance) for the same budget and seeds, then
scores each model on one held-out set with masks on every image:

- ``auroc``: image-level "any lesion" AUROC;
- ``pointing``: share of positive images whose top heatmap patch is a lesion patch;
- ``heatmap_auroc``: AUROC of the heatmap for "this patch touches a lesion", pooled over the patches
  of positive images (the heatmap inside vs outside the lesion masks);
- ``false_alarm``: share of healthy images with P ≥ 0.5;
- ``exclusion_drop``: mean fall of P on positive images when the user excludes the lesion region
  (every patch that touches the mask; ``imaging.mil.interact.region_keep``): a model that bases its
  call on the lesion drops a lot, one that bases it on context does not.

Intervals: the test images are resampled with replacement (the same resamples for every seed and
method); each resample's metric is the mean over seeds; the 2.5 and 97.5 percentiles give the 95%
interval. ``seed_sd`` is the spread of the full-test-set metric over seeds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from imaging.errors import ImagingError
from imaging.mil.data import MILFolderDataset, patch_targets
from imaging.mil.evaluate import lesion_score
from imaging.mil.interact import region_keep
from imaging.mil.losses import MILLoss
from imaging.mil.model import PatchMIL, create_mil_model

METRICS: tuple[str, ...] = ("auroc", "pointing", "heatmap_auroc", "false_alarm", "exclusion_drop")

#: name → (pooling, guide_patch, guide_attention)
SETTINGS: dict[str, tuple[str, float, float]] = {
    "interpretable, guided": ("interpretable", 1.0, 1.0),
    "interpretable, unguided": ("interpretable", 0.0, 0.0),
    "attention-MIL": ("attention", 0.0, 0.0),
}


@torch.no_grad()
def image_outputs(model: PatchMIL, dataset: Dataset, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Per-image outputs for ``METRICS``: score, label (N,); heat, target (N, K); has_mask, drop (N,).

    ``drop`` is P minus P with the lesion region excluded (NaN without a lesion in the mask).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("score", "label", "heat", "target", "has_mask", "drop")
    }
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        image = batch["image"].to(device)
        tokens, grid = model.patch_embeddings(image)
        out = model.head(tokens, grid)
        score = lesion_score(out["prob"]).float()
        mask = batch["mask"].to(device)
        target = patch_targets(mask, model, 1)  # (B, K) 0/1
        lesion = batch["has_mask"].to(device).bool() & (target > 0).any(dim=1)
        drop = torch.full_like(score, float("nan"))
        if lesion.any():
            keep = region_keep(model, mask[lesion], tuple(image.shape[-2:]), "exclude", threshold=1e-3)
            edited = model.head(tokens[lesion], grid, keep.to(device))
            drop[lesion] = score[lesion] - lesion_score(edited["prob"]).float()
        parts["score"].append(score.cpu().numpy())
        parts["label"].append((batch["label"] > 0).numpy())
        parts["heat"].append(out["heatmap"].reshape(len(score), -1).float().cpu().numpy())
        parts["target"].append(target.cpu().numpy())
        parts["has_mask"].append(batch["has_mask"].bool().numpy())
        parts["drop"].append(drop.cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def image_metrics(outputs: Mapping[str, np.ndarray], index: np.ndarray | None = None) -> dict[str, float]:
    """``METRICS`` from ``image_outputs`` on the images ``index`` (default all; repeats allowed)."""
    o = {k: v if index is None else v[index] for k, v in outputs.items()}
    positive = o["has_mask"] & (o["target"] > 0).any(axis=1)
    healthy = ~o["label"].astype(bool)
    heat, target = o["heat"][positive], o["target"][positive]
    top = heat.argmax(axis=1) if len(heat) else np.zeros(0, int)
    hits = target[np.arange(len(top)), top] > 0
    return {
        "auroc": _auroc(o["label"].astype(int), o["score"]),
        "pointing": float(hits.mean()) if len(hits) else float("nan"),
        "heatmap_auroc": _auroc((target > 0).ravel().astype(int), heat.ravel()),
        "false_alarm": float((o["score"][healthy] >= 0.5).mean()) if healthy.any() else float("nan"),
        "exclusion_drop": float(np.nanmean(o["drop"][positive])) if positive.any() else float("nan"),
    }


def bootstrap_table(
    outputs: Mapping[str, Sequence[Mapping[str, np.ndarray]]], n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """method → list over seeds of ``image_outputs`` ⇒ one row per (method, metric):
    mean (over seeds), seed_sd, lo, hi (95% bootstrap interval over test images), n_seeds, n_images."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(outputs.values()))[0]["score"])
    resamples = [rng.integers(0, n, n) for _ in range(n_boot)]
    rows = []
    for method, per_seed in outputs.items():
        full = pd.DataFrame([image_metrics(o) for o in per_seed])
        boot = pd.DataFrame(
            [pd.DataFrame([image_metrics(o, idx) for o in per_seed]).mean().to_dict() for idx in resamples]
        )
        for metric in METRICS:
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "mean": float(full[metric].mean()),
                    "seed_sd": float(full[metric].std(ddof=1)) if len(full) > 1 else float("nan"),
                    "lo": float(boot[metric].quantile(0.025)),
                    "hi": float(boot[metric].quantile(0.975)),
                    "n_seeds": len(per_seed),
                    "n_images": n,
                }
            )
    return pd.DataFrame(rows)


def compare_mil(
    train_csv: str | Path,
    test_csv: str | Path,
    out: str | Path,
    settings: Mapping[str, tuple[str, float, float]] = SETTINGS,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 3e-3,
    backbone: str = "resnet10t",
    device: str = "cpu",
    n_boot: int = 200,
    model_kwargs: Mapping | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every setting × seed on ``train_csv`` and score it on ``test_csv`` (masks on every image).

    Returns (table: ``bootstrap_table`` rows, runs: one row per (method, seed) with the full-test-set
    ``METRICS`` and ``train_s``).
    """
    from imaging.training import Trainer, TrainingConfig

    test = MILFolderDataset(test_csv)
    if any(mask is None for mask in test.masks):
        raise ImagingError(f"{test_csv}: every test image needs a mask; simulate it with mask_fraction=1")
    train = MILFolderDataset(train_csv, flip=True)
    kwargs = {
        "feature_stride": 8,
        "patch_size": 2,
        "embed_dim": 64,
        "attention_dim": 32,
        **(model_kwargs or {}),
    }
    outputs: dict[str, list[dict[str, np.ndarray]]] = {}
    runs = []
    for name, (pooling, guide_patch, guide_attention) in settings.items():
        for seed in seeds:
            torch.manual_seed(seed)
            model = create_mil_model(pooling, backbone=backbone, **kwargs)
            config = TrainingConfig(
                out=str(Path(out) / f"{name.replace(' ', '_').replace(',', '')}_seed{seed}"),
                max_steps=steps,
                epochs=None,
                batch_size=batch_size,
                seed=seed,
                device=device,
                lr=lr,
                weight_decay=1e-4,
                warmup_steps=min(20, max(1, steps // 10)),
                log_every=max(1, steps // 5),
                checkpoint_every=0,
                progress=False,
            )
            start = time.perf_counter()
            Trainer(model, MILLoss(guide_patch, guide_attention), train, config).fit()
            seconds = time.perf_counter() - start
            result = image_outputs(model, test)
            outputs.setdefault(name, []).append(result)
            runs.append({"method": name, "seed": seed, **image_metrics(result), "train_s": seconds})
    return bootstrap_table(outputs, n_boot), pd.DataFrame(runs)


__all__ = ["METRICS", "SETTINGS", "bootstrap_table", "compare_mil", "image_metrics", "image_outputs"]
