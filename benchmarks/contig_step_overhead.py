"""ContIG step time vs the bare image backbone: is data loading (and the genetic side) keeping up?

Runs, in one process on the same machine and threads:

1. bare: the image encoder alone, forward + backward + AdamW on an in-memory random batch;
2. contig: the full pretraining step from the real data path (PNG decoding + augmentation in DataLoader
   workers, memory-mapped SNP rows, PGS/burden lookups, three genetic towers, contrastive loss).

and prints both per-step times and the overhead ratio (goal: ≤ 15%). The synthetic biobank is
simulated into a temporary folder (or give ``--biobank DIR``).

    python benchmarks/contig_step_overhead.py --n 1000 --batch-size 64 --steps 30 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from contig.biobank import BiobankConfig, simulate_biobank
from contig.genetic_inputs import GeneticInputsConfig
from contig.pretrain import PretrainConfig, param_groups, prepare_pretraining, pretrain_loss


def _time_steps(step, batches, warmup: int) -> float:
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        step(batch)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--biobank", type=Path, default=None)
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="contig-bench-"))
    biobank = args.biobank
    if biobank is None:
        biobank = work / "biobank"
        simulate_biobank(
            biobank, BiobankConfig(n_individuals=args.n, image_size=args.image_size, progress=False)
        )
    config = PretrainConfig(
        data=str(biobank), out=str(work / "run"), batch_size=args.batch_size, image_encoder=args.encoder,
        genetic=GeneticInputsConfig(), num_workers=args.workers,
    )  # fmt: skip
    parts = prepare_pretraining(config)
    model, loss_fn = parts.model.train(), pretrain_loss(config)
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=1e-4)

    def contig_step(batch):
        loss = loss_fn(model, batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    loader = DataLoader(
        parts.train, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        collate_fn=parts.collate, drop_last=True, persistent_workers=args.workers > 0,
    )  # fmt: skip

    def batches(n):
        produced = 0
        while produced < n:
            for batch in loader:
                yield batch
                produced += 1
                if produced == n:
                    return

    warmup = 3
    contig_time = _time_steps(contig_step, batches(args.steps + warmup), warmup)

    encoder = parts.model.image_tower
    bare_optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
    shape = (args.batch_size, *parts.train[0]["image"].shape)

    def bare_step(images):
        loss = encoder.forward_features(images).square().mean()
        bare_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bare_optimizer.step()

    fixed = torch.randn(shape)
    bare_time = _time_steps(bare_step, (fixed for _ in range(args.steps + warmup)), warmup)
    print(
        f"encoder {args.encoder}, batch {args.batch_size}, images {tuple(shape[1:])}, workers {args.workers}, threads {args.threads}"
    )
    print(f"{'path':<44}{'s/step':>10}{'images/s':>10}")
    print(
        f"{'bare image backbone (in-memory batch)':<44}{bare_time:>10.4f}{args.batch_size / bare_time:>10.1f}"
    )
    print(
        f"{'ContIG step (real data, 3 genetic towers)':<44}{contig_time:>10.4f}{args.batch_size / contig_time:>10.1f}"
    )
    print(f"overhead: {100 * (contig_time / bare_time - 1):+.1f}% (goal <= 15%)")


if __name__ == "__main__":
    main()
