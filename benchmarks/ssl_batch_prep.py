"""Batch preparation (``make_batch``, label generation + augmentation) vs the training step, per task.

Issue #7 asks that preparing a batch cost less than 20% of the training step. ``make_batch`` runs on
the CPU in the data-loader workers, one batch per worker and one thread each (PyTorch sets
``torch.set_num_threads(1)`` in workers), and is timed so; the step (forward + backward + AdamW) runs
on ``--device``. Both are timed on the same fixed images after warm-up runs; the median of
``--repeats`` runs is reported. The ratio is per worker: with ``num_workers = W`` the loader can prepare
W batches in the time of one.

Usage: python benchmarks/ssl_batch_prep.py [--dim 3] [--size 64] [--batch-size 4] [--base-width 16]
       [--depth 4] [--device cpu|cuda] [--threads 2] [--repeats 5] [--tasks rotation,jigsaw]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from imaging.registry import create_encoder, create_task

TASKS = ["cpc", "rotation", "rpl", "jigsaw", "exemplar", "simclr"]


def _timed(function, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, args: argparse.Namespace) -> tuple[float, float]:
    """(median make_batch seconds, median training-step seconds) of one task."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    encoder_name = "unet3d" if args.dim == 3 else "unet2d"
    encoder = create_encoder(encoder_name, in_chans=1, base_width=args.base_width, depth=args.depth)
    task = create_task(name, encoder=encoder, dim=args.dim).to(device)
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    images = torch.randn(args.batch_size, 1, *(args.size,) * args.dim)
    generator = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = {k: v.to(device) for k, v in task.make_batch(images, generator).items()}

    def step() -> None:
        loss = task(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
        task.make_batch(images, generator)
        step()
    torch.set_num_threads(1)  # as in a DataLoader worker (PyTorch sets 1 thread there)
    prepare = _timed(lambda: task.make_batch(images, generator), args.repeats, lambda: None)
    torch.set_num_threads(args.threads)
    train = _timed(step, args.repeats, sync)
    return prepare, train


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=3, choices=(2, 3))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"dim {args.dim}, images {args.batch_size} × 1 × {args.size}^{args.dim}, unet base_width "
        f"{args.base_width} depth {args.depth}, step on {args.device} ({args.threads} CPU threads), "
        "make_batch on 1 CPU thread"
    )
    print(f"{'task':<10} {'make_batch ms':>14} {'train step ms':>14} {'ratio':>8}  < 20%?")
    for name in args.tasks.split(","):
        prepare, train = measure(name, args)
        ratio = prepare / train
        print(
            f"{name:<10} {prepare * 1e3:>14.1f} {train * 1e3:>14.1f} {ratio:>8.1%}  {'yes' if ratio < 0.2 else 'NO'}"
        )


if __name__ == "__main__":
    main()
