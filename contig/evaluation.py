"""Contrastive evaluation that can fail: each person's loss next to its chance level on the same batch.

A contrastive loss by itself says little: its value depends on how many people a batch holds, and a
batch in manifest order holds both eyes of most people, which changes the chance level again. So the
evaluation draws seeded, shuffled batches of *distinct people* (one image per person, chosen by the
seed), and for each person p and modality m with n_m people of the batch having m, it reports

    loss_pm = α · CE(image_p → genetics) + (1 − α) · CE(genetics_p → image),   chance_m = ln n_m,

whose batch means are exactly :func:`contig.losses.contrastive_loss` and
:func:`contig.losses.chance_level` on that batch. ``excess = loss − chance`` per person is averaged over
people, with a percentile-bootstrap 95% interval over people (batches fixed). A held-out interval below 0
means the model pairs unseen people's images with their own genetics better than chance; the same
figure on training people, minus the held-out one, measures memorisation.

The collapsed-embedding chance is a floor for a model that knows nothing only if its embeddings are
collapsed: spread-out embeddings unrelated to genetics score *above* it (the log-sum-exp of varied
logits exceeds that of equal ones). So a method is also compared with its permuted-genetics control
person by person (:func:`paired_difference`): both runs are evaluated on the same seeded batches, so
the per-person difference of their losses has a paired bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from contig.dataset import MultimodalDataset
from contig.losses import pair_logits
from imaging.metrics import bootstrap_ci
from imaging.training import distributed as D


def distinct_person_batches(iids: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Image indices in batches of ``batch_size`` distinct people (the last may be smaller).

    One image per person is chosen at random, people are shuffled; the same ``seed`` gives the same
    batches. iids: (n_images,) str → list of (≤ batch_size,) int64 arrays.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(iids))
    _, first = np.unique(np.asarray(iids, dtype=str)[order], return_index=True)
    chosen = order[first]  # a random image of every person
    chosen = chosen[rng.permutation(chosen.size)]
    return [chosen[start : start + batch_size] for start in range(0, chosen.size, batch_size)]


def per_person_terms(
    image: dict[str, torch.Tensor],
    genetics: dict[str, torch.Tensor],
    available: dict[str, torch.Tensor],
    logit_scale: torch.Tensor,
    alpha: float,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Per-person InfoNCE terms of a batch with one image per person (row u of everything is person u).

    Args:
        image, genetics: modality → (U, D) embeddings; available: modality → (U,) bool.

    Returns:
        modality → (rows (n_m,) long, loss (n_m,), chance ln n_m) for modalities with ≥ 2 people.
    """
    out = {}
    for name, embedding in genetics.items():
        rows = torch.nonzero(available[name]).flatten()
        if rows.numel() < 2:
            continue
        logits = pair_logits(image[name][rows], embedding[rows], logit_scale)
        i2g = -logits.log_softmax(dim=1).diagonal()
        g2i = -logits.T.log_softmax(dim=1).diagonal()
        out[name] = (rows, alpha * i2g + (1 - alpha) * g2i, math.log(rows.numel()))
    return out


@torch.no_grad()
def contrastive_evaluation(
    model: nn.Module,
    dataset: MultimodalDataset,
    collate: Callable[[list[dict]], dict],
    batch_size: int,
    alpha: float,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (person, modality): ``IID modality loss chance excess batch`` (module docstring).

    ``collate`` turns dataset items into a batch (:class:`contig.dataset.MultimodalCollate`); the model is
    run in eval mode and restored to its previous mode.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    frames = []
    try:
        for number, indices in enumerate(distinct_person_batches(dataset.iids, batch_size, seed)):
            batch = D.move_to_device(collate([dataset[int(i)] for i in indices]), device, False)
            out = model(batch["images"], batch["genetics"], batch["available"])
            iids = np.asarray(batch["iids"])  # one image per person: image row u is person u
            terms = per_person_terms(
                {m: v.float() for m, v in out["image"].items()},
                {m: v.float() for m, v in out["genetics"].items()},
                batch["available"],
                out["logit_scale"].float(),
                alpha,
            )
            for name, (rows, loss, chance) in terms.items():
                loss = loss.cpu().double().numpy()
                frames.append(
                    pd.DataFrame(
                        {
                            "IID": iids[rows.cpu().numpy()],
                            "modality": name,
                            "loss": loss,
                            "chance": chance,
                            "excess": loss - chance,
                            "batch": number,
                        }
                    )
                )
    finally:
        model.train(was_training)
    columns = ["IID", "modality", "loss", "chance", "excess", "batch"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def bootstrap_mean_interval(values: np.ndarray, n_boot: int = 1_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (n,) (``imaging.metrics.bootstrap_ci``);
    NaN for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan"), float("nan")
    result = bootstrap_ci(np.mean, values, n_boot=n_boot, seed=seed)
    return result.low, result.high


def summarise_excess(terms: pd.DataFrame, n_boot: int = 1_000, seed: int = 0) -> dict[str, dict]:
    """Per modality: people, mean loss, mean chance, mean excess and its 95% bootstrap interval."""
    summary = {}
    for name, group in terms.groupby("modality", sort=False):
        low, high = bootstrap_mean_interval(group["excess"].to_numpy(), n_boot, seed)
        summary[str(name)] = {
            "people": int(len(group)),
            "loss": float(group["loss"].mean()),
            "chance": float(group["chance"].mean()),
            "excess": float(group["excess"].mean()),
            "excess_ci": [low, high],
        }
    return summary


def validation_metrics(terms: pd.DataFrame, prefix: str = "val") -> dict[str, float]:
    """``<prefix>_loss``, ``_chance``, ``_excess`` (means over modalities of the per-modality means, as
    the training loss averages its terms) and ``<prefix>_excess_<m>`` per modality."""
    if terms.empty:
        return {f"{prefix}_loss": float("nan")}
    means = terms.groupby("modality", sort=False)[["loss", "chance", "excess"]].mean()
    metrics = {f"{prefix}_{column}": float(means[column].mean()) for column in ("loss", "chance", "excess")}
    metrics |= {f"{prefix}_excess_{name}": float(value) for name, value in means["excess"].items()}
    return metrics


def paired_difference(
    terms: pd.DataFrame, control: pd.DataFrame, n_boot: int = 1_000, seed: int = 0
) -> dict[str, dict]:
    """Per modality: mean over people of (loss − control's loss) on the same people and batches, with a
    paired 95% bootstrap interval; ``terms``/``control`` as :func:`contrastive_evaluation` returns."""
    both = terms.merge(
        control, on=["IID", "modality", "batch"], suffixes=("", "_control"), validate="one_to_one"
    )
    out = {}
    for name, group in both.groupby("modality", sort=False):
        difference = (group["loss"] - group["loss_control"]).to_numpy()
        low, high = bootstrap_mean_interval(difference, n_boot, seed)
        out[str(name)] = {
            "people": int(len(group)),
            "difference": float(difference.mean()),
            "ci": [low, high],
        }
    return out
