"""Multimodal puzzle accuracy after a short CPU run, and (--efficiency) a data-efficiency comparison.

Usage: python benchmarks/puzzle_accuracy.py [--size 32] [--steps 1500] [--grids 2,3] [--puzzles hard|easy]
       [--head attention|mean] [--loss ce|reconstruction|both] [--efficiency]

Run time with the defaults: 826 s (771 s of pretraining), measured under load (2 CPU cores shared with
three other jobs, one thread). Measured result (128 training / 32 held-out people at 32³, unet3d width 8
depth 3, 1500 steps of 8, attention head, cross-entropy; tiles = 32 × K):

    template matcher, easy puzzles, 3×3×3 mixed modalities: tiles 0.986 (864), puzzles 0.844 (32)
    template matcher, hard puzzles, 3×3×3 mixed modalities: tiles 0.141 (864), puzzles 0.000 (32)
    learned, hard puzzles, 3×3×3 mixed: tiles 0.378 vs template 0.141 (chance 0.037); puzzles 0.000
    learned, hard puzzles, 2×2×2 mixed: tiles 0.594 vs template 0.383 (chance 0.125); puzzles 0.312 vs 0.094
    (single-modality puzzles: 0.350 vs 0.110 at 3×3×3, 0.586 vs 0.367 at 2×2×2)

After 200 steps the learned task was only level with the template (3×3×3 tiles 0.130 vs 0.141). The
earlier head (``--head mean``, each tile from [tile, mean of tiles]) under the same settings (635 s):
3×3×3 tiles 0.260, 2×2×2 0.535 (puzzles 0.250) — above the template, below the attention head. One seed
each.

Part 0 is the control: a template matcher with no learning (``imaging.puzzle.template``: the mean
training tile per grid position and modality, matched by correlation or squared error and decoded with
the Hungarian algorithm) on the easy puzzles (centred, no pose changes) and on the hard ones
(``HARD_PUZZLES``: per-puzzle flips/turns, rotation, zoom, shift, wide random gaps, per-tile intensity),
with tile and puzzle counts.

Part 1 pretrains a U-Net encoder with the Sinkhorn puzzle on synthetic co-registered T1/T2/FLAIR brains
(``imaging.synthetic.mri``) and prints the per-tile and exact-puzzle accuracy on *unseen* people, for
each grid size and for puzzles whose tiles mix modalities or come from one, next to chance (1/K, 1/K!).

Part 2 (``--efficiency``) also pretrains the same encoder with a single-modality (T1) Sinkhorn jigsaw,
writes a synthetic biobank of other people (``contig.biobank``) and fine-tunes a T1 tissue segmenter
(``imaging.finetune``) from scratch, from the jigsaw and from the multimodal puzzle at several label
fractions; it prints the held-out foreground Dice per initialisation and fraction. Fine-tuning follows
the transfer protocol (early stopping on the val people, ``--patience`` evaluations every 20 steps,
``--finetune-steps`` only a cap) and each row says how many runs stopped early.

Part 3 (``--synthetic``) asks whether cross-modal synthesis can stand in for missing contrasts: a T1 → T2
and a T1 → FLAIR pix2pix (``imaging.translation``, as ``contig translate``) are trained on a small paired
subset (``--n-paired`` other people), the T1 volumes of the pretraining people are translated, and the
puzzle is pretrained on T1 + synthetic T2/FLAIR: (b), between (a) the T1-only jigsaw and (c) the puzzle on
real T1/T2/FLAIR, all three with the same people and steps. It prints translation quality on the held-out
people next to copying T1 and a linear T1 fit, held-out tile accuracy of each arm next to the template
matcher, and segmentation Dice at the smallest label fraction.

Measured, Part 3 (``--steps 600 --synthetic --n-persons 40 --fractions 0.1 --seeds 0,1``, defaults
otherwise; 128 pretraining / 32 held-out people, 15 + 5 paired people, 400 translation steps; 2372 s for
Part 3 on 2 shared cores, one thread). Translation on the 32 held-out people, Pearson r inside the brain:
T2 0.927 (T1 itself −0.872), FLAIR 0.915 (T1 0.581); mean absolute error 0.109 and 0.134 standardised
units (copying T1: 0.439, 0.234). The linear-T1 columns (one slope and intercept fitted over whole paired
volumes, background included) were added after this run. Held-out tile accuracy, 32
people × 4 draws, T1 tiles only: 2×2×2 (a) 0.626, (b) 0.519, (c) 0.619, template 0.518 (chance 0.125);
3×3×3 (a) 0.419, (b) 0.285, (c) 0.486, template 0.204 (chance 0.037); mixed-modality tiles 3×3×3: (b)
0.285, (c) 0.470, template 0.190. Synthetic contrasts are close to the real ones voxel-wise, yet the puzzle
pretrained on them learns much less than on real contrasts and less than the T1 jigsaw: here (b) does not
help. Fine-tuning in that run used a fixed 160 steps and had not converged (every best step was the last);
rerun under the protocol from the same pretrained encoders (3 labelled people at 10%, 6 test people,
seeds 0-2; 12 runs in 2369 s on one thread), test Dice mean of 4 classes [95% CI]: scratch 0.614 [0.557,
0.684], (a) 0.556 [0.504, 0.619], (b) 0.613 [0.560, 0.683], (c) 0.637 [0.582, 0.711]; (c) − scratch per
seed +0.004, +0.049, +0.017. Details in docs/puzzles.md ("Results").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from imaging.puzzle.data import SyntheticMultimodal, standardize_channels
from imaging.puzzle.task import HARD_PUZZLES, MultimodalPuzzle, chance_accuracy, held_out_accuracy
from imaging.puzzle.template import TemplateMatcher
from imaging.registry import create_encoder, create_task
from imaging.ssl.base import TaskCollate, TaskItems, task_loss
from imaging.training import Trainer, TrainingConfig


@dataclass
class PretrainConfig(TrainingConfig):
    """A pretraining run as ``contig ssl`` records it: ``encoder``/``encoder_kwargs`` for the transfer."""

    task: str = "puzzle"
    dim: int = 3
    encoder: str = "unet3d"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)


def pretrain(config: PretrainConfig, data: Dataset | torch.Tensor) -> tuple[MultimodalPuzzle, float]:
    """Pretrain the configured puzzle on ``data`` ((M, D, H, W) items); returns the task and the seconds."""
    torch.manual_seed(config.seed)
    encoder = create_encoder(config.encoder, **config.encoder_kwargs)
    task = create_task("puzzle", encoder=encoder, dim=config.dim, **config.task_options)
    start = time.perf_counter()
    Trainer(task, task_loss, TaskItems(data), config, collate_fn=TaskCollate(task)).fit()
    return task, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="volume side (voxels)")
    parser.add_argument("--n-pretrain", type=int, default=128, help="people for pretraining")
    parser.add_argument("--n-test", type=int, default=32, help="unseen people for the puzzle accuracy")
    parser.add_argument("--steps", type=int, default=1500, help="pretraining optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grids", default="2,3")
    parser.add_argument("--width", type=int, default=8, help="U-Net base width")
    parser.add_argument("--depth", type=int, default=3, help="U-Net levels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--puzzles", choices=("hard", "easy"), default="hard", help="puzzles to pretrain on")
    parser.add_argument("--head", choices=("attention", "mean"), default="attention")
    parser.add_argument("--loss", choices=("ce", "reconstruction", "both"), default="ce")
    parser.add_argument("--efficiency", action="store_true", help="also run the data-efficiency comparison")
    parser.add_argument("--n-persons", type=int, default=40, help="biobank people for fine-tuning")
    parser.add_argument("--fractions", default="0.1,0.3,1.0")
    parser.add_argument("--finetune-steps", type=int, default=1000, help="cap; early stopping ends runs")
    parser.add_argument(
        "--patience", type=int, default=8, help="fine-tuning evaluations without a better val Dice"
    )
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--synthetic", action="store_true", help="also compare pretraining with synthetic T2/FLAIR (Part 3)"
    )
    parser.add_argument("--n-paired", type=int, default=20, help="people with T1+T2+FLAIR for translation")
    parser.add_argument("--translate-steps", type=int, default=400, help="steps per translation model")
    parser.add_argument("--translate-width", type=int, default=16, help="translation U-Net base width")
    parser.add_argument("--draws", type=int, default=4, help="puzzle draws per held-out person (Part 3)")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out or tempfile.mkdtemp(prefix="puzzle-bench-"))
    grids = tuple(int(g) for g in args.grids.split(","))
    contrasts = ("t1", "t2", "flair")
    train = SyntheticMultimodal(args.n_pretrain, args.size, contrasts, seed=11)
    test = SyntheticMultimodal(args.n_test, args.size, contrasts, seed=12)
    encoder_kwargs = {"in_chans": 1, "base_width": args.width, "depth": args.depth}
    common = {
        "max_steps": args.steps,
        "epochs": None,
        "batch_size": args.batch_size,
        "lr": 2e-3,
        "warmup_steps": 10,
        "weight_decay": 1e-4,
        "device": args.device,
        "progress": False,
        "log_every": max(1, args.steps // 4),
        "checkpoint_every": 0,
        "drop_last": True,
        "encoder_kwargs": encoder_kwargs,
    }
    base = {"grids": list(grids), "patch_multiple": 2 ** (args.depth - 1), "modalities": list(contrasts)}
    start = time.perf_counter()
    templates = template_control(base, train, test, args.n_test)
    hard = {**base, **HARD_PUZZLES} if args.puzzles == "hard" else dict(base)
    options = {**hard, "head": args.head, "loss": args.loss}
    config = PretrainConfig(out=str(out / "puzzle"), task_options=options, **common)
    task, seconds = pretrain(config, train)
    print(
        f"\nmultimodal puzzle ({args.puzzles} puzzles, {args.head} head, {args.loss} loss): {args.steps} steps × "
        f"{args.batch_size} volumes of {args.size}³ in {seconds:.0f} s on {args.device} "
        f"({torch.get_num_threads()} threads); held-out people: {args.n_test} (one puzzle each)"
    )
    print(
        f"{'grid':>5} {'tiles':>5} {'tiles from':>14} {'tile acc':>9} {'template':>9} {'chance':>7} "
        f"{'puzzle acc':>11} {'template':>9} {'chance':>9}"
    )
    for confusion, label in ((True, "mixed modal."), (False, "one modality")):
        for grid, (tile_acc, puzzle_acc) in held_out_accuracy(task, test.images, confusion).items():
            k = grid**3
            tile_chance, puzzle_chance = chance_accuracy(k)
            t_tile, t_puzzle = templates[(args.puzzles, grid, confusion)]
            print(
                f"{grid:>5} {k:>5} {label:>14} {tile_acc:>9.3f} {t_tile:>9.3f} {tile_chance:>7.3f} "
                f"{puzzle_acc:>11.3f} {t_puzzle:>9.3f} {puzzle_chance:>9.1e}"
            )
    print("template: the better of the two template matchers on the same held-out puzzles")
    print(f"total run time {time.perf_counter() - start:.0f} s")
    if not (args.efficiency or args.synthetic):
        return
    jigsaw = PretrainConfig(
        out=str(out / "jigsaw_t1"), task_options={**options, "modalities": ["t1"]}, **common
    )
    jigsaw_task, seconds = pretrain(jigsaw, train.images[:, :1])
    print(f"\nsingle-modality (T1) Sinkhorn jigsaw pretrained in {seconds:.0f} s")
    if args.efficiency:
        inits = {"scratch": None, "jigsaw (t1)": jigsaw.out, "puzzle (t1,t2,flair)": config.out}
        fractions = [float(f) for f in args.fractions.split(",")]
        finetune_table(args, out, out / "finetune", inits, fractions, encoder_kwargs)
    if args.synthetic:
        arms = {"(a) t1": (jigsaw_task, jigsaw.out), "(c) t1+real": (task, config.out)}
        synthetic_contrasts(args, out, train, test, common, options, arms)


class _NoEncoder(torch.nn.Module):
    """Stands in for an encoder where only ``make_batch`` is used."""

    num_features = 1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1, keepdim=True)


def template_scores(
    task: MultimodalPuzzle, train: torch.Tensor, test: torch.Tensor, draws: int
) -> dict[str, dict[str, float]]:
    """metric → template matcher accuracies (fitted on train (N, M, *S)) on test's puzzles, mean over draws.

    Each value holds ``tile_accuracy`` and ``puzzle_accuracy`` (means over draws 0 … draws − 1) and the
    counts ``tiles`` and ``puzzles`` of one draw.
    """
    scores = {}
    for metric in ("correlation", "mse"):
        matcher = TemplateMatcher(metric).fit(task, train, seed=1)
        runs = [matcher.evaluate(task, test, seed=s) for s in range(draws)]
        scores[metric] = {k: sum(r[k] for r in runs) / draws for k in ("tile_accuracy", "puzzle_accuracy")}
        scores[metric] |= {"tiles": runs[0]["tiles"], "puzzles": runs[0]["puzzles"]}
    return scores


def template_control(
    options: dict, train: SyntheticMultimodal, test: SyntheticMultimodal, n_test: int
) -> dict[tuple[str, int, bool], tuple[float, float]]:
    """Print the template matchers on easy and hard held-out puzzles; (kind, grid, confusion) → best accuracies."""
    print(f"template matcher (no learning), fitted on {len(train)} training people, {n_test} held-out people")
    print(
        f"{'puzzles':>8} {'grid':>5} {'tiles from':>14} {'metric':>12} {'tile acc':>9} {'tiles':>6} {'puzzle acc':>11} {'puzzles':>8}"
    )
    best: dict[tuple[str, int, bool], tuple[float, float]] = {}
    for kind, extra in (("easy", {}), ("hard", HARD_PUZZLES)):
        for grid in options["grids"]:
            task = MultimodalPuzzle(
                _NoEncoder(), dim=3, **{**options, **extra, "grids": [grid], "head": "mean"}
            )
            for confusion, label in ((True, "mixed modal."), (False, "one modality")):
                task.modality_confusion = confusion
                # draw 0: the puzzles held_out_accuracy draws
                for metric, r in template_scores(task, train.images, test.images, draws=1).items():
                    print(
                        f"{kind:>8} {grid:>5} {label:>14} {metric:>12} {r['tile_accuracy']:>9.3f} {r['tiles']:>6d} "
                        f"{r['puzzle_accuracy']:>11.3f} {r['puzzles']:>8d}"
                    )
                    key = (kind, grid, confusion)
                    old = best.get(key, (-1.0, -1.0))
                    best[key] = (max(old[0], r["tile_accuracy"]), max(old[1], r["puzzle_accuracy"]))
    return best


def finetune_table(
    args: argparse.Namespace,
    out: Path,
    runs: Path,
    inits: dict[str, str | None],
    fractions: list[float],
    encoder_kwargs: dict[str, Any],
) -> None:
    """Fine-tune a T1 tissue segmenter on a synthetic biobank from every init; print held-out Dice.

    The biobank (``args.n_persons`` other people, written once into ``out/biobank``) is split by person;
    every run follows the transfer protocol of ``imaging.finetune`` (early stopping on the val people).
    """
    from contig.biobank import BiobankConfig, simulate_biobank
    from imaging.finetune.efficiency import run_data_efficiency
    from imaging.finetune.run import FinetuneConfig

    biobank = out / "biobank"
    if not (biobank / "manifest.parquet").is_file():
        simulate_biobank(
            biobank,
            BiobankConfig(
                n_individuals=args.n_persons, image_kind="mri3d", image_size=args.size, progress=False
            ),
        )
    config = FinetuneConfig(
        out=str(runs),
        data=str(biobank),
        dim=3,
        size=(args.size,) * 3,
        modalities=["t1"],
        max_steps=args.finetune_steps,
        batch_size=4,
        eval_every=20,
        patience=args.patience,
        freeze_steps=10,
        device=args.device,
        progress=False,
        encoder="unet3d",
        encoder_kwargs=dict(encoder_kwargs),
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    table = run_data_efficiency(config, inits, fractions, seeds)
    print(
        f"fine-tuning: {len(table)} runs in {time.perf_counter() - start:.0f} s; held-out foreground Dice "
        f"(mean over {len(seeds)} seed(s); {int(table['n_test_items'].iloc[0])} test people)"
    )
    pivot = table.groupby(["init", "label_fraction"])["headline"].mean().unstack("label_fraction")
    persons = table.groupby("label_fraction")["n_train_persons"].first()
    print(f"{'label fraction':>24} " + " ".join(f"{f:>8g}" for f in pivot.columns))
    print(f"{'labelled people':>24} " + " ".join(f"{int(persons[f]):>8d}" for f in pivot.columns))
    runs = table.groupby("init").agg(best=("best_step", "median"), early=("stopped_early", "sum"))
    for init in inits:
        converged = f"median best step {runs.loc[init, 'best']:.0f}, stopped early {runs.loc[init, 'early']}"
        print(
            f"{init:>24} "
            + " ".join(f"{v:>8.3f}" for v in pivot.loc[init])
            + f"   ({converged}/{len(table) // len(inits)})"
        )
    print(f"runs and results.parquet in {config.out}")


def write_paired_folder(data: SyntheticMultimodal, folder: Path) -> Path:
    """Write (N, M, D, H, W) ``data.images`` as one NIfTI per person and contrast plus ``manifest.parquet``."""
    import pandas as pd

    from imaging.io import write_nifti

    rows = []
    for i, image in enumerate(data.images):
        row = {"IID": f"paired{i:03d}"}
        for contrast, volume in zip(data.contrasts, image, strict=True):
            path = Path("images") / f"{row['IID']}_{contrast}.nii.gz"
            write_nifti(folder / path, volume.numpy())
            row[f"image_{contrast}"] = str(path)
        rows.append(row)
    pd.DataFrame(rows).to_parquet(folder / "manifest.parquet", index=False)
    return folder


def synthesise(run_dir: str, t1: torch.Tensor, device: str) -> torch.Tensor:
    """(N, D, H, W) T1 volumes → (N, D, H, W) synthetic target of the translation run (best checkpoint)."""
    from imaging.translation.runner import load_translation_model, translate_volume

    model, spec = load_translation_model(run_dir, "best", device)
    return torch.stack([translate_volume(model, volume, spec.get("size")) for volume in t1])


def translation_quality(fake: torch.Tensor, real: torch.Tensor, brain: torch.Tensor) -> tuple[float, float]:
    """(N, D, H, W) synthetic and real (standardised) → (mean absolute error over the volume, Pearson r
    inside the ``brain`` mask), each averaged over people."""
    mae = (fake - real).abs().flatten(1).mean(1)
    rs = []
    for f, r, m in zip(fake, real, brain, strict=True):
        rs.append(torch.corrcoef(torch.stack([f[m], r[m]]).double())[0, 1])
    return float(mae.mean()), float(torch.stack(rs).mean())


def linear_fit(source: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Least-squares (slope, intercept) of target ≈ slope · source over all voxels of (N, D, H, W) volumes."""
    slope, intercept = np.polyfit(source.flatten().double().numpy(), target.flatten().double().numpy(), 1)
    return float(slope), float(intercept)


def tile_accuracy(
    task: MultimodalPuzzle, images: torch.Tensor, grids: list[int], draws: int
) -> dict[int, float]:
    """grid → held-out tile accuracy of ``task`` on images (N, M, D, H, W), mean over ``draws`` puzzle draws."""
    totals = dict.fromkeys(grids, 0.0)
    for seed in range(draws):
        for grid, (tile, _) in held_out_accuracy(task, images, True, seed=seed).items():
            totals[grid] += tile / draws
    return totals


def template_tile_accuracy(
    options: dict, train: torch.Tensor, test: torch.Tensor, grids: list[int], draws: int
) -> dict[int, float]:
    """grid → tile accuracy of the better template matcher, fitted on train (N, M, *S), on test's puzzles."""
    modalities = [f"m{i}" for i in range(train.shape[1])]
    best = {}
    for grid in grids:
        options_g = {**options, "grids": [grid], "head": "mean", "modalities": modalities}
        task = MultimodalPuzzle(_NoEncoder(), dim=3, **options_g)
        best[grid] = max(r["tile_accuracy"] for r in template_scores(task, train, test, draws).values())
    return best


def synthetic_contrasts(
    args: argparse.Namespace,
    out: Path,
    train: SyntheticMultimodal,
    test: SyntheticMultimodal,
    common: dict,
    options: dict,
    arms: dict[str, tuple[MultimodalPuzzle, str]],
) -> None:
    """Part 3: translate T1 → T2/FLAIR from a small paired subset, pretrain on T1 + synthetic, compare.

    ``arms`` holds (a) the T1 jigsaw and (c) the real-multimodal puzzle (task, run directory), both
    pretrained on the same ``train`` people with the same steps; this adds (b), prints translation quality,
    held-out tile accuracy and held-out segmentation Dice at the smallest label fraction.
    """
    from imaging.translation import TranslateConfig, train_translation

    start = time.perf_counter()
    paired = SyntheticMultimodal(args.n_paired, args.size, train.contrasts, seed=13)
    folder = write_paired_folder(paired, out / "paired")
    n_val = int(round(args.n_paired * 0.25))
    t1_train, t1_test = train.images[:, 0], test.images[:, 0]
    paired_train = paired.images[: args.n_paired - n_val]  # the rows train_translation trains on
    brain = test.labels > 0
    synthetic = {}
    print(
        f"\nPart 3: T1 → T2/FLAIR pix2pix (width {args.translate_width}) on {args.n_paired - n_val} paired people "
        f"({n_val} for val_l1 / best checkpoint), {args.translate_steps} steps each; quality on {len(test)} "
        "held-out people (standardised units; r inside the brain)"
    )
    print(
        f"{'target':>7} {'MAE synth':>10} {'copy-T1':>8} {'linear-T1':>10} "
        f"{'r synth':>8} {'copy-T1':>8} {'linear-T1':>10}"
    )
    for c, target in enumerate(train.contrasts[1:], start=1):
        config = TranslateConfig(
            out=str(out / f"translate_{target}"),
            data=str(folder),
            source="t1",
            target=target,
            size=args.size,
            val_fraction=n_val / args.n_paired,
            max_steps=args.translate_steps,
            epochs=None,
            eval_every=max(1, args.translate_steps // 8),
            log_every=max(1, args.translate_steps // 4),
            checkpoint_every=0,
            width=args.translate_width,
            disc_width=args.translate_width,
            device=args.device,
            progress=False,
        )
        train_translation(config)
        synthetic[target] = synthesise(config.out, t1_train, args.device)
        fake_test = synthesise(config.out, t1_test, args.device)
        real = test.images[:, c]
        mae, r = translation_quality(fake_test, real, brain)
        mae_copy, r_copy = translation_quality(t1_test, real, brain)
        slope, intercept = linear_fit(paired_train[:, 0], paired_train[:, c])
        mae_lin, r_lin = translation_quality(slope * t1_test + intercept, real, brain)
        print(
            f"{target:>7} {mae:>10.3f} {mae_copy:>8.3f} {mae_lin:>10.3f} {r:>8.3f} {r_copy:>8.3f} {r_lin:>10.3f}"
        )
    print(f"translation: {time.perf_counter() - start:.0f} s")

    with_synthetic = standardize_channels(torch.stack([t1_train, *synthetic.values()], 1), 3)
    config_b = PretrainConfig(out=str(out / "puzzle_synthetic"), task_options=options, **common)
    task_b, seconds = pretrain(config_b, with_synthetic)
    print(f"(b) puzzle on T1 + synthetic T2/FLAIR pretrained in {seconds:.0f} s")
    arms = {
        "(a) t1": arms["(a) t1"],
        "(b) t1+synth": (task_b, config_b.out),
        "(c) t1+real": arms["(c) t1+real"],
    }

    grids = list(options["grids"])
    t1_only = test.images[:, :1]
    views = {"t1 only": (train.images[:, :1], t1_only), "t1,t2,flair mixed": (train.images, test.images)}
    print(
        f"held-out tile accuracy: {len(test)} unseen people × {args.draws} puzzle draws (tiles = "
        f"{len(test) * args.draws} × K); {args.steps} steps × {args.batch_size} per arm, one seed"
    )
    print(
        f"{'grid':>4} {'K':>3} {'tiles from':>18} " + " ".join(f"{n:>13}" for n in arms) + " template  chance"
    )
    for view, (train_v, test_v) in views.items():
        template = template_tile_accuracy(options, train_v, test_v, grids, args.draws)
        row = {}
        for name, (task, _) in arms.items():
            m = len(task.modalities)
            if test_v.shape[1] == m:
                row[name] = tile_accuracy(task, test_v, grids, args.draws)
            elif test_v.shape[1] == 1:  # a multimodal task on T1 tiles only: T1 in every channel
                row[name] = tile_accuracy(task, test_v.expand(-1, m, -1, -1, -1), grids, args.draws)
        for grid in grids:
            cells = " ".join(f"{row[n][grid]:>13.3f}" if n in row else f"{'—':>13}" for n in arms)
            k = grid**3
            print(f"{grid:>4} {k:>3} {view:>18} {cells} {template[grid]:>8.3f} {1 / k:>7.3f}")

    fraction = min(float(f) for f in args.fractions.split(","))
    inits = {"scratch": None, **{name: run for name, (_, run) in arms.items()}}
    finetune_table(args, out, out / "finetune_synthetic", inits, [fraction], common["encoder_kwargs"])
    print(f"Part 3 run time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
