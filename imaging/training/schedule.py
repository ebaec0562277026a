"""The optimizer (AdamW with parameter groups) and its learning-rate schedule: linear warm-up, then cosine.

The schedule is a multiplier of each group's own base learning rate, evaluated per optimizer step ``s``
(0-based: ``s`` is the step whose update uses the rate)::

    s <  W:  (s + 1) / W                                   linear warm-up, full rate at s = W - 1
    s >= W:  m + (1 - m) · ½ (1 + cos(π · min(1, (s - W) / max(1, T - W))))

with ``W = warmup_steps``, ``T = total_steps`` and ``m = min_lr_ratio``; the rate reaches ``m`` at
``s = T`` (one past the last step) and stays there. ``WarmupCosine`` is a plain callable object, so
``LambdaLR.state_dict()`` stores its parameters as JSON-safe numbers, never a pickled function.

>>> schedule = WarmupCosine(warmup_steps=2, total_steps=10)
>>> [round(schedule(s), 4) for s in (0, 1, 2, 6, 10, 20)]
[0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (formula in the module docstring)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """``LambdaLR`` multiplier: linear warm-up over ``warmup_steps`` then cosine decay to ``min_lr_ratio``.

    Its attributes are plain numbers, so the scheduler's state dict is JSON-serialisable.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(
                f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, {total_steps}"
            )
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)

    def __repr__(self) -> str:
        return (
            f"WarmupCosine(warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, "
            f"min_lr_ratio={self.min_lr_ratio})"
        )


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` applying ``WarmupCosine`` to every parameter group; call ``.step()`` per optimizer step."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr_ratio))


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups of the trainable parameters: matrices/kernels with weight decay, and biases, norm
    gains and other 1-D/0-D parameters (temperatures, embeddings' scales) without (nanoGPT, open_clip).
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: Sequence[float] = (0.9, 0.999),
    param_groups: Iterable[dict[str, Any]] | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` (each may set its own ``lr``/``weight_decay``; missing values take
    ``lr``/``weight_decay``), or over ``default_param_groups(model, weight_decay)``.

    Parameters of the model in no group are not optimized (frozen); a group naming a tensor that is not
    a parameter of ``model`` is an error.
    """
    if param_groups is None:
        groups = default_param_groups(model, weight_decay)
    else:
        known = {id(p) for p in model.parameters()}
        groups = []
        for i, group in enumerate(param_groups):
            if "params" not in group:
                raise ValueError(f"parameter group {i} has no 'params'")
            params = list(group["params"])
            if any(id(p) not in known for p in params):
                raise ValueError(f"parameter group {i} holds tensors that are not parameters of the model")
            groups.append({"lr": lr, "weight_decay": weight_decay, **group, "params": params})
    if not any(group["params"] for group in groups):
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


__all__ = ["WarmupCosine", "build_optimizer", "build_scheduler", "default_param_groups", "warmup_cosine"]
