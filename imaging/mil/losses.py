"""MIL losses: the image-level term, and guidance terms on patches of images that have masks.

Every term returns a scalar tensor; ``MILLoss`` is the ``loss_fn(model, batch) -> dict`` the shared
trainer calls, with the total under ``"loss"`` and each term under its own name (open_clip style).
Guidance terms are averaged over the patches of the images whose ``has_mask`` is true; a batch without
any mask gives exactly 0 for them (with a gradient path, so DDP sees every parameter used).

>>> p = torch.tensor([[0.9, 0.1], [0.2, 0.2]]); t = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
>>> round(float(patch_guidance_loss(p, t, torch.tensor([True, False]))), 4)
0.1054
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imaging.mil.data import patch_targets

EPS = 1e-6


def image_loss(prob: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of (B,) probabilities vs (B,) 0/1 labels, or NLL of (B, C) vs (B,) classes."""
    prob = prob.float()
    if prob.ndim == 1:
        return F.binary_cross_entropy(prob.clamp(EPS, 1 - EPS), label.float())
    return F.nll_loss(torch.log(prob.clamp_min(EPS)), label.long())


def _balanced_weights(lesion: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """(B, K) weights summing to 1 over the selected images: half on lesion patches, half on the rest
    (all on one side when the other is empty)."""
    chosen = select[:, None].expand_as(lesion).float()
    pos, neg = lesion.float() * chosen, (1.0 - lesion.float()) * chosen
    n_pos, n_neg = pos.sum(), neg.sum()
    share = 0.5 if (n_pos > 0 and n_neg > 0) else 1.0
    return share * (pos / n_pos.clamp_min(1.0) + neg / n_neg.clamp_min(1.0))


def patch_guidance_loss(
    patch_prob: torch.Tensor, targets: torch.Tensor, select: torch.Tensor, balanced: bool = True
) -> torch.Tensor:
    """Cross-entropy of the local probabilities vs patch targets, on the images where ``select``.

    Args:
        patch_prob: (B, K) positive-class p_k, or (B, K, C).
        targets: (B, K) 0/1 float (binary) or class indices (long).
        select: (B,) bool, images with masks.
        balanced: weigh lesion and healthy patches equally (lesions are a few patches of many).
    """
    lesion = targets > 0
    weights = _balanced_weights(lesion, select) if balanced else _plain_weights(lesion, select)
    if patch_prob.ndim == 2:
        per_patch = F.binary_cross_entropy(
            patch_prob.float().clamp(EPS, 1 - EPS), targets.float(), reduction="none"
        )
    else:
        log_p = torch.log(patch_prob.float().clamp_min(EPS))
        per_patch = -log_p.gather(-1, targets.long()[..., None]).squeeze(-1)
    return (weights * per_patch).sum()


def attention_guidance_loss(
    attention: torch.Tensor, targets: torch.Tensor, select: torch.Tensor, pooling: str, balanced: bool = True
) -> torch.Tensor:
    """Attention on lesion patches, none elsewhere.

    ``interpretable`` (sigmoid weights w_k ∈ (0, 1)): binary cross-entropy of w_k vs 1[lesion patch].
    ``attention`` (softmax α_k): cross-entropy of α against the uniform distribution over the lesion
    patches, on selected images that have lesion patches. Other poolings have no attention to guide: 0.
    """
    lesion = targets > 0
    if pooling == "interpretable":
        weights = _balanced_weights(lesion, select) if balanced else _plain_weights(lesion, select)
        per_patch = F.binary_cross_entropy(
            attention.float().clamp(EPS, 1 - EPS), lesion.float(), reduction="none"
        )
        return (weights * per_patch).sum()
    if pooling == "attention":
        rows = select & lesion.any(dim=1)
        target = lesion.float() / lesion.float().sum(dim=1, keepdim=True).clamp_min(1.0)
        per_image = -(target * torch.log(attention.float().clamp_min(EPS))).sum(dim=1)
        return (per_image * rows.float()).sum() / rows.float().sum().clamp_min(1.0)
    return attention.sum() * 0.0


def _plain_weights(lesion: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    chosen = select[:, None].expand_as(lesion).float()
    return chosen / chosen.sum().clamp_min(1.0)


class MILLoss:
    """``loss_fn(model, batch)`` for the trainer: image loss + guidance on the images with masks.

    Args:
        guide_patch: weight of the patch-probability guidance (0 = none).
        guide_attention: weight of the attention guidance (0 = none).
        min_coverage: a patch is a lesion patch when more than this fraction of it is lesion.
        balanced: weigh lesion and healthy patches equally in the guidance terms.

    The batch holds image (B, 1, H, W), label (B,), and for guidance mask (B, H, W) and has_mask (B,).
    Returns {"loss", "image", "guide_patch", "guide_attention"} scalars.
    """

    def __init__(
        self,
        guide_patch: float = 0.0,
        guide_attention: float = 0.0,
        min_coverage: float = 0.0,
        balanced: bool = True,
    ):
        self.guide_patch, self.guide_attention = float(guide_patch), float(guide_attention)
        self.min_coverage, self.balanced = float(min_coverage), balanced

    def __call__(self, model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch["image"])
        terms = {"image": image_loss(out["prob"], batch["label"])}
        total = terms["image"]
        guided = (self.guide_patch > 0 or self.guide_attention > 0) and "mask" in batch
        if guided:
            core = getattr(model, "module", model)  # DDP wrapper
            select = batch["has_mask"].bool()
            with torch.no_grad():
                targets = patch_targets(batch["mask"], core, core.num_classes, self.min_coverage)
            if self.guide_patch > 0:
                terms["guide_patch"] = patch_guidance_loss(out["patch_prob"], targets, select, self.balanced)
                total = total + self.guide_patch * terms["guide_patch"]
            if self.guide_attention > 0:
                terms["guide_attention"] = attention_guidance_loss(
                    out["attention"], targets, select, core.pooling, self.balanced
                )
                total = total + self.guide_attention * terms["guide_attention"]
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}}


__all__ = ["MILLoss", "attention_guidance_loss", "image_loss", "patch_guidance_loss"]
