"""The ContIG model: towers by name, absent people never computed, one backward through the loss."""

from __future__ import annotations

import torch

from contig.losses import contrastive_loss
from contig.model import ContIG, TowerSpec


def _model(**kw):
    towers = {
        "snp": TowerSpec("mlp_h1_bn", 20),
        "pgs": TowerSpec("mlp_h1", 4),
    }
    return ContIG(towers, image_encoder="resnet10t", embed_dim=8, in_chans=3, **kw)


def test_shapes_and_zero_rows_for_absent_people():
    torch.manual_seed(0)
    model = _model()
    images = torch.randn(5, 3, 32, 32)
    genetics = {"snp": torch.randn(4, 20), "pgs": torch.randn(4, 4)}
    available = {"snp": torch.tensor([True, False, True, True]), "pgs": torch.ones(4, dtype=torch.bool)}
    out = model(images, genetics, available)
    assert {m: v.shape for m, v in out["image"].items()} == {"snp": (5, 8), "pgs": (5, 8)}
    assert not torch.equal(out["image"]["snp"], out["image"]["pgs"])  # one projection head per modality
    assert out["genetics"]["snp"].shape == (4, 8)
    assert torch.all(out["genetics"]["snp"][1] == 0)
    assert out["logit_scale"].item() > 1


def test_absent_rows_never_reach_batchnorm():
    """The BatchNorm tower's running statistics depend only on present people's inputs."""
    torch.manual_seed(0)
    model = _model()
    model.train()
    values = torch.randn(4, 20)
    available = torch.tensor([True, True, False, True])
    model.encode_genetics("snp", values, available)
    stats_a = [
        b.running_mean.clone()
        for b in model.genetic_towers["snp"].modules()
        if isinstance(b, torch.nn.BatchNorm1d)
    ]
    torch.manual_seed(0)
    model_b = _model()
    model_b.train()
    garbage = values.clone()
    garbage[2] = 1e6
    model_b.encode_genetics("snp", garbage, available)
    stats_b = [
        b.running_mean.clone()
        for b in model_b.genetic_towers["snp"].modules()
        if isinstance(b, torch.nn.BatchNorm1d)
    ]
    assert stats_a and all(torch.equal(a, b) for a, b in zip(stats_a, stats_b, strict=True))


def test_one_optimizer_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _model()
    images = torch.randn(6, 3, 32, 32)
    person = torch.tensor([0, 1, 2, 3, 4, 4])
    genetics = {"snp": torch.randn(5, 20), "pgs": torch.randn(5, 4)}
    available = {
        "snp": torch.tensor([1, 1, 0, 1, 1], dtype=torch.bool),
        "pgs": torch.ones(5, dtype=torch.bool),
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)  # a small gradient step must descend
    model.eval()  # fixed BatchNorm behaviour in the image tower for a clean comparison

    def loss():
        out = model(images, genetics, available)
        return contrastive_loss(out["image"], out["genetics"], available, person, out["logit_scale"])["loss"]

    before = loss()
    before.backward()
    optimizer.step()
    assert loss().item() < before.item()


def test_heads_follow_the_paper_by_default_and_a_linear_head_is_an_option():
    model = _model()
    assert not model.log_logit_scale.requires_grad and abs(model.logit_scale.item() - 10.0) < 1e-5
    assert all(isinstance(h, torch.nn.Sequential) and len(h) == 3 for h in model.image_heads.values())
    linear = _model(head_layers=1, learn_temperature=True)
    assert all(isinstance(h, torch.nn.Linear) for h in linear.image_heads.values())
    assert linear.log_logit_scale.requires_grad
