"""Contrastive losses of the proxy tasks: InfoNCE over a candidate set, NT-Xent (SimCLR), triplet.

Each is a pure function of tensors; the tests compare them with loop versions.

>>> z = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
>>> float(nt_xent(z, z, temperature=0.1)) < float(nt_xent(z, z.roll(1, 0), temperature=0.1))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    predictions: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of each prediction against all candidates, the right one at ``targets``.

    predictions: (N, F); candidates: (M, F); targets: (N,) long indices into candidates.
    Returns (mean loss, accuracy of the arg-max candidate).
    """
    logits = predictions @ candidates.T / temperature  # (N, M)
    loss = F.cross_entropy(logits, targets)
    accuracy = (logits.argmax(1) == targets).float().mean()
    return loss, accuracy


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over the 2B views of a batch.

    z1, z2: (B, F) projections of the two views (L2-normalised here). For each of the 2B views the
    positive is the other view of the same sample. Without ``groups`` the 2B − 2 views of the other
    samples are its negatives; with ``groups`` (B,) (e.g. the volume each patch was cut from) only the
    views of other samples in the same group are, so a view of another group never enters its
    denominator.
    """
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, F)
    b = z1.shape[0]
    logits = z @ z.T / temperature
    excluded = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    if groups is not None:
        both = torch.cat([groups, groups]).to(z.device)
        excluded = excluded | (both[:, None] != both[None, :])
    logits = logits.masked_fill(excluded, float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, targets)


def triplet(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """mean(max(0, ‖a − p‖ − ‖a − n‖ + margin)) on L2-normalised (B, F) embeddings."""
    a, p, n = (F.normalize(t, dim=1) for t in (anchor, positive, negative))
    return F.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + margin).mean()


def binary_single_negative(
    predictions: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """The original CPC 3D loss: logistic loss of one positive and one negative score per prediction.

    All (N, F): score = dot product; target 1 for the positive, 0 for the negative.
    """
    pos = (predictions * positives).sum(1)
    neg = (predictions * negatives).sum(1)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
    )


__all__ = ["binary_single_negative", "info_nce", "nt_xent", "triplet"]
