"""Classification and localisation of the caries MIL models on synthetic bitewings, side by side.

Trains, for the same fixed budget (steps, batch, seed, backbone), the interpretable model with mask
guidance, the same model without guidance, and attention-MIL (Ilse et al.; unguided, as published),
then prints for a held-out synthetic set: image AUROC, pointing game and patch-level Dice of the
thresholded heatmap (≥ 0.5) vs the lesion masks (definitions in ``imaging/mil/evaluate.py``). The heatmap
is p_k for the interpretable models and α_k / max α for attention-MIL.

Usage: python benchmarks/mil_localisation.py [--steps 300] [--n-train 400] [--n-test 200]
       [--height 64] [--width 128] [--backbone resnet10t] [--threads 2] [--extra]
(--extra adds mean- and max-pooling baselines and guided attention-MIL.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from imaging.mil import MILFolderDataset, MILLoss, create_mil_model, evaluate, simulate_bitewings
from imaging.training import Trainer, TrainingConfig

# name → (pooling, guide_patch, guide_attention)
SETTINGS = {
    "interpretable, guided": ("interpretable", 1.0, 1.0),
    "interpretable, unguided": ("interpretable", 0.0, 0.0),
    "attention-MIL": ("attention", 0.0, 0.0),
}
EXTRA = {
    "attention-MIL, guided": ("attention", 1.0, 1.0),
    "mean pooling": ("mean", 0.0, 0.0),
    "max pooling": ("max", 0.0, 0.0),
}


def train_one(
    name: str, setting: tuple, train: MILFolderDataset, args: argparse.Namespace, out: Path
) -> tuple:
    pooling, guide_patch, guide_attention = setting
    torch.manual_seed(args.seed)
    model = create_mil_model(
        pooling, backbone=args.backbone, feature_stride=8, patch_size=2, embed_dim=64, attention_dim=32
    )
    config = TrainingConfig(
        out=str(out / name.replace(" ", "_").replace(",", "")),
        max_steps=args.steps,
        epochs=None,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        lr=args.lr,
        weight_decay=1e-4,
        warmup_steps=20,
        log_every=50,
        checkpoint_every=0,
        progress=False,
    )
    start = time.perf_counter()
    Trainer(model, MILLoss(guide_patch, guide_attention), train, config).fit()
    return model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", action="store_true", help="also mean/max pooling and guided attention-MIL")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {**SETTINGS, **(EXTRA if args.extra else {})}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        size = {"height": args.height, "width": args.width}
        train_csv = simulate_bitewings(out / "train", n=args.n_train, seed=args.seed, **size)
        test_csv = simulate_bitewings(out / "test", n=args.n_test, seed=args.seed + 1000, **size)
        train, test = MILFolderDataset(train_csv, flip=True), MILFolderDataset(test_csv)
        rows = []
        for name, setting in settings.items():
            model, seconds = train_one(name, setting, train, args, out / "runs")
            metrics = evaluate(model, test)
            rows.append((name, metrics, seconds))
            print(f"done: {name} ({seconds:.0f} s)", flush=True)
    print(
        f"\n{args.n_train} train / {args.n_test} test synthetic bitewings {args.height}x{args.width}, "
        f"{args.backbone} (stride 8, 2x2-cell patches), {args.steps} steps x batch {args.batch_size}, "
        f"seed {args.seed}; localisation on {int(rows[0][1]['n_localised'])} positive test images\n"
    )
    print("| model | AUROC | pointing game | Dice (positives) | Dice (all) | train s |")
    print("|---|---|---|---|---|---|")
    for name, m, seconds in rows:
        print(
            f"| {name} | {m['auroc']:.3f} | {m['pointing']:.3f} | {m['dice_pos']:.3f} | {m['dice']:.3f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
