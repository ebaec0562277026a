"""Two gloo processes on CPU: the differentiable all-gather gives the single-process InfoNCE loss and
gradients, and the Trainer under DDP (batch 4 per rank) matches one process with batch 8."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from imaging.training import (
    ResumableSampler,
    Trainer,
    TrainingConfig,
    all_gather_with_grad,
    rank,
    world_size,
)
from tests._gloo import run_ranks

WORLD, LOCAL_BATCH, DIM = 2, 4, 5


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric CLIP loss over (N, D) pairs: row i of ``a`` matches row i of ``b``."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def local_info_nce(a_local, b_local, a_all, b_all, offset: int, temperature: float = 0.1) -> torch.Tensor:
    """open_clip's local loss: this rank's rows against every rank's columns."""
    a_local, b_local = F.normalize(a_local, dim=1), F.normalize(b_local, dim=1)
    a_all, b_all = F.normalize(a_all, dim=1), F.normalize(b_all, dim=1)
    target = offset + torch.arange(len(a_local))
    return (
        F.cross_entropy(a_local @ b_all.T / temperature, target)
        + F.cross_entropy(b_local @ a_all.T / temperature, target)
    ) / 2


def global_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * LOCAL_BATCH, DIM, generator=g, dtype=torch.float64), torch.randn(
        WORLD * LOCAL_BATCH, DIM, generator=g, dtype=torch.float64
    )


class Pairs(Dataset):
    def __init__(self, n: int = 32):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.randn(3), self.y[i]  # per-sample seeded augmentation


def make_model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 1))


def mse(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    x, y = batch
    return {"loss": F.mse_loss(model(x), y)}


def ddp_config(out: Path, batch_size: int, **overrides) -> TrainingConfig:
    values = dict(out=str(out), epochs=None, max_steps=3, batch_size=batch_size, lr=0.05, warmup_steps=1)
    values.update(device="cpu", log_every=1, eval_every=0, checkpoint_every=0, progress=False)
    return TrainingConfig(**{**values, **overrides})


class _Crash(RuntimeError):
    pass


def _crash_at(call: int):
    calls = 0

    def loss_fn(model, batch):
        nonlocal calls
        calls += 1
        if calls == call:  # on every rank at once, before the forward pass
            raise _Crash
        return mse(model, batch)

    return loss_fn


def _worker(local: int, folder: str) -> None:
    assert (rank(), world_size()) == (local, WORLD)
    images, genomes = global_pairs()
    rows = slice(local * LOCAL_BATCH, (local + 1) * LOCAL_BATCH)
    results = {}
    for name in ("global", "local"):
        a = images[rows].clone().requires_grad_()
        b = genomes[rows].clone().requires_grad_()
        a_all, b_all = all_gather_with_grad(a), all_gather_with_grad(b)
        assert torch.equal(a_all.detach(), images)
        if name == "global":
            loss = info_nce(a_all, b_all)
        else:
            loss = local_info_nce(a, b, a_all, b_all, offset=rows.start)
        (loss / world_size()).backward()  # what DDP's gradient averaging optimises
        reduced = loss.detach().clone()
        dist.all_reduce(reduced)
        results |= {f"{name}_loss": reduced / WORLD, f"{name}_grad_a": a.grad, f"{name}_grad_b": b.grad}
    save_file(results, os.path.join(folder, f"rank{local}.safetensors"))
    model = make_model()
    Trainer(model, mse, Pairs(), ddp_config(Path(folder) / "ddp", LOCAL_BATCH)).fit()
    if local == 1:
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            os.path.join(folder, "ddp_rank1.safetensors"),
        )
    # Resume under DDP: dropout (per-rank RNG) and part-filled loss windows at the checkpoint.
    resume = dict(max_steps=8, log_every=3, checkpoint_every=4)
    Trainer(make_model(0.3), mse, Pairs(), ddp_config(Path(folder) / "full", LOCAL_BATCH, **resume)).fit()
    config = ddp_config(Path(folder) / "resumed", LOCAL_BATCH, **resume)
    try:
        Trainer(make_model(0.3), _crash_at(7), Pairs(), config).fit()
    except _Crash:
        pass
    Trainer(make_model(0.3), mse, Pairs(), config).fit(resume=True)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    run_ranks(_worker, WORLD, folder)
    return folder


def test_all_gather_with_grad_infonce_matches_single_process(spawned):
    images, genomes = global_pairs()
    a, b = images.clone().requires_grad_(), genomes.clone().requires_grad_()
    loss = info_nce(a, b)
    loss.backward()
    ranks = [load_file(spawned / f"rank{r}.safetensors") for r in range(WORLD)]
    for name in ("global", "local"):
        for result in ranks:
            torch.testing.assert_close(result[f"{name}_loss"], loss.detach(), rtol=0, atol=1e-6)
        grad_a = torch.cat([result[f"{name}_grad_a"] for result in ranks])
        grad_b = torch.cat([result[f"{name}_grad_b"] for result in ranks])
        torch.testing.assert_close(grad_a, a.grad, rtol=0, atol=1e-6)
        torch.testing.assert_close(grad_b, b.grad, rtol=0, atol=1e-6)


def test_ddp_trainer_matches_one_process_with_the_global_batch(spawned, tmp_path):
    single = make_model()
    Trainer(single, mse, Pairs(), ddp_config(tmp_path / "single", WORLD * LOCAL_BATCH)).fit()
    rank0 = load_file(spawned / "ddp" / "last.safetensors")  # written by rank 0 only
    rank1 = load_file(spawned / "ddp_rank1.safetensors")
    for key, value in single.state_dict().items():
        assert torch.equal(rank0[key], rank1[key])  # replicas stay in sync
        torch.testing.assert_close(rank0[key], value, rtol=0, atol=1e-6)
    names = {"best.safetensors", "config.yaml", "last.safetensors", "last.state.safetensors", "metrics.csv"}
    assert {p.name for p in (spawned / "ddp").iterdir()} == names | {"train.log"}


def test_ddp_resume_after_a_crash_is_bit_identical(spawned):
    full = load_file(spawned / "full" / "last.safetensors")
    resumed = load_file(spawned / "resumed" / "last.safetensors")
    assert all(torch.equal(full[key], resumed[key]) for key in full)
    assert (spawned / "full" / "metrics.csv").read_text() == (spawned / "resumed" / "metrics.csv").read_text()
    assert "resuming at step 4/8 on cpu × 2" in (spawned / "resumed" / "train.log").read_text()


def test_resumable_sampler_shards_like_distributed_sampler():
    data = list(range(11))
    shards = [list(ResumableSampler(data, num_replicas=2, rank=r, seed=5)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6  # padded to equal length
    assert set(shards[0]) | set(shards[1]) == set(data)
    sampler = ResumableSampler(data, num_replicas=2, rank=1, seed=5)
    sampler.set_position(epoch=0, start=2)
    assert list(sampler) == shards[1][2:] and len(sampler) == 4
    sampler.set_position(epoch=1)
    assert list(sampler) != shards[1]  # a new order each epoch
