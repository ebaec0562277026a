"""Held-out proxy accuracy: does a pretraining run learn its task at all, measured against chance.

A share of the images (``val_fraction``, whole persons when the dataset knows them) is kept out of
pretraining. Their batches are built once with fixed seeds, so every evaluation scores the same patches,
rotations and permutations. Each evaluation writes ``val_proxy_loss`` and, for tasks with an accuracy,
``val_proxy_acc`` next to ``proxy_chance`` (what a guess reaches on those batches, e.g. 1/10 for 3D
rotation) into ``metrics.csv``; ``proxy_init_loss`` is the held-out loss of the untrained model, the
control of tasks without an accuracy. ``proxy_summary.json`` holds the counts, the control and the final
and best values. A run whose final accuracy is within two binomial standard errors of chance (or whose
loss did not fall below 99 % of the untrained loss) says so in one ``warning:`` line. Each held-out image
is scored with a few label draws (``repeats``), so small held-out sets still measure something.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from imaging.ssl.base import TaskCollate

SUMMARY = "proxy_summary.json"


def held_out_indices(
    n: int, fraction: float, batch_size: int, seed: int, ids: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) item indices: ``fraction`` of the persons (≥ 2 items) kept out, by a seeded draw.

    Nothing is held out when ``fraction`` is 0 or when fewer than ``batch_size`` items would remain.
    ``ids`` ((N,) person per item) keeps a person's images on one side.
    """
    everything = np.arange(n)
    if fraction <= 0 or n < 3:
        return everything, everything[:0]
    persons = np.asarray([str(i) for i in ids]) if ids is not None else everything.astype(str)
    unique = np.unique(persons)
    order = np.random.default_rng(seed).permutation(len(unique))
    wanted = max(2, int(round(fraction * n)))
    chosen: list[str] = []
    count = 0
    for index in order:
        if count >= wanted:
            break
        chosen.append(unique[index])
        count += int((persons == unique[index]).sum())
    held = np.isin(persons, chosen)
    if n - held.sum() < max(1, batch_size):
        return everything, everything[:0]
    return everything[~held], everything[held]


class ProxyEvaluation:
    """The trainer's ``eval_fn`` for a proxy task: loss and accuracy on fixed held-out batches.

    Args:
        task: the proxy task (its ``make_batch`` builds the batches once, on the CPU).
        images: held-out (C, *spatial) images.
        batch_size: images per batch (a trailing single image joins the previous batch).
        seed: seed of the labels (patch positions, rotations, permutations) of the held-out batches.
        repeats: draws of labels per image (default: up to 4, at most 256 items in all), so a small
            held-out set still scores enough rotations, positions or permutations.
    """

    def __init__(
        self, task: nn.Module, images: Dataset, batch_size: int, seed: int = 0, repeats: int | None = None
    ):
        count = len(images)  # type: ignore[arg-type]
        repeats = max(1, min(4, 256 // max(count, 1))) if repeats is None else max(1, repeats)
        n = count * repeats
        size = max(2, batch_size)
        starts = list(range(0, n, size))
        if len(starts) > 1 and n - starts[-1] < 2:
            starts.pop()
        bounds = [*starts, n]
        collate = TaskCollate(task)
        self.batches: list[dict[str, torch.Tensor]] = []
        self.sizes: list[int] = []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            items = [
                {"image": torch.as_tensor(images[i % count]), "seed": seed * 1_000_003 + i + 1}
                for i in range(start, stop)
            ]
            self.batches.append(collate(items))
            self.sizes.append(stop - start)
        chances = [task.chance_accuracy(batch) for batch in self.batches]
        unknown = not chances or any(c is None for c in chances)
        self.chance = None if unknown else _weighted(chances, self.sizes)
        self.count, self.repeats = count, repeats
        self.initial_loss: float | None = None
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def measure(self, model: nn.Module) -> dict[str, float]:
        """Held-out ``val_proxy_loss`` (and ``val_proxy_acc``), the model in evaluation mode."""
        from imaging.training.distributed import move_to_device

        modes = {module: module.training for module in model.modules()}
        model.eval()
        device = next(model.parameters()).device
        key = getattr(model, "accuracy_key", "accuracy")
        losses, accuracies = [], []
        try:
            for batch in self.batches:
                out = model(move_to_device(batch, device, False))
                losses.append(float(out["loss"]))
                if key in out:
                    accuracies.append(float(out[key]))
        finally:
            for module, mode in modes.items():
                module.training = mode
        metrics = {"val_proxy_loss": _weighted(losses, self.sizes)}
        if accuracies and len(accuracies) == len(losses):
            metrics["val_proxy_acc"] = _weighted(accuracies, self.sizes)
        return metrics

    def start(self, model: nn.Module) -> None:
        """Score the untrained model: the control of every task (``proxy_init_loss``)."""
        if self.batches:
            self.initial_loss = self.measure(model)["val_proxy_loss"]

    def __call__(self, model: nn.Module) -> dict[str, float]:
        metrics = self.measure(model)
        self.history.append(dict(metrics))
        if self.chance is not None:
            metrics["proxy_chance"] = self.chance
        if self.initial_loss is not None:
            metrics["proxy_init_loss"] = self.initial_loss
        return metrics

    def summary(self, task: str, n_train: int, steps: int) -> tuple[dict[str, Any], str | None]:
        """The summary JSON's contents and the warning line when the run stays at chance (else None)."""
        final = self.history[-1] if self.history else {}
        accuracies = [row["val_proxy_acc"] for row in self.history if "val_proxy_acc" in row]
        summary: dict[str, Any] = {
            "task": task,
            "steps": steps,
            "n_train_images": n_train,
            "n_held_out_images": self.count,
            "n_held_out_draws": self.count * self.repeats,
            "proxy_chance": self.chance,
            "proxy_init_loss": self.initial_loss,
            "final": final,
            "best_val_proxy_acc": max(accuracies) if accuracies else None,
        }
        warning = None
        if self.count == 0:
            warning = (
                f"{task}: too few images to hold any out (batch size and val_fraction); the proxy accuracy "
                "was not measured"
            )
        elif self.chance is not None and "val_proxy_acc" in final:
            draws = self.count * self.repeats
            margin = 2 * math.sqrt(self.chance * (1 - self.chance) / draws)
            summary["chance_margin"] = margin
            summary["above_chance"] = bool(final["val_proxy_acc"] > self.chance + margin)
            if not summary["above_chance"]:
                warning = (
                    f"{task}: held-out proxy accuracy {final['val_proxy_acc']:.3f} after {steps} steps is not "
                    f"clearly above chance {self.chance:.3f} (+ 2 SE = {self.chance + margin:.3f}, {draws} draws "
                    f"on {self.count} images): treat its transfer as untrained, or train longer"
                )
        elif self.initial_loss is not None and "val_proxy_loss" in final:
            improved = final["val_proxy_loss"] < 0.99 * self.initial_loss
            summary["above_chance"] = bool(improved)
            if not improved:
                warning = (
                    f"{task}: held-out proxy loss {final['val_proxy_loss']:.4g} after {steps} steps is no lower "
                    f"than the untrained model's {self.initial_loss:.4g}: the encoder did not learn the task"
                )
        summary["warning"] = warning
        return summary, warning


def _weighted(values: Sequence[float | None], weights: Sequence[int]) -> float:
    total = sum(weights)
    return float(sum(float(v) * w for v, w in zip(values, weights, strict=True)) / max(total, 1))


__all__ = ["SUMMARY", "ProxyEvaluation", "held_out_indices"]
