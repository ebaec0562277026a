"""Integrated gradients of the contrastive loss: completeness, batched = per-person loop, zero at baseline."""

from __future__ import annotations

import torch

from contig.explain import integrated_gradients, per_person_loss
from contig.model import ContIG, TowerSpec


def setup(features: int = 6, people: int = 5):
    torch.manual_seed(0)
    model = ContIG({"pgs": TowerSpec("mlp_h1", features)}, image_encoder="test_resnet", embed_dim=8).eval()
    x = torch.randn(people, features)
    own, reference = torch.randn(people, 8), torch.randn(7, 8)
    baseline = torch.full((features,), 0.1)
    return model, x, baseline, own, reference


def test_attributions_sum_to_the_loss_difference():
    # Completeness: Σ_f IG_f = L(x) − L(baseline), up to the midpoint rule's error, which shrinks with the
    # step count (≈ 1/S here: the ReLU tower is piecewise linear).
    model, x, baseline, own, reference = setup()
    with torch.no_grad():
        delta = per_person_loss(model, "pgs", x, own, reference) - per_person_loss(
            model, "pgs", baseline.expand_as(x), own, reference
        )
    errors = [
        (integrated_gradients(model, "pgs", x, baseline, own, reference, steps=s).sum(1) - delta).abs().max()
        for s in (32, 1024)
    ]
    assert errors[1] < errors[0] / 8
    torch.testing.assert_close(
        integrated_gradients(model, "pgs", x, baseline, own, reference, steps=1024).sum(1),
        delta,
        rtol=0.02,
        atol=0.02,
    )


def test_batched_attributions_equal_a_loop_over_people():
    model, x, baseline, own, reference = setup(people=9)
    batched = integrated_gradients(model, "pgs", x, baseline, own, reference, steps=16, chunk=4)
    loop = torch.cat(
        [
            integrated_gradients(model, "pgs", x[p : p + 1], baseline, own[p : p + 1], reference, steps=16)
            for p in range(9)
        ]
    )
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-6)


def test_an_input_at_its_baseline_gets_zero_attribution():
    model, x, baseline, own, reference = setup()
    x[:, 2] = baseline[2]
    ig = integrated_gradients(model, "pgs", x, baseline, own, reference, steps=8)
    assert torch.equal(ig[:, 2], torch.zeros(len(x)))
    assert ig[:, [0, 1, 3]].abs().sum() > 0


def test_reference_set_never_holds_the_persons_own_image():
    import numpy as np

    from contig.explain import reference_set

    people = np.arange(3, 40)
    for n_reference in (5, 36, 100):
        rows, exclude = reference_set(people, n_reference, np.random.default_rng(n_reference))
        negatives = (~exclude).sum(dim=1)
        assert (negatives == min(n_reference, people.size - 1)).all()
        for p, person in enumerate(people):
            assert person not in rows[~exclude[p].numpy()]


def test_an_excluded_reference_is_not_a_negative():
    model, x, _, own, reference = setup()
    exclude = torch.zeros(len(x), len(reference), dtype=torch.bool)
    exclude[:, 3] = True
    keep = [k for k in range(len(reference)) if k != 3]
    with torch.no_grad():
        torch.testing.assert_close(
            per_person_loss(model, "pgs", x, own, reference, exclude),
            per_person_loss(model, "pgs", x, own, reference[keep]),
        )
