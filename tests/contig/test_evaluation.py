"""Chance levels, distinct-person evaluation batches and the per-person terms behind loss − chance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from contig.evaluation import (
    bootstrap_mean_interval,
    distinct_person_batches,
    paired_difference,
    per_person_terms,
    summarise_excess,
    validation_metrics,
)
from contig.losses import chance_level, contrastive_loss


def _batch():
    person = torch.tensor([0, 1, 1, 2, 3, 3, 4, 5])  # people 1 and 3 have two images
    available = {
        "snp": torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool),
        "pgs": torch.tensor([1, 1, 1, 1, 1, 1], dtype=torch.bool),
        "burden": torch.tensor([0, 1, 1, 0, 1, 0], dtype=torch.bool),
    }
    return person, available


@pytest.mark.parametrize("mode", ["outer", "inner"])
def test_chance_level_is_the_loss_of_collapsed_embeddings(mode):
    person, available = _batch()
    collapsed = torch.ones(len(person), 4)  # every image and every person embed to the same vector
    genetics = {m: torch.ones(6, 4) for m in available}
    loss = contrastive_loss(collapsed, genetics, available, person, torch.tensor(10.0), alpha=0.6, mode=mode)
    chance = chance_level(available, person, alpha=0.6, mode=mode)
    assert chance["chance"] == pytest.approx(loss["loss"].item(), abs=1e-6)
    for name in available:
        key = f"loss_{name}"
        if key in loss:
            assert chance[f"chance_{name}"] == pytest.approx(loss[key].item(), abs=1e-6)
        else:
            assert f"chance_{name}" not in chance


def test_chance_level_analytic_values():
    person, available = _batch()
    chance = chance_level(available, person, alpha=0.75)
    # pgs: 6 people, 8 images, people 1 and 3 have 2 images: g2i = mean(ln 8/k)
    g2i = (4 * math.log(8) + 2 * math.log(4)) / 6
    assert chance["chance_pgs"] == pytest.approx(0.75 * math.log(6) + 0.25 * g2i)
    # one image per person: chance is ln n in both directions
    distinct = chance_level({"pgs": torch.ones(64, dtype=torch.bool)}, torch.arange(64))
    assert distinct["chance"] == pytest.approx(math.log(64))


def test_evaluation_batches_hold_distinct_people_and_cover_everyone_once():
    iids = np.repeat([f"p{i}" for i in range(50)], [1 + (i % 2) for i in range(50)])  # manifest order
    batches = distinct_person_batches(iids, 16, seed=3)
    people = [iids[b] for b in batches]
    assert all(len(set(p)) == len(p) for p in people)
    assert sorted(np.concatenate(people)) == sorted(set(iids))
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    again = distinct_person_batches(iids, 16, seed=3)
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    other = distinct_person_batches(iids, 16, seed=4)
    assert not all((a == b).all() for a, b in zip(batches, other, strict=True))
    # shuffled: the first batch is not the first 16 people of the manifest
    assert set(people[0]) != set(iids[:24])


def test_per_person_terms_average_to_the_batch_loss():
    torch.manual_seed(0)
    n = 7
    image = {m: torch.randn(n, 5) for m in ("snp", "pgs")}
    genetics = {m: torch.randn(n, 5) for m in ("snp", "pgs")}
    available = {
        "snp": torch.tensor([1, 1, 0, 1, 1, 1, 1], dtype=torch.bool),
        "pgs": torch.ones(n, dtype=torch.bool),
    }
    terms = per_person_terms(image, genetics, available, torch.tensor(10.0), alpha=0.75)
    loss = contrastive_loss(image, genetics, available, torch.arange(n), torch.tensor(10.0), alpha=0.75)
    for name, (rows, per_person, chance) in terms.items():
        assert per_person.mean().item() == pytest.approx(loss[f"loss_{name}"].item(), rel=1e-5)
        assert chance == pytest.approx(math.log(len(rows)))
    assert terms["snp"][0].tolist() == [0, 1, 3, 4, 5, 6]


def test_perfect_alignment_is_below_chance_and_shuffled_is_not():
    n = 32
    codes = torch.eye(n)
    available = {"snp": torch.ones(n, dtype=torch.bool)}
    aligned = per_person_terms({"snp": codes}, {"snp": codes}, available, torch.tensor(10.0), 0.75)
    assert float(aligned["snp"][1].mean()) - math.log(n) < -2.0
    shuffled = per_person_terms(
        {"snp": codes}, {"snp": codes[torch.randperm(n)]}, available, torch.tensor(10.0), 0.75
    )
    assert float(shuffled["snp"][1].mean()) - math.log(n) > 0.0


def test_summaries_and_interval_cover_the_mean():
    rng = np.random.default_rng(0)
    terms = pd.DataFrame(
        {
            "IID": [f"p{i}" for i in range(200)] * 2,
            "modality": ["snp"] * 200 + ["pgs"] * 200,
            "loss": np.r_[rng.normal(3.0, 0.3, 200), rng.normal(4.2, 0.3, 200)],
            "chance": 4.0,
        }
    )
    terms["excess"] = terms["loss"] - terms["chance"]
    summary = summarise_excess(terms, n_boot=500, seed=1)
    low, high = summary["snp"]["excess_ci"]
    assert low < summary["snp"]["excess"] < high < 0
    assert summary["pgs"]["excess_ci"][0] > 0
    assert summary["snp"]["people"] == 200
    metrics = validation_metrics(terms)
    assert metrics["val_excess"] == pytest.approx((summary["snp"]["excess"] + summary["pgs"]["excess"]) / 2)
    assert set(metrics) == {"val_loss", "val_chance", "val_excess", "val_excess_snp", "val_excess_pgs"}
    assert bootstrap_mean_interval(np.ones(1)) != bootstrap_mean_interval(np.ones(1))  # nan for n < 2


def test_paired_difference_compares_the_same_people_and_batches():
    rng = np.random.default_rng(0)
    base = pd.DataFrame(
        {
            "IID": [f"p{i}" for i in range(100)],
            "modality": "snp",
            "batch": np.arange(100) // 10,
            "chance": 2.3,
        }
    )
    control = base.assign(loss=rng.normal(2.4, 0.5, 100))
    method = base.assign(loss=control["loss"] - 0.1 + rng.normal(0, 0.01, 100)).sample(frac=1, random_state=1)
    result = paired_difference(method, control, n_boot=500)["snp"]
    assert result["people"] == 100
    assert result["difference"] == pytest.approx(-0.1, abs=0.005)
    low, high = result["ci"]
    assert low < -0.09 and high < 0  # paired: the person-to-person spread cancels
    assert paired_difference(control, control)["snp"]["difference"] == 0.0
