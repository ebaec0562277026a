"""Held-out evaluation of a fine-tuned model: Dice for segmentation, QWK / AUROC for classification.

Segmentation computes Dice per held-out volume and class (``imaging.metrics.dice_per_volume``), then
averages over volumes: ``dice_<class>`` is a class's mean over the volumes where it is present in the
truth or the prediction (so a small class such as a lesion is scored on its own volumes, not drowned
in pooled voxels), ``dice`` (the headline) is the mean over volumes of each volume's mean foreground
Dice, ``dice_with_background`` the same with class 0 (for comparison with papers that include it), and
``n_volumes`` the number of volumes. With ``intervals=True`` every Dice also gets a 95 % percentile
bootstrap interval over volumes (``<name>_ci_low``, ``<name>_ci_high``). With ``mc_samples > 1`` the
prediction is the argmax of the MC-dropout mean; the mean predictive entropy, variance and mutual
information are reported (``mc_entropy``, ``mc_variance``, ``mc_mutual_information``) and, for the test
split (``intervals=True``), scored: the AUROC of each map for the voxels the prediction gets wrong,
pooled and per volume with bootstrap intervals over volumes, and the expected calibration error with a
reliability diagram (``imaging.finetune.uncertainty``).

Classification reports ``accuracy``, ``qwk`` (quadratic weighted kappa of the argmax class; ordinal
grades, K > 2) and ``auroc`` (binary: the positive class's probability; K > 2: macro one-vs-rest).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from imaging.finetune.mc_dropout import mc_moments, write_uncertainty_maps
from imaging.finetune.uncertainty import uncertainty_scores
from imaging.metrics import auroc, bootstrap_ci, dice_per_volume, quadratic_weighted_kappa


@torch.no_grad()
def predict_maps(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    mc_samples: int = 1,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Probabilities (N, K, *S) float32, targets (N, *S) int64 and, with ``mc_samples > 1``, the MC
    uncertainty maps (N, *S) ``entropy``, ``variance`` and ``mutual_information`` (else an empty dict)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    probs, targets, maps = [], [], {}
    try:
        for images, target in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            images = images.to(device)
            if mc_samples > 1:
                moments = mc_moments(model, images, mc_samples)
                mean = moments.pop("mean")
                for name, value in moments.items():
                    maps.setdefault(name, []).append(value.cpu().numpy())
            else:
                mean = torch.softmax(model(images).float(), dim=1)
            probs.append(mean.cpu().numpy())
            targets.append(target.numpy())
    finally:
        for module, mode in modes.items():
            module.training = mode
    join = np.concatenate
    return join(probs), join(targets), {name: join(parts) for name, parts in maps.items()}


def predict_probabilities(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    mc_samples: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Probabilities and targets over ``dataset`` of ``(image, target)`` pairs.

    Returns:
        probabilities (N, K, *S) float32, targets (N, *S) int64, and with ``mc_samples > 1`` the
        entropy and variance (N, *S); else None, None.
    """
    probs, targets, maps = predict_maps(model, dataset, batch_size, device, mc_samples)
    return probs, targets, maps.get("entropy"), maps.get("variance")


def segmentation_scores(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    mc_samples: int = 1,
    maps_dir: str | os.PathLike | None = None,
    ids: Sequence[str] | None = None,
    spacing: Sequence[float] | None = None,
    intervals: bool = False,
    n_boot: int = 1000,
    reliability_png: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Dice of the held-out ``dataset`` (see the module docstring); MC maps to ``maps_dir`` (3D only).

    With ``mc_samples > 1`` and ``intervals``, the uncertainty is scored against the voxel errors
    (``imaging.finetune.uncertainty.uncertainty_scores``) and the reliability diagram is drawn to
    ``reliability_png`` when given.
    """
    probs, targets, maps = predict_maps(model, dataset, batch_size, device, mc_samples)
    pred = probs.argmax(axis=1)
    scores = volume_dice_scores(pred, targets, num_classes, class_names, intervals, n_boot)
    if maps:
        scores["mc_entropy"] = float(maps["entropy"].mean())
        scores["mc_variance"] = float(maps["variance"].mean())
        scores["mc_mutual_information"] = float(maps["mutual_information"].mean())
        if intervals:
            scores.update(
                uncertainty_scores(probs, targets, maps, n_boot=n_boot, reliability_png=reliability_png)
            )
        if maps_dir is not None and pred.ndim == 4:
            for index in range(len(pred)):
                item = ids[index] if ids is not None else f"item{index:04d}"
                write_uncertainty_maps(
                    Path(maps_dir),
                    item,
                    probs[index],
                    maps["entropy"][index],
                    maps["variance"][index],
                    spacing,
                )
    return scores


def volume_dice_scores(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    intervals: bool = False,
    n_boot: int = 1000,
) -> dict[str, float]:
    """Dice per volume, averaged over volumes (see the module docstring) from (N, *S) label maps."""
    everything = dice_per_volume(pred, target, num_classes, include_background=True)  # (N, K)
    foreground = everything[:, 1:]
    names = list(class_names) if class_names else [str(k) for k in range(num_classes)]
    columns = {"dice": _row_nanmean(foreground), "dice_with_background": _row_nanmean(everything)}
    for index, name in enumerate(names[1:]):
        columns[f"dice_{name.replace(' ', '_')}"] = foreground[:, index]
    scores: dict[str, float] = {}
    for key, values in columns.items():
        scores[key] = _nanmean(values)
        if intervals:
            interval = bootstrap_ci(_nanmean, values, n_boot=n_boot, seed=0)
            scores[f"{key}_ci_low"], scores[f"{key}_ci_high"] = interval.low, interval.high
    scores["n_volumes"] = float(len(pred))
    return scores


def classification_scores(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    mc_samples: int = 1,
) -> dict[str, float]:
    """Accuracy, QWK (K > 2) and AUROC of the held-out ``dataset`` (see the module docstring)."""
    probs, targets, entropy, _ = predict_probabilities(model, dataset, batch_size, device, mc_samples)
    pred = probs.argmax(axis=1)
    scores = {"accuracy": float((pred == targets).mean())}
    if num_classes > 2:
        scores["qwk"] = quadratic_weighted_kappa(targets, pred, num_classes=num_classes)
        scores["auroc"] = auroc(targets, probs) if len(np.unique(targets)) == num_classes else float("nan")
    else:
        scores["auroc"] = auroc(targets, probs[:, 1])
    if entropy is not None:
        scores["mc_entropy"] = float(entropy.mean())
    return scores


def _row_nanmean(table: np.ndarray) -> np.ndarray:
    """(N, K) → (N,) mean over the non-NaN entries of each row (NaN for an all-NaN row)."""
    present = ~np.isnan(table)
    counts = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.where(present, table, 0.0).sum(axis=1) / counts, np.nan)


def _nanmean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


__all__ = [
    "classification_scores",
    "predict_maps",
    "predict_probabilities",
    "segmentation_scores",
    "volume_dice_scores",
]
