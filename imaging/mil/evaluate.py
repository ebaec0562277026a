"""Classification and localisation metrics of a MIL model on a labelled (and partly masked) dataset.

Localisation is measured at patch level, where the model makes its statements: a patch is a lesion
patch when any of its pixels is lesion (``patch_targets`` with min_coverage 0), on images with masks.

- pointing game: share of positive images (with a lesion patch) whose highest-heatmap patch is a
  lesion patch (ties: the first in row-major order);
- Dice: heatmap ≥ 0.5 vs lesion patches, summed over images before the ratio; ``dice_pos`` on the
  positive images only, ``dice`` on every masked image (false alarms on healthy images count).

AUROC is the image-level "any lesion" AUROC: P for binary models, 1 − P_0 with classes.

>>> heat = torch.tensor([[0.9, 0.2], [0.1, 0.7]]); target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
>>> pointing_hits(heat, target).tolist(), dice_counts(heat, target)
([True, False], (1.0, 2.0, 2.0))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from imaging.mil.data import patch_targets
from imaging.mil.losses import image_loss
from imaging.mil.model import PatchMIL


def pointing_hits(heatmap: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, K) heatmaps and 0/1 (or class) targets → (B,) bool: the top patch is a lesion patch."""
    top = heatmap.reshape(heatmap.shape[0], -1).argmax(dim=1)
    return targets.reshape(targets.shape[0], -1).gather(1, top[:, None]).squeeze(1) > 0


def dice_counts(
    heatmap: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5
) -> tuple[float, float, float]:
    """(|P ∩ T|, |P|, |T|) summed over the batch, with P = heatmap ≥ threshold and T = targets > 0."""
    predicted = heatmap.reshape(heatmap.shape[0], -1) >= threshold
    truth = targets.reshape(targets.shape[0], -1) > 0
    return float((predicted & truth).sum()), float(predicted.sum()), float(truth.sum())


def _dice(inter: float, pred: float, true: float) -> float:
    return 2.0 * inter / (pred + true) if pred + true > 0 else 1.0


def lesion_score(prob: torch.Tensor) -> torch.Tensor:
    """(B,) P for binary, 1 − P_0 for (B, C) class probabilities."""
    return prob if prob.ndim == 1 else 1.0 - prob[:, 0]


@torch.no_grad()
def evaluate(
    model: PatchMIL, dataset: Dataset, batch_size: int = 16, threshold: float = 0.5
) -> dict[str, float]:
    """AUROC, image loss, pointing game and Dice of ``model`` on ``dataset`` (items as MILFolderDataset).

    Returns {"auroc", "loss", "pointing", "dice", "dice_pos", "n", "n_localised"}; localisation metrics
    are NaN when no image has a mask with a lesion.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores, labels, losses = [], [], []
    hits: list[torch.Tensor] = []
    counts_all, counts_pos = np.zeros(3), np.zeros(3)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        image = batch["image"].to(device)
        out = model(image)
        label = batch["label"].to(device)
        losses.append(float(image_loss(out["prob"], label)) * len(label))
        scores.append(lesion_score(out["prob"]).float().cpu())
        labels.append((batch["label"] > 0).cpu())
        select = batch["has_mask"].bool()
        if select.any():
            targets = patch_targets(batch["mask"][select].to(device), model, model.num_classes).cpu()
            heat = out["heatmap"][select.to(device)].reshape(int(select.sum()), -1).float().cpu()
            positive = (targets > 0).any(dim=1)
            counts_all += dice_counts(heat, targets, threshold)
            if positive.any():
                hits.append(pointing_hits(heat[positive], targets[positive]))
                counts_pos += dice_counts(heat[positive], targets[positive], threshold)
    model.train(was_training)
    y, s = torch.cat(labels).numpy(), torch.cat(scores).numpy()
    auroc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")
    hit = torch.cat(hits).float() if hits else torch.zeros(0)
    localised = len(hit) > 0
    return {
        "auroc": auroc,
        "loss": float(sum(losses) / len(y)),
        "pointing": float(hit.mean()) if localised else float("nan"),
        "dice": _dice(*counts_all) if localised else float("nan"),
        "dice_pos": _dice(*counts_pos) if localised else float("nan"),
        "n": float(len(y)),
        "n_localised": float(len(hit)),
    }


def make_eval_fn(dataset: Dataset, batch_size: int = 16) -> Callable[[PatchMIL], dict[str, float]]:
    """An ``eval_fn(model)`` for the shared trainer: ``evaluate`` with metric names prefixed ``val_``."""

    def eval_fn(model: PatchMIL) -> dict[str, float]:
        return {
            f"val_{k}": v for k, v in evaluate(model, dataset, batch_size).items() if not k.startswith("n")
        }

    return eval_fn


__all__ = ["dice_counts", "evaluate", "lesion_score", "make_eval_fn", "pointing_hits"]
