"""Early stopping for fine-tuning: train until the validation metric stops improving, keep the best.

``EarlyStopping`` is the pure rule: it is fed ``(step, value)`` after every evaluation and says when
``patience`` evaluations (``patience × eval_every`` steps) have passed since the best value. The best is
the trainer's own (strictly better, finite), so the checkpoint the trainer keeps as ``best`` is the one
the rule counts from. ``StopWhenStale`` wraps a trainer's ``eval_fn`` and ends the run at the stopping
step by lowering ``trainer.total_steps``; the caller then restores ``best``.

>>> rule = EarlyStopping(patience=2, eval_every=10, mode="max")
>>> [rule.update(step, value) for step, value in [(10, 0.2), (20, 0.5), (30, 0.4), (40, 0.5)]]
[False, False, False, True]
>>> rule.best_step, rule.stopped_step
(20, 40)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from torch import nn

from imaging.errors import ImagingError


class EarlyStopping:
    """Stop when ``patience`` evaluations (``patience × eval_every`` steps) brought no better value.

    Args:
        patience: evaluations without improvement that end training (≥ 1).
        eval_every: steps between evaluations.
        mode: ``"max"`` (Dice, AUROC) or ``"min"`` (a loss).

    Attributes:
        best_value, best_step: the best value so far and the step it was reached (None before any).
        stopped_step: the step at which ``update`` first returned True (None while training goes on).
    """

    def __init__(self, patience: int, eval_every: int, mode: Literal["min", "max"] = "max"):
        if patience < 1 or eval_every < 1:
            raise ImagingError(
                f"early stopping needs patience >= 1 and eval_every >= 1 (got {patience}, {eval_every}); "
                "set patience=0 to train to max_steps"
            )
        if mode not in ("min", "max"):
            raise ImagingError(f"early stopping mode must be 'min' or 'max', not {mode!r}")
        self.patience, self.eval_every, self.mode = patience, eval_every, mode
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.stopped_step: int | None = None

    def seed(self, best_value: float | None, best_step: int | None) -> None:
        """Continue from a resumed trainer's best (value, step)."""
        if best_value is not None and best_step is not None and self.best_step is None:
            self.best_value, self.best_step = float(best_value), int(best_step)

    def update(self, step: int, value: float) -> bool:
        """Record the value evaluated at ``step``; True when training should stop now."""
        better = self.best_value is None or (
            value < self.best_value if self.mode == "min" else value > self.best_value
        )
        if better and math.isfinite(value):
            self.best_value, self.best_step = float(value), int(step)
        since = step - (self.best_step if self.best_step is not None else 0)
        if since >= self.patience * self.eval_every and self.stopped_step is None:
            self.stopped_step = int(step)
        return self.stopped_step is not None


class StopWhenStale:
    """A trainer ``eval_fn`` that also applies ``EarlyStopping`` to ``metrics[monitor]``.

    Set ``trainer`` after the trainer is built. When the rule fires, ``trainer.total_steps`` is set to the
    current step, so the loop ends after this step (no further optimizer step is taken).
    """

    def __init__(
        self, eval_fn: Callable[[nn.Module], Mapping[str, float]], monitor: str, rule: EarlyStopping
    ):
        self.eval_fn, self.monitor, self.rule = eval_fn, monitor, rule
        self.trainer: Any = None

    def __call__(self, model: nn.Module) -> dict[str, float]:
        metrics = dict(self.eval_fn(model))
        if self.trainer is None or self.monitor not in metrics:
            return metrics
        self.rule.seed(self.trainer.best_value, self.trainer.best_step)
        if self.rule.update(self.trainer.step, float(metrics[self.monitor])):
            self.trainer.total_steps = self.trainer.step
        return metrics


__all__ = ["EarlyStopping", "StopWhenStale"]
