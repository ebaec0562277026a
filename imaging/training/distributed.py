"""Processes, devices and data sharding: torchrun set-up, rank helpers, a differentiable all-gather, DDP
wrapping, device placement, and the resumable, per-sample-seeded data order.

Launch with ``torchrun --nproc_per_node N -m ...``; ``init_distributed()`` reads ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) and picks NCCL on CUDA, gloo on CPU. Without
those variables everything here degrades to the single-process case (rank 0 of 1), so library code can
call ``all_gather_with_grad`` unconditionally.

>>> world_size(), rank(), is_main_process()
(1, 0, True)
>>> import torch
>>> all_gather_with_grad(torch.ones(2, 3)).shape  # single process: the tensor itself
torch.Size([2, 3])
"""

from __future__ import annotations

import datetime
import gc
import itertools
import os
import random
from collections.abc import Iterator, Mapping, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, get_worker_info


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group described by torchrun's environment variables.

    Returns:
        True when running with ``WORLD_SIZE > 1`` (the group is initialised, or already was), else False.
    """
    if is_distributed():
        return True
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available():
        return False
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(
        backend=backend or ("nccl" if use_cuda else "gloo"),
        init_method="env://",
        rank=int(os.environ["RANK"]),
        world_size=size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return True


def cleanup() -> None:
    """Leave the process group (no-op when not distributed); call it on every rank before exiting.

    Unreachable DDP wrappers (which hold the group) are collected first, so the group's threads end
    while the interpreter is fully alive rather than during its shutdown.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


_global_rank = rank  # for signatures whose parameter is called ``rank``


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its machine (torchrun's ``LOCAL_RANK``; 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0: the one process that logs and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` → this process's GPU (``LOCAL_RANK``)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device("cuda", local_rank() % torch.cuda.device_count())


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed (parameters are broadcast from
    rank 0, gradients averaged over ranks); the model itself otherwise."""
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / ``torch.compile`` wrappers (what checkpoints store)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the incoming gradients over ranks and keeps this
    rank's slice (the gradient of the sum of every rank's loss; DDP's averaging then divides by W)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every rank into (W·B, ...), rank-major, differentiably.

    Every rank must pass the same shape (the trainer's sampler pads ranks to equal batch counts). Rows
    ``rank·B : (rank+1)·B`` of the result are this rank's own rows. Gradients: the backward pass
    all-reduces (sums) the gradient of the whole gathered tensor, so with DDP's gradient averaging the
    parameters receive exactly the gradient of the single-process loss on the global batch when each
    rank computes that loss (or its own rows' share of it, open_clip's ``local_loss``).
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; no gradient). Identity when not distributed."""
    tensor = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world_size()
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable; in transit only, never written to disk), in rank order."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (seeded shuffle per epoch, ranks padded to equal length, rank ``r`` takes
    every W-th index from ``r``) that can start part-way through an epoch.

    ``set_position(epoch, start)`` skips the first ``start`` indices of this rank's epoch order, so a
    resumed run sees exactly the indices an uninterrupted run would have seen next. Works without a
    process group (``num_replicas``/``rank`` default to the current world).

    >>> sampler = ResumableSampler(range(10), seed=0)
    >>> order = list(sampler)
    >>> sampler.set_position(epoch=0, start=4)
    >>> list(sampler) == order[4:], len(sampler)
    (True, 6)
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ):
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=world_size() if num_replicas is None else num_replicas,
            rank=_global_rank() if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip its first ``start`` indices (of this rank)."""
        self.set_epoch(epoch)
        self.start = max(0, int(start))

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class SeededDataset(Dataset):
    """Seeds ``random``, numpy and torch (CPU) from (seed, epoch, index) around each ``dataset[index]``,
    so a sample's random augmentation depends on neither the loading worker, the batch size, the number
    of ranks nor a resume. In the main process (``num_workers=0``) the global RNG states are restored
    afterwards, so the model's own randomness (dropout) is untouched.

    >>> import torch
    >>> noisy = SeededDataset([0.0, 0.0], seed=1)
    >>> noisy.dataset = type("Noise", (), {"__getitem__": lambda self, i: torch.rand(()), "__len__": lambda self: 2})()
    >>> bool(noisy[1] == noisy[1]), bool(noisy[0] == noisy[1])
    (True, False)
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        seeds = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(2, np.uint64)
        if get_worker_info() is not None:  # a worker process: its RNGs serve only the data
            _seed_all(seeds)
            return self.dataset[index]
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        _seed_all(seeds)
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


def _seed_all(seeds: np.ndarray) -> None:
    random.seed(int(seeds[0]))
    np.random.seed(int(seeds[0] % 2**32))
    torch.default_generator.manual_seed(int(seeds[1]))  # CPU only: never touches CUDA generators


# ------------------------------------------------------------------------- device placement


def to_channels_last(model: nn.Module) -> None:
    """4-D parameters/buffers → channels_last, 5-D → channels_last_3d, in place (same Parameter objects)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(tensor.dim())
        if fmt is not None:
            tensor.data = tensor.data.contiguous(memory_format=fmt)


def move_to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    """Move every tensor in a nested batch (dicts, lists, tuples, named tuples) to ``device``."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=device.type == "cuda")
        if channels_last and batch.is_floating_point() and batch.dim() in (4, 5):
            batch = batch.contiguous(
                memory_format=torch.channels_last if batch.dim() == 4 else torch.channels_last_3d
            )
        return batch
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device, channels_last) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(value, device, channels_last) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(value, device, channels_last) for value in batch)
    return batch


def count_items(batch: Any, default: int) -> int:
    """Leading size of the first tensor in the batch (samples per micro-batch)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else default
    values = (
        batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, list | tuple) else ()
    )
    for value in values:
        count = count_items(value, -1)
        if count >= 0:
            return count
    return default


__all__ = [
    "ResumableSampler",
    "SeededDataset",
    "count_items",
    "move_to_device",
    "to_channels_last",
    "all_gather_object",
    "all_gather_with_grad",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "local_rank",
    "rank",
    "resolve_device",
    "unwrap_model",
    "world_size",
]
