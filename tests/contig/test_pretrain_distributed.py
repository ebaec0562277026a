"""Two gloo processes reproduce the single-process ContIG loss and gradients of the same global batch,
including a person whose images landed on both ranks and people missing a modality."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from contig.pretrain import CodedCollate, PretrainConfig, pretrain_loss
from genetics.record import GeneticRecord
from tests._gloo import run_ranks

WORLD = 2
# Global batch of 8 images; person A has three images, one of them on rank 1.
# Rank 1 holds only three distinct people, so its last padded genetic row is never pointed at.
IMAGES_BY_RANK = [["A", "A", "B", "C"], ["D", "E", "A", "D"]]
PEOPLE = ["A", "B", "C", "D", "E", "F"]


def record() -> GeneticRecord:
    g = torch.Generator().manual_seed(0)
    pgs = pd.DataFrame(torch.randn(6, 3, generator=g).numpy(), columns=["s1", "s2", "s3"])
    pgs.insert(0, "IID", PEOPLE)
    burden = pd.DataFrame(torch.randn(6, 2, generator=g).numpy(), columns=["g1", "g2"])
    burden.insert(0, "IID", PEOPLE)
    return GeneticRecord(pgs=pgs[pgs["IID"] != "C"], burden=burden[burden["IID"] != "E"])


def images(iids: list[str]) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    table = {iid: torch.randn(3, 5, generator=g) for iid in ["A", "A2", "A3", "B", "C", "D", "D2", "E", "F"]}
    seen: dict[str, int] = {}
    items = []
    for iid in iids:
        seen[iid] = seen.get(iid, 0) + 1
        key = iid if seen[iid] == 1 else f"{iid}{seen[iid]}"
        items.append({"image": table[key], "iid": iid})
    return items


class TinyContIG(nn.Module):
    """The ContIG forward contract with linear towers (no normalisation layers)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.image = nn.ModuleDict(
            {"pgs": nn.Linear(15, 4), "burden": nn.Linear(15, 4)}
        )  # a head per modality
        self.towers = nn.ModuleDict({"pgs": nn.Linear(3, 4), "burden": nn.Linear(2, 4)})
        self.log_logit_scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, images, genetics, available):
        return {
            "image": {m: head(images.flatten(1)) for m, head in self.image.items()},
            "genetics": {m: self.towers[m](x) * available[m][:, None] for m, x in genetics.items()},
            "logit_scale": self.log_logit_scale.exp(),
            "logit_bias": None,
        }


def collate() -> CodedCollate:
    return CodedCollate(record(), ("pgs", "burden"), {iid: i for i, iid in enumerate(PEOPLE)})


def loss_and_grads(batch) -> dict[str, torch.Tensor]:
    model = TinyContIG()
    terms = pretrain_loss(PretrainConfig(alpha=0.75))(model, batch)
    terms["loss"].backward()
    out = {"loss": terms["loss"].detach(), "n_modalities": terms["n_modalities"]}
    return out | {f"grad.{k}": p.grad.detach().clone() for k, p in model.named_parameters()}


def _worker(local: int, folder: str) -> None:
    result = loss_and_grads(
        collate()(images(IMAGES_BY_RANK[0] + IMAGES_BY_RANK[1])[4 * local : 4 * local + 4])
    )
    for key, value in result.items():
        if key.startswith("grad."):  # what DDP's gradient averaging does
            dist.all_reduce(value)
            value /= WORLD
    save_file(result, os.path.join(folder, f"rank{local}.safetensors"))


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    run_ranks(_worker, WORLD, folder)
    return [load_file(folder / f"rank{r}.safetensors") for r in range(WORLD)]


def test_two_ranks_give_the_single_process_loss_and_gradients(spawned):
    single = loss_and_grads(collate()(images(IMAGES_BY_RANK[0] + IMAGES_BY_RANK[1])))
    assert float(single["n_modalities"]) == 2.0
    for result in spawned:
        for key, value in single.items():
            torch.testing.assert_close(result[key], value, rtol=1e-5, atol=1e-6, msg=key)
