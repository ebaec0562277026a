"""Contrastive image ↔ genetics losses with missing modalities and several images per person.

One batch holds B images; ``person`` (B,) says whose image each is (two eyes or visits share a person).
Each genetic modality m has one embedding per *person* that has it. For every modality present in the
batch, the term compares the images of people who have m with those people's m-embeddings:

* image → genetics: softmax over the people with m; the target is the image's own person. Other
  persons are negatives; a person's second image is never a negative of anything.
* genetics → image: softmax over those images; every image of the person is a positive
  (multi-positive InfoNCE: −log Σ_pos p).
* term_m = α · L(image→genetics) + (1 − α) · L(genetics→image); ContIG used α = 0.75.
* total = mean of term_m over the modalities present in the batch (``outer``: everyone with at least one
  modality; ``inner``: only people with every modality).

A modality absent for a person contributes nothing and receives exactly zero gradient. The ``sigmoid``
kind is SigLIP's pairwise loss over the same (image, person) pairs.

**Chance level.** An InfoNCE loss means nothing without the value a model that knows nothing gets on the
same batch: with collapsed embeddings (all logits equal) image → genetics is ln U_m (U_m people with m)
and genetics → image for person p is ln(R_m / k_p) (R_m images of people with m, k_p of them p's), so

    chance_m = α ln U_m + (1 − α) mean_p ln(R_m / k_p),

which :func:`chance_level` returns for the terms :func:`contrastive_loss` averages. "loss − chance" < 0
means the embeddings pair images with their own person's genetics better than a constant model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSS_KINDS = ("infonce", "sigmoid")
MODES = ("outer", "inner")


def pair_logits(image: torch.Tensor, genetic: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(n_img, D), (n_person, D) → (n_img, n_person) scaled cosine similarities."""
    return scale * F.normalize(image, dim=-1) @ F.normalize(genetic, dim=-1).T


def _infonce(logits: torch.Tensor, positive: torch.Tensor, alpha: float) -> tuple[torch.Tensor, ...]:
    """logits (n_img, n_person), positive (n_img, n_person) bool with exactly one True per row."""
    image_to_genetic = F.cross_entropy(logits, positive.float().argmax(dim=1))
    log_p = logits.T.log_softmax(dim=1)  # (n_person, n_img)
    genetic_to_image = -torch.logsumexp(log_p.masked_fill(~positive.T, float("-inf")), dim=1).mean()
    return alpha * image_to_genetic + (1 - alpha) * genetic_to_image, image_to_genetic, genetic_to_image


def _sigmoid(logits: torch.Tensor, positive: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    labels = positive.float() * 2 - 1
    return -F.logsigmoid(labels * (logits + bias)).sum() / logits.shape[0]


def contrastive_loss(
    image: torch.Tensor | dict[str, torch.Tensor],
    genetics: dict[str, torch.Tensor],
    available: dict[str, torch.Tensor],
    person: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    alpha: float = 0.75,
    kind: str = "infonce",
    mode: str = "outer",
    logit_bias: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Contrastive loss terms between image embeddings and each genetic modality's embeddings.

    Args:
        image: (B, D) image embeddings, one row per image; or modality → (B, D) (one head per modality).
        genetics: modality → (U, D) embeddings, one row per distinct person of the batch (row u is
            person u); rows of people lacking the modality are ignored (they may hold anything).
        available: modality → (U,) bool, which persons have that modality.
        person: (B,) long, row of ``genetics`` each image belongs to (0 ≤ person < U).
        logit_scale: scalar, the multiplier of cosine similarities (exp of the learnable log-scale).
        alpha: weight of the image → genetics direction.
        kind: ``infonce`` or ``sigmoid`` (SigLIP; uses ``logit_bias``).
        mode: ``outer`` or ``inner`` (see module docstring).

    Returns:
        dict with ``loss`` and per modality ``loss_<m>`` (and ``i2g_<m>``, ``g2i_<m>`` for InfoNCE),
        plus ``n_modalities`` (how many terms were averaged).
    """
    if kind not in LOSS_KINDS or mode not in MODES:
        raise ValueError(f"kind must be one of {LOSS_KINDS} and mode one of {MODES}")
    # Rows of ``genetics`` (U); padded rows (e.g. gathered across ranks) are never pointed at by ``person``.
    rows_given = [a.shape[0] for a in available.values()]
    n_people = rows_given[0] if rows_given else (int(person.max().item()) + 1 if person.numel() else 0)
    if any(n != n_people for n in rows_given) or (person.numel() and int(person.max()) >= n_people):
        raise ValueError(
            f"availability masks have {rows_given} rows; person indices reach {int(person.max())}"
        )
    images = image if isinstance(image, dict) else {name: image for name in genetics}
    device = person.device
    people_ok = _people_in_terms(available, n_people, mode, device)
    terms: dict[str, torch.Tensor] = {}
    for name, embedding in genetics.items():
        has = available[name].to(device) & people_ok
        persons = torch.nonzero(has).flatten()
        rows = torch.nonzero(has[person]).flatten()
        if persons.numel() < 2 or rows.numel() < 2:
            continue  # a contrastive term needs at least two people: nothing to contrast
        column = torch.full((n_people,), -1, dtype=torch.long, device=device)
        column[persons] = torch.arange(persons.numel(), device=device)
        positive = column[person[rows]][:, None] == torch.arange(persons.numel(), device=device)[None]
        logits = pair_logits(images[name][rows], embedding[persons], logit_scale)
        if kind == "sigmoid":
            bias = logit_bias if logit_bias is not None else torch.zeros((), device=device)
            terms[f"loss_{name}"] = _sigmoid(logits, positive, bias)
        else:
            total, i2g, g2i = _infonce(logits, positive, alpha)
            terms[f"loss_{name}"], terms[f"i2g_{name}"], terms[f"g2i_{name}"] = total, i2g, g2i
    modality_terms = [v for k, v in terms.items() if k.startswith("loss_")]
    anchor = next(iter(images.values())) if images else person.float()
    loss = torch.stack(modality_terms).mean() if modality_terms else anchor.sum() * 0.0
    return {"loss": loss, **terms, "n_modalities": torch.tensor(float(len(modality_terms)))}


def _people_in_terms(available: dict[str, torch.Tensor], n_people: int, mode: str, device) -> torch.Tensor:
    """(U,) bool: people who may enter a term (``inner``: only those with every modality)."""
    people_ok = torch.ones(n_people, dtype=torch.bool, device=device)
    if mode == "inner":
        for mask in available.values():
            people_ok &= mask.to(device)
    return people_ok


def chance_level(
    available: dict[str, torch.Tensor], person: torch.Tensor, *, alpha: float = 0.75, mode: str = "outer"
) -> dict[str, float]:
    """InfoNCE loss of collapsed embeddings on this batch (module docstring): ``chance`` (the mean over
    the modalities :func:`contrastive_loss` would average) and ``chance_<m>`` per modality.

    Args:
        available: modality → (U,) bool; person: (B,) long row of each image (as for the loss).
    """
    n_people = next(iter(available.values())).shape[0] if available else 0
    people_ok = _people_in_terms(available, n_people, mode, person.device)
    out: dict[str, float] = {}
    for name, mask in available.items():
        has = mask.to(person.device) & people_ok
        rows = has[person]
        n_persons, n_rows = int(has.sum()), int(rows.sum())
        if n_persons < 2 or n_rows < 2:
            continue
        per_person = torch.bincount(person[rows], minlength=n_people)[has].double()
        g2i = float((math.log(n_rows) - per_person.log()).mean())
        out[f"chance_{name}"] = alpha * math.log(n_persons) + (1 - alpha) * g2i
    values = list(out.values())
    return {"chance": sum(values) / len(values) if values else float("nan"), **out}
