"""Transfer of every 3D proxy task to segmentation at 5/10/25/100% labels, against training from scratch.

Simulates a small MRI biobank (t1, t2 and flair co-registered, stacked as 3 channels), pretrains one
U-Net encoder per proxy task (``imaging.registry.list_tasks()``: cpc, rotation, rpl, jigsaw, exemplar,
simclr, puzzle) for the same step budget on the unlabelled volumes of the training persons, then fine-tunes
a segmentation U-Net (CSF, grey matter, white matter, lesion) at each label fraction from scratch and from
every pretrained encoder (``imaging.finetune.run_data_efficiency``), all with one protocol: early stopping
on validation Dice (``--patience`` evaluations, ``--finetune-steps`` only a cap), the best checkpoint
restored, the encoder frozen for ``--freeze-steps`` only when it is pretrained. Scores are test-split Dice
per volume, averaged over volumes, per foreground class (the lesion on its own) and their mean, with 95 %
bootstrap intervals over test volumes. Every pretraining row carries its held-out proxy accuracy next to
chance, and a pretrained encoder whose weights did not move by a gradient (only weight decay, or nothing)
is an assertion error: it gets no fine-tuning row. Prints the table init × fraction and writes
``<out>/finetune/results.parquet``, ``<out>/finetune/data_efficiency.png`` and ``<out>/pretraining.csv``.

The puzzle task trains a one-channel encoder (it sees single-modality tiles). For the 3-channel
segmenter its first convolution is inflated: the one-channel kernel divided by 3 on every channel, so a
volume whose three channels are equal gives the pretrained response (``inflate_run``).

Measured at 32³ (150 people, 600 pretraining steps per task, 3 seeds; the full tables, the pairwise
differences and the diagnosis are in docs/ssl.md, "Measured transfer"): every task's held-out proxy
accuracy is above chance (cpc 0.62 vs 0.001, rotation 0.59 vs 0.10, rpl 0.91 vs 0.04, jigsaw 1.00 vs
0.01, exemplar 0.95 vs 0.50, simclr 1.00 vs 0.07, puzzle 0.27 vs 0.04). At 5% labels (5 people) no task
beats scratch (0.672 [0.650, 0.697]; best pretrained exemplar 0.670, simclr 0.669, cpc 0.664); at 25%
and 100% a run either learns the lesion class or not, which decides its mean: simclr led on three seeds
(0.820 vs 0.765 at 25%), and over five seeds at 25% scratch leads (0.815 vs 0.782; simclr − scratch
−0.033, SE 0.061). Run time: a fine-tuning run 3–10 min on one thread (longer at larger fractions); the
5% grid of 8 inits × 3 seeds took ~100 min per process in two processes, the 25%/100% rows for 3 inits
70 min.

Several processes can share one grid: ``--no-scratch`` leaves the scratch rows to one of them,
``--finetune-dir`` keeps each process's runs apart, ``--reuse-pretraining`` reuses finished encoders,
and ``--report A.parquet B.parquet ...`` prints the merged table.

Usage: python benchmarks/ssl_transfer.py [--out runs/ssl_transfer] [--n-individuals 150] [--size 32]
       [--pretrain-steps 50] [--finetune-steps 2000] [--patience 8] [--seeds 0] [--tasks cpc,rotation,...]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from contig.biobank import BiobankConfig, simulate_biobank
from genetics.coalescent import CoalescentConfig
from imaging.datasets import open_image_folder
from imaging.finetune import FinetuneConfig, load_pretrained_encoder
from imaging.finetune.efficiency import run_data_efficiency
from imaging.registry import create_encoder, list_tasks
from imaging.ssl.pretrained import read_ssl_config, untrained_tensors
from imaging.ssl.train import SslConfig, train_ssl
from imaging.training.run_folder import write_run_config

TASKS = ("cpc", "rotation", "rpl", "jigsaw", "exemplar", "simclr", "puzzle")
FRACTIONS = (0.05, 0.1, 0.25, 1.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ssl_transfer")
    parser.add_argument("--n-individuals", type=int, default=150)
    parser.add_argument("--size", type=int, default=32, help="voxels per side (divisible by 4)")
    parser.add_argument("--pretrain-steps", type=int, default=50)
    parser.add_argument("--pretrain-batch", type=int, default=4)
    parser.add_argument("--finetune-steps", type=int, default=2000, help="cap; early stopping ends runs")
    parser.add_argument("--finetune-batch", type=int, default=2)
    parser.add_argument("--freeze-steps", type=int, default=10, help="pretrained encoders only")
    parser.add_argument("--eval-every", type=int, default=20, help="fine-tuning validation interval")
    parser.add_argument("--patience", type=int, default=8, help="evaluations without a better val Dice")
    parser.add_argument("--base-width", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reuse-pretraining", action="store_true", help="keep finished pretraining runs")
    parser.add_argument(
        "--no-scratch", action="store_true", help="pretrained rows only (a grid split over processes)"
    )
    parser.add_argument(
        "--finetune-dir", default="finetune", help="subfolder of --out for this grid's fine-tuning runs"
    )
    parser.add_argument(
        "--report", nargs="+", metavar="PARQUET", help="only print the merged table of these results files"
    )
    return parser.parse_args()


def make_biobank(out: Path, n_individuals: int, size: int) -> Path:
    """A small MRI biobank (a 2 × 1 Mb genome keeps the build to seconds; only the images matter here)."""
    folder = out / "biobank"
    if (folder / "manifest.parquet").is_file():
        return folder
    config = BiobankConfig(
        n_individuals=n_individuals,
        image_kind="mri3d",
        image_size=size,
        n_discovery=500,
        genome=CoalescentConfig(n_chromosomes=2, chromosome_length=1_000_000),
        major_spacing=60_000,
        n_genes=8,
        progress=False,
    )
    simulate_biobank(folder, config)
    return folder


def task_options(task: str, size: int, multiple: int) -> dict:
    """CPC with patches of a third of the side (stride half a patch) instead of the default quarter.

    At 24³ the default (4³ patches, stride 2) cuts 1,331 patches per volume and made a CPC step about
    ten times slower than any other task's; 8³ patches with stride 4 cut 125.
    """
    if task != "cpc":
        return {}
    patch = max(multiple, size // 3 // multiple * multiple)
    return {"patch_size": patch, "stride": max(1, patch // 2)}


def pretrain(task: str, data: Path, images, args: argparse.Namespace, out: Path) -> dict:
    """One proxy task for ``--pretrain-steps`` steps on ``images`` (the training persons' volumes)."""
    config = SslConfig(
        out=str(out / "pretrain" / task),
        task=task,
        data=str(data),
        size=(args.size,) * 3,
        max_steps=args.pretrain_steps,
        epochs=None,
        batch_size=args.pretrain_batch,
        encoder_kwargs={"base_width": args.base_width, "depth": args.depth},
        task_options=task_options(task, args.size, 2 ** (args.depth - 1)),
        device=args.device,
        seed=0,
        log_every=max(1, args.pretrain_steps // 4),
        eval_every=max(1, args.pretrain_steps // 4),
        checkpoint_every=0,
        progress=False,
    )
    start = time.perf_counter()
    result = train_ssl(config, dataset=images)
    seconds = time.perf_counter() - start
    assert_received_gradient(out / "pretrain" / task)
    proxy = result["proxy"]
    final = proxy.get("final") or {}
    return {
        "task": task,
        "seconds": seconds,
        "steps": int(result["step"]),
        "n_held_out": proxy["n_held_out_images"],
        "val_proxy_loss": final.get("val_proxy_loss"),
        "val_proxy_acc": final.get("val_proxy_acc"),
        "proxy_chance": proxy["proxy_chance"],
        "proxy_init_loss": proxy["proxy_init_loss"],
        "above_chance": proxy.get("above_chance"),
    }


def assert_received_gradient(run: Path) -> None:
    """Every tensor of the encoder fine-tuning will load moved by a gradient, not only by weight decay.

    The initial weights are rebuilt as ``train_ssl`` drew them (the run's seed, then the encoder first).
    """
    saved = read_ssl_config(run)
    torch.manual_seed(saved.seed)
    initial = create_encoder(str(saved.encoder), **saved.encoder_kwargs).state_dict()
    trained = load_pretrained_encoder(run).state_dict()  # best, else last: what fine-tuning loads
    frozen = untrained_tensors(initial, trained)
    assert not frozen, (
        f"{saved.task}: {len(frozen)} of {len(initial)} encoder tensors received no gradient "
        f"(e.g. {', '.join(frozen[:3])}); no transfer row is written for an untrained encoder"
    )


def inflate_run(run: Path, in_chans: int) -> Path:
    """Copy a one-channel run to ``<run>_inflated`` with the first convolution spread over ``in_chans``.

    The kernel (F, 1, *k) becomes (F, in_chans, *k) / in_chans; ``config.yaml`` records the new
    ``in_chans``. Runs that already take ``in_chans`` channels are returned unchanged.
    """
    saved = read_ssl_config(run)
    kwargs = dict(saved.encoder_kwargs)
    if int(kwargs.get("in_chans", in_chans)) == in_chans:
        return run
    target = run.with_name(run.name + "_inflated")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("best.safetensors", "last.safetensors"):
        if not (run / name).is_file():
            continue
        weights = load_file(str(run / name))
        first = min(
            (k for k, v in weights.items() if k.startswith("encoder.") and v.dim() >= 3 and v.shape[1] == 1),
            key=list(weights).index,
        )
        weights[first] = weights[first].repeat_interleave(in_chans, dim=1) / in_chans
        tmp = target / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        save_file(weights, str(tmp))
        os.replace(tmp, target / name)
    write_run_config(target, dataclasses.replace(saved, encoder_kwargs={**kwargs, "in_chans": in_chans}))
    return target


def main() -> None:
    args = parse_args()
    if args.report:
        report(pd.concat([pd.read_parquet(path) for path in args.report], ignore_index=True))
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    available = set(list_tasks())
    tasks = [t for t in args.tasks.split(",") if t]
    missing = [t for t in tasks if t not in available]
    if missing:
        print(f"skipped (not registered): {', '.join(missing)}")
    tasks = [t for t in tasks if t in available]

    start = time.perf_counter()
    data = make_biobank(out, args.n_individuals, args.size)
    print(f"biobank: {data} ({time.perf_counter() - start:.0f} s)")
    volumes = open_image_folder(data, dim=3, size=(args.size,) * 3, cache=True)
    train_rows = [i for i, split in enumerate(volumes.table["split"]) if split == "train"]
    unlabelled = volumes.subset(train_rows)  # the pool the label fractions are drawn from
    print(f"pretraining on {len(unlabelled)} unlabelled training volumes of {len(volumes)}, 3 channels")

    rows, inits = [], ({} if args.no_scratch else {"scratch": None})
    log = out / "pretraining.csv"
    previous = {r["task"]: r for r in pd.read_csv(log).to_dict("records")} if log.is_file() else {}
    for task in tasks:
        done = out / "pretrain" / task / "last.safetensors"
        try:
            if args.reuse_pretraining and done.is_file():
                assert_received_gradient(out / "pretrain" / task)
                row = previous.get(task, {"task": task, "steps": args.pretrain_steps})
            else:
                row = pretrain(task, data, unlabelled, args, out)
        except (Exception, AssertionError) as error:  # report and go on: one task must not sink the table
            print(f"{task}: pretraining failed: {type(error).__name__}: {error}")
            rows.append({"task": task, "error": f"{type(error).__name__}: {error}"})
            continue
        rows.append(row)
        inits[task] = str(inflate_run(out / "pretrain" / task, volumes.in_chans))
        shown = ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float) and k != "steps" and v == v
        )
        print(f"{task}: {row['steps']} steps, {shown}", flush=True)
    pd.DataFrame(rows).to_csv(log, index=False)
    pretrain_seconds = time.perf_counter() - start

    finetune_dir = out / args.finetune_dir
    if finetune_dir.exists():
        shutil.rmtree(finetune_dir)
    config = FinetuneConfig(
        out=str(finetune_dir),
        data=str(data),
        size=(args.size,) * 3,
        max_steps=args.finetune_steps,
        batch_size=args.finetune_batch,
        freeze_steps=args.freeze_steps,
        eval_every=args.eval_every,
        patience=args.patience,
        log_every=args.eval_every,
        checkpoint_every=0,
        device=args.device,
        progress=False,
    )
    table = run_data_efficiency(config, inits, fractions, seeds)
    total = time.perf_counter() - start
    report(table)
    print(f"\nwall time: pretraining {pretrain_seconds:.0f} s, total {total:.0f} s")
    print(f"wrote {finetune_dir / 'results.parquet'}, {finetune_dir / 'data_efficiency.png'}")


def report(table: pd.DataFrame) -> None:
    """Print test Dice per init × fraction with intervals and counts, then per-class Dice per fraction.

    ``dice`` is the mean over seeds; ``ci`` the 95 % bootstrap interval over test volumes (bounds averaged
    over seeds); ``seed_sd`` the spread over seeds; ``steps`` the median fine-tuning length (early stopping).
    """
    order = sorted(dict.fromkeys(table["init"]), key=lambda init: init != "scratch")  # scratch first
    persons = table.groupby("label_fraction")["n_train_persons"].first()
    print("\ntraining persons per fraction: " + ", ".join(f"{f:g}: {n}" for f, n in persons.items()))
    grouped = table.groupby(["label_fraction", "init"], sort=False)
    summary = grouped.agg(
        dice=("test_dice", "mean"),
        ci_low=("test_dice_ci_low", "mean"),
        ci_high=("test_dice_ci_high", "mean"),
        seed_sd=("test_dice", "std"),
        n_seeds=("seed", "nunique"),
        n_test=("n_test_items", "first"),
        steps=("steps", "median"),
        best_step=("best_step", "median"),
    ).reset_index()
    summary["init"] = pd.Categorical(summary["init"], order)
    summary = summary.sort_values(["label_fraction", "init"])
    print("\ntest Dice per volume, mean over foreground classes, with 95% intervals over test volumes")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    classes = [
        c
        for c in table.columns
        if c.startswith("test_dice_")
        and c != "test_dice_with_background"
        and not c.endswith(("_low", "_high"))
        and not c.startswith("test_dice_with_background")
    ]
    for fraction, group in table.groupby("label_fraction"):
        per_class = group.groupby("init", sort=False)[classes].mean().reindex(order)
        per_class.columns = [c.removeprefix("test_dice_") for c in classes]
        print(
            f"\nper-class test Dice (per volume, mean over volumes and seeds) at label fraction {fraction:g}"
        )
        print(per_class.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
