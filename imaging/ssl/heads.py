"""Small heads shared by the proxy tasks, and the shared-encoder call on patches."""

from __future__ import annotations

import torch
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


def encode_patches(encoder: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Run the shared encoder on every patch: (B, K, C, *patch) → (B, K, F) via (B·K, C, *patch)."""
    b, k = patches.shape[:2]
    features = encoder.forward_features(patches.flatten(0, 1))
    return features.reshape(b, k, -1)


def check_choice(task: str, option: str, value: object, choices: tuple) -> None:
    """Raise ImagingError naming the option and its valid values when ``value`` is not one of them."""
    if value not in choices:
        valid = ", ".join(map(repr, choices))
        raise ImagingError(f"{task}: {option}={value!r} is not one of {valid}; set task_options.{option}")


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose arg-max is the target (a 0-d tensor, for logging)."""
    return (logits.detach().argmax(1) == targets).float().mean()
