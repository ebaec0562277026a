"""Small heads shared by the proxy tasks, the features they read, and the shared-encoder call on patches.

The classification proxy tasks (rotation, rpl, jigsaw) and exemplar read the encoder's deepest feature map
average-pooled to a small grid (``pool_grid`` cells per axis, 2 by default) and flattened, as the
reference implementation feeds its heads the flattened encoder output: a global average would discard
where things are, the very evidence rotation and relative position need. ``pool_grid=1`` is the global
average. Encoders without a feature map give their pooled ``forward_features``.

>>> from imaging.registry import create_encoder
>>> encoder = create_encoder("unet3d", in_chans=1, base_width=4, depth=2)
>>> pooled_width(encoder, dim=3, grid=2), tuple(pooled_features(encoder, torch.zeros(3, 1, 8, 8, 8), 2).shape)
(64, (3, 64))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imaging.errors import ImagingError


def mlp(
    in_features: int, hidden: int, out_features: int, layers: int = 2, norm: bool = True
) -> nn.Sequential:
    """``layers`` linear layers with BatchNorm (optional) + ReLU between them; ``layers=1`` is a linear head."""
    modules: list[nn.Module] = []
    width = in_features
    for _ in range(layers - 1):
        modules += [
            nn.Linear(width, hidden),
            *([nn.BatchNorm1d(hidden)] if norm else []),
            nn.ReLU(inplace=True),
        ]
        width = hidden
    modules.append(nn.Linear(width, out_features))
    return nn.Sequential(*modules)


def has_feature_map(encoder: nn.Module) -> bool:
    """Whether ``encoder`` exposes its deepest map (U-Net ``forward_levels``, timm ``forward_feature_map``)."""
    return hasattr(encoder, "forward_levels") or hasattr(encoder, "forward_feature_map")


def pooled_width(encoder: nn.Module, dim: int, grid: int) -> int:
    """Width of ``pooled_features``: ``num_features × grid**dim`` (``num_features`` without a map)."""
    if grid < 1:
        raise ImagingError(f"pool_grid must be >= 1, got {grid}; set task_options.pool_grid")
    return int(encoder.num_features) * (grid**dim if has_feature_map(encoder) else 1)


def pooled_features(
    encoder: nn.Module, x: torch.Tensor, grid: int, what: str = "images", fix: str = "size=[...]"
) -> torch.Tensor:
    """(B, C, *S) → (B, F·grid^dim): the deepest map average-pooled to ``grid`` cells per axis, flattened.

    Raises:
        ImagingError: the deepest map holds a single voxel (nothing below it can learn there); the
            message names the smallest input side that gives two voxels per axis.
    """
    if not has_feature_map(encoder):
        return encoder.forward_features(x)
    if hasattr(encoder, "forward_levels"):
        deepest = encoder.forward_levels(x)[-1]
    else:
        deepest = encoder.forward_feature_map(x)
    spatial, reached = tuple(x.shape[2:]), tuple(deepest.shape[2:])
    if all(n <= 1 for n in reached):
        factor = max(s // max(r, 1) for s, r in zip(spatial, reached, strict=True))
        raise ImagingError(
            f"{what} of {spatial} voxels reach the encoder's deepest level as one voxel, where it cannot "
            f"learn; use {what} of at least {2 * factor} voxels per side ({fix}) or a shallower encoder"
        )
    pool = F.adaptive_avg_pool3d if deepest.dim() == 5 else F.adaptive_avg_pool2d
    return pool(deepest, grid).flatten(1)


def encode_patches(encoder: nn.Module, patches: torch.Tensor, grid: int | None = None) -> torch.Tensor:
    """Run the shared encoder on every patch: (B, K, C, *patch) → (B, K, F) via (B·K, C, *patch).

    With ``grid``, each patch's features are ``pooled_features`` (B, K, F·grid^dim) instead.
    """
    b, k = patches.shape[:2]
    flat = patches.flatten(0, 1)
    if grid is None:
        features = encoder.forward_features(flat)
    else:
        features = pooled_features(encoder, flat, grid, "patches", "task_options.patch_size or larger images")
    return features.reshape(b, k, -1)


def check_choice(task: str, option: str, value: object, choices: tuple) -> None:
    """Raise ImagingError naming the option and its valid values when ``value`` is not one of them."""
    if value not in choices:
        valid = ", ".join(map(repr, choices))
        raise ImagingError(f"{task}: {option}={value!r} is not one of {valid}; set task_options.{option}")


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose arg-max is the target (a 0-d tensor, for logging)."""
    return (logits.detach().argmax(1) == targets).float().mean()
