"""Monte Carlo dropout: T stochastic forward passes at inference, their mean and per-voxel uncertainty.

Only the dropout layers are switched to training mode; normalisation layers stay in evaluation mode, so
the passes differ by the dropout masks alone. ``mc_predict`` returns the mean class probabilities, the
predictive entropy of that mean and the variance of the probabilities over the passes; ``mc_moments``
adds the mutual information. ``imaging.finetune.uncertainty`` scores these maps against the errors.

>>> import torch
>>> from imaging.registry import create_encoder
>>> from imaging.unet import UNet
>>> model = UNet(create_encoder("unet3d", base_width=2, depth=2, dropout=0.5), 3, dropout=0.5)
>>> mean, entropy, variance = mc_predict(model, torch.randn(1, 1, 4, 4, 4), samples=4)
>>> mean.shape, entropy.shape, variance.shape
(torch.Size([1, 3, 4, 4, 4]), torch.Size([1, 4, 4, 4]), torch.Size([1, 4, 4, 4]))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.io import write_nifti

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, _DROPOUT) and module.p > 0]


@contextlib.contextmanager
def mc_dropout_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode with the dropout layers active; every module's mode is restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    for layer in dropout_layers(model):
        layer.train()
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


@torch.no_grad()
def mc_moments(model: nn.Module, x: torch.Tensor, samples: int = 10) -> dict[str, torch.Tensor]:
    """T stochastic passes of ``model`` (logits (B, K, *S), or (B, K) for a classifier) on ``x``.

    Returns:
        ``mean`` (B, K, *S) mean softmax probabilities over the passes; ``entropy`` (B, *S) predictive
        entropy −Σ_k p̄_k log p̄_k of the mean (nats); ``variance`` (B, *S) variance of the probabilities
        over the passes, averaged over the K classes; ``mutual_information`` (B, *S) the entropy of the
        mean minus the mean entropy of the passes (the part of the uncertainty the passes disagree on).

    Raises:
        ImagingError: ``samples < 1``, or ``samples > 1`` for a model without dropout (every pass equal).
    """
    if samples < 1:
        raise ImagingError(f"MC dropout needs samples >= 1, got {samples}")
    if samples > 1 and not dropout_layers(model):
        raise ImagingError(
            f"{type(model).__name__} has no active dropout layer, so MC samples would all be equal; "
            "train it with dropout > 0 (e.g. dropout=0.1) or use mc_samples=1"
        )
    total = total_sq = pass_entropy = None
    with mc_dropout_mode(model):
        for _ in range(samples):
            probabilities = torch.softmax(model(x).float(), dim=1)
            entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(dim=1)
            if total is None:
                total, total_sq, pass_entropy = probabilities.clone(), probabilities.square(), entropy
            else:
                total += probabilities
                total_sq += probabilities.square()
                pass_entropy += entropy
    mean = total / samples
    variance = (total_sq / samples - mean.square()).clamp_min(0).mean(dim=1)
    entropy = -(mean * mean.clamp_min(1e-12).log()).sum(dim=1)
    information = (entropy - pass_entropy / samples).clamp_min(0)
    return {"mean": mean, "entropy": entropy, "variance": variance, "mutual_information": information}


def mc_predict(
    model: nn.Module, x: torch.Tensor, samples: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean (B, K, *S), entropy (B, *S), variance (B, *S))`` of :func:`mc_moments`."""
    moments = mc_moments(model, x, samples)
    return moments["mean"], moments["entropy"], moments["variance"]


def write_uncertainty_maps(
    out_dir: str | os.PathLike,
    item_id: str,
    mean: np.ndarray | torch.Tensor,
    entropy: np.ndarray | torch.Tensor,
    variance: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
) -> dict[str, Path]:
    """Write one volume's MC-dropout maps as NIfTI (each atomically) into ``out_dir``.

    Args:
        mean: (K, D, H, W) mean probabilities; entropy, variance: (D, H, W).

    Returns:
        ``{"prediction": <id>_prediction.nii.gz (argmax of the mean, uint8), "entropy": ..., "variance": ...}``
    """
    mean, entropy, variance = (np.asarray(torch.as_tensor(a).cpu()) for a in (mean, entropy, variance))
    if mean.ndim != 4 or entropy.shape != mean.shape[1:] or variance.shape != mean.shape[1:]:
        raise ImagingError(
            f"{item_id}: MC maps must be (K, D, H, W) and (D, H, W), got {mean.shape}, {entropy.shape}, {variance.shape}"
        )
    out, spacing = Path(out_dir), tuple(spacing or (1.0, 1.0, 1.0))
    paths = {
        "prediction": out / f"{item_id}_prediction.nii.gz",
        "entropy": out / f"{item_id}_entropy.nii.gz",
        "variance": out / f"{item_id}_variance.nii.gz",
    }
    write_nifti(paths["prediction"], mean.argmax(axis=0).astype(np.uint8), spacing=spacing)
    write_nifti(paths["entropy"], entropy.astype(np.float32), spacing=spacing)
    write_nifti(paths["variance"], variance.astype(np.float32), spacing=spacing)
    return paths


__all__ = ["dropout_layers", "mc_dropout_mode", "mc_moments", "mc_predict", "write_uncertainty_maps"]
