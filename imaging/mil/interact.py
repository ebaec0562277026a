"""Interaction: a user-drawn region decides which patches the model may attend to.

A region mask (H, W) (any non-zero pixel is inside) becomes a per-patch factor ``keep`` (B, K) ∈ [0, 1]
through the model's own patch geometry (:meth:`PatchMIL.patch_coverage`). A patch counts as inside
the region when at least ``threshold`` of its area is covered:

    include: keep_k = 1[c_k ≥ threshold]          exclude: keep_k = 1[c_k < threshold]
    soft:    keep_k = c_k  (include), 1 − c_k (exclude)

The model multiplies its attention by ``keep``. For the interpretable model the edited prediction is
therefore exactly ``Σ_k keep_k w_k p_k / max(Σ_k keep_k w_k, k_min)``: the local probabilities p_k and
the weights w_k themselves do not change (:func:`edit_prediction` recomputes it from stored outputs).

>>> import torch
>>> p, w = torch.tensor([[0.9, 0.2, 0.1]]), torch.tensor([[0.8, 0.5, 0.5]])
>>> round(float(edit_prediction(p, w, torch.tensor([[0.0, 1.0, 1.0]]), k_min=1.0)["prob"]), 4)
0.15
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from imaging.errors import ImagingError
from imaging.mil.model import PatchMIL, aggregate

Mode = Literal["include", "exclude"]


def region_keep(
    model: PatchMIL,
    region: np.ndarray | torch.Tensor,
    image_hw: tuple[int, int],
    mode: Mode = "include",
    threshold: float = 0.5,
    soft: bool = False,
) -> torch.Tensor:
    """Per-patch attention factor from a user region.

    Args:
        model: the MIL model (its patch geometry).
        region: (H, W) or (B, H, W); non-zero = inside. A region of another size than the images is
            resized (nearest neighbour) to ``image_hw``.
        image_hw: (H, W) of the images the model sees.
        mode: ``include`` (attend only inside) or ``exclude`` (never attend inside).
        threshold: patch-area fraction that makes a patch inside (0 < threshold ≤ 1).
        soft: use the covered fraction itself instead of the threshold.

    Returns:
        (B, K) float32 keep factors (B = 1 for an (H, W) region).
    """
    if mode not in ("include", "exclude"):
        raise ImagingError(f"region mode must be 'include' or 'exclude', got {mode!r}")
    if not 0.0 < threshold <= 1.0:
        raise ImagingError(f"threshold must lie in (0, 1], got {threshold}")
    inside = torch.as_tensor(np.asarray(region) if not isinstance(region, torch.Tensor) else region) != 0
    if inside.ndim == 2:
        inside = inside[None]
    if inside.ndim != 3:
        raise ImagingError(f"a region mask must be (H, W) or (B, H, W), got shape {tuple(inside.shape)}")
    if tuple(inside.shape[-2:]) != tuple(image_hw):
        inside = F.interpolate(inside[:, None].float(), size=tuple(image_hw), mode="nearest")[:, 0] > 0.5
    coverage = model.patch_coverage(inside)  # (B, K)
    chosen = coverage if soft else (coverage >= threshold - 1e-6).float()
    return chosen if mode == "include" else 1.0 - chosen


def edit_prediction(
    patch_prob: torch.Tensor, attention: torch.Tensor, keep: torch.Tensor, k_min: float
) -> dict[str, torch.Tensor]:
    """The interpretable model's prediction with attention ``keep · w`` (no backbone pass).

    Args:
        patch_prob: (B, K) or (B, K, C) local probabilities p_k.
        attention: (B, K) unedited weights w_k.
        keep: (B, K) or (1, K) factors in [0, 1].

    Returns:
        {"prob", "attention_mass", "attention"} as :func:`imaging.mil.model.aggregate`, plus the edited weights.
    """
    weights = attention * keep.to(attention)
    return {**aggregate(patch_prob, weights, k_min), "attention": weights}


@torch.no_grad()
def attend(
    model: PatchMIL,
    images: torch.Tensor,
    region: np.ndarray | torch.Tensor,
    mode: Mode = "include",
    threshold: float = 0.5,
    soft: bool = False,
) -> dict[str, dict[str, torch.Tensor]]:
    """Predict with and without a user region, from one backbone pass.

    Args:
        model: any ``PatchMIL`` (every pooling honours ``keep``).
        images: (B, C_in, H, W).
        region: (H, W) applied to every image, or (B, H, W).

    Returns:
        {"original": model outputs, "edited": outputs with the region applied, "keep": {"keep": (B, K)}}.
    """
    tokens, grid = model.patch_embeddings(images)
    keep = region_keep(model, region, tuple(images.shape[-2:]), mode, threshold, soft).to(tokens.device)
    keep = keep.expand(images.shape[0], -1) if keep.shape[0] == 1 else keep
    if not bool((keep > 0).any(dim=1).all()):
        advice = (
            f"draw a larger region or lower --threshold ({threshold})"
            if mode == "include"
            else f"the region covers every patch: draw a smaller one or raise --threshold ({threshold})"
        )
        raise ImagingError(f"the {mode} region leaves no patch to attend to in some image; {advice}")
    return {
        "original": model.head(tokens, grid),
        "edited": model.head(tokens, grid, keep),
        "keep": {"keep": keep},
    }


__all__ = ["Mode", "attend", "edit_prediction", "region_keep"]
