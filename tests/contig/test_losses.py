"""Contrastive losses against a plain loop, masking of missing modalities, and same-person positives."""

from __future__ import annotations

import math

import pytest
import torch

from contig.losses import contrastive_loss

torch.manual_seed(0)


def _loop_infonce(image, genetics, available, person, scale, alpha):
    """Obvious reference: Python loops over images and people, one modality at a time."""
    terms = []
    n_people = int(max(person)) + 1
    for name, embedding in genetics.items():
        persons = [u for u in range(n_people) if bool(available[name][u])]
        rows = [i for i in range(len(person)) if bool(available[name][int(person[i])])]
        if len(persons) < 2 or len(rows) < 2:
            continue
        cos = lambda a, b: float(torch.dot(a, b) / (a.norm() * b.norm()))  # noqa: E731
        i2g = 0.0
        for i in rows:
            logits = [scale * cos(image[i], embedding[u]) for u in persons]
            own = persons.index(int(person[i]))
            i2g += -(logits[own] - math.log(sum(math.exp(v) for v in logits)))
        i2g /= len(rows)
        g2i = 0.0
        for u in persons:
            logits = [scale * cos(image[i], embedding[u]) for i in rows]
            norm = math.log(sum(math.exp(v) for v in logits))
            pos = [logits[k] - norm for k, i in enumerate(rows) if int(person[i]) == u]
            g2i += -math.log(sum(math.exp(v) for v in pos))
        g2i /= len(persons)
        terms.append(alpha * i2g + (1 - alpha) * g2i)
    return sum(terms) / len(terms)


def _batch(n_people=6, dim=5):
    person = torch.tensor([0, 1, 1, 2, 3, 3, 4, 5])  # people 1 and 3 have two images
    image = torch.randn(len(person), dim, requires_grad=True)
    genetics = {m: torch.randn(n_people, dim, requires_grad=True) for m in ("snp", "pgs", "burden")}
    available = {
        "snp": torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool),
        "pgs": torch.tensor([1, 1, 1, 1, 1, 1], dtype=torch.bool),
        "burden": torch.tensor([0, 1, 1, 0, 1, 0], dtype=torch.bool),
    }
    return image, genetics, available, person


def test_infonce_equals_loop_reference():
    image, genetics, available, person = _batch()
    scale = torch.tensor(7.0)
    result = contrastive_loss(image, genetics, available, person, scale, alpha=0.75)
    reference = _loop_infonce(image.detach(), {k: v.detach() for k, v in genetics.items()}, available,
                              person, 7.0, 0.75)  # fmt: skip
    assert result["loss"].item() == pytest.approx(reference, rel=1e-5)
    assert result["n_modalities"].item() == 3


def test_missing_modality_gets_exactly_zero_gradient():
    image, genetics, available, person = _batch()
    contrastive_loss(image, genetics, available, person, torch.tensor(5.0))["loss"].backward()
    for name, embedding in genetics.items():
        absent = ~available[name]
        assert torch.all(embedding.grad[absent] == 0), name
        assert torch.all(embedding.grad[~absent].abs().sum(dim=1) > 0), name


def test_values_in_absent_rows_do_not_matter():
    image, genetics, available, person = _batch()
    first = contrastive_loss(image, genetics, available, person, torch.tensor(5.0))["loss"]
    changed = {k: v.detach().clone() for k, v in genetics.items()}
    changed["snp"][~available["snp"]] = 1e6  # garbage, even NaN-like magnitudes, in absent rows
    second = contrastive_loss(image, changed, available, person, torch.tensor(5.0))["loss"]
    assert first.item() == pytest.approx(second.item(), rel=1e-6)


def test_same_person_images_are_positives_not_negatives():
    """Two identical images of one person: moving the second toward the person's genetics lowers the loss,
    which could not happen if it were a negative of the first."""
    dim = 4
    genetics = {"pgs": torch.eye(3, dim)}
    available = {"pgs": torch.ones(3, dtype=torch.bool)}
    person = torch.tensor([0, 0, 1, 2])
    image = torch.stack([torch.eye(dim)[0], torch.eye(dim)[3], torch.eye(dim)[1], torch.eye(dim)[2]])
    far = contrastive_loss(image, genetics, available, person, torch.tensor(10.0), alpha=0.5)["loss"]
    image_close = image.clone()
    image_close[1] = torch.eye(dim)[0]  # second image of person 0 now identical to the first
    close = contrastive_loss(image_close, genetics, available, person, torch.tensor(10.0), alpha=0.5)["loss"]
    assert close < far
    # genetics→image with duplicated positives: log Σ_pos p makes two equal positives count together
    assert close.item() < 0.01


def test_inner_mode_uses_only_people_with_every_modality():
    image, genetics, available, person = _batch()
    inner = contrastive_loss(image, genetics, available, person, torch.tensor(5.0), mode="inner")
    everyone = torch.stack(list(available.values())).all(dim=0)  # people 1 and 4
    restricted = {k: everyone.clone() for k in available}
    reference = contrastive_loss(image, genetics, restricted, person, torch.tensor(5.0), mode="outer")
    assert inner["loss"].item() == pytest.approx(reference["loss"].item(), rel=1e-6)


def test_sigmoid_loss_is_finite_and_masks_too():
    image, genetics, available, person = _batch()
    result = contrastive_loss(image, genetics, available, person, torch.tensor(10.0), kind="sigmoid",
                              logit_bias=torch.tensor(-10.0))  # fmt: skip
    result["loss"].backward()
    assert torch.isfinite(result["loss"])
    assert torch.all(genetics["burden"].grad[~available["burden"]] == 0)


def test_batch_with_no_usable_modality_gives_zero_loss_with_graph():
    image = torch.randn(2, 3, requires_grad=True)
    result = contrastive_loss(image, {"snp": torch.randn(2, 3)}, {"snp": torch.tensor([True, False])},
                              torch.tensor([0, 1]), torch.tensor(5.0))  # fmt: skip
    assert result["loss"].item() == 0.0 and result["n_modalities"].item() == 0
    result["loss"].backward()
