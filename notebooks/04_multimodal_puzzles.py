# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Multimodal puzzles and cross-modal generation
#
# Taleb et al. (IPMI 2021): a jigsaw puzzle whose tiles come from different MRI modalities (T1, T2,
# FLAIR) is solved by one shared encoder and a permutation head with the Sinkhorn operator. When a
# modality is missing, a translation model (pix2pix) synthesises it from another, and the puzzle is
# pretrained on the real + synthetic pair.
#
# 1. Puzzle pretraining on co-registered synthetic brains; tile and exact-puzzle accuracy on unseen
#    people, for mixed-modality and single-modality puzzles, against chance (1/K, 1/K!).
# 2. Pix2pix T1 → FLAIR on a synthetic biobank; held-out L1 against copying the T1 and predicting zeros.
# 3. Synthetic FLAIR for every person, then a puzzle on (T1, synthetic FLAIR).
#
# Full mode: 96 pretraining + 32 test brains at 32³, unet3d base width 8 depth 3, grids 2 and 3, 150
# steps of 8; translation on 60 people at 16³, 150 steps of 4; 73 s on 2 CPU cores (measured). Its result
# there: tile and exact-puzzle accuracy 0.97–1.00 on 32 unseen brains for every variant (chance 0.125 /
# 2.5e-5 at grid 2, 0.037 / 9e-29 at grid 3: the centred synthetic brains make the puzzle easy);
# pix2pix held-out L1 0.148 against 0.230 for copying the T1 and 0.818 for zeros. Smoke
# mode (`CONTIG_NOTEBOOK_SMOKE=1`): 8 + 4 brains at 16³, base width 4 depth 2, grid 2, 2 steps each;
# under half a minute (56 people for the translation: the simulator needs 50 founders for LD).
#
# Results go to `$CONTIG_NOTEBOOK_OUT` (default `notebook-out/04_multimodal_puzzles`):
# `puzzle_accuracy.csv`, `translation.csv`, `translation.png` and the runs.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("CONTIG_NOTEBOOK_SMOKE") == "1"
OUT = os.environ.get("CONTIG_NOTEBOOK_OUT", "notebook-out/04_multimodal_puzzles")
SEED = 0
N_PRETRAIN, N_TEST = (8, 4) if SMOKE else (96, 32)
SIZE = 16 if SMOKE else 32
WIDTH, DEPTH = (4, 2) if SMOKE else (8, 3)
GRIDS = (2,) if SMOKE else (2, 3)
STEPS = 2 if SMOKE else 150
BATCH_SIZE = 4 if SMOKE else 8
N_PEOPLE_TRANSLATION = 56 if SMOKE else 60
TRANSLATION_SIZE = 16
TRANSLATION_STEPS = 2 if SMOKE else 150
CONTRASTS = ("t1", "t2", "flair")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from contig.biobank import BiobankConfig, simulate_biobank
from imaging.puzzle.data import MultimodalVolumes, SyntheticMultimodal
from imaging.puzzle.task import chance_accuracy, held_out_accuracy
from imaging.registry import create_encoder, create_task
from imaging.ssl.base import TaskCollate, TaskItems, task_loss
from imaging.training import Trainer, TrainingConfig
from imaging.translation import create_translation_model
from imaging.translation.data import PairedVolumes
from imaging.translation.runner import make_eval_fn, save_model_config, translate_folder, translate_volume

if SMOKE:
    torch.set_num_threads(1)
out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)


def training_config(run: str, steps: int, **kw) -> TrainingConfig:
    """The shared trainer settings of every run in this notebook."""
    settings = dict(
        max_steps=steps, epochs=None, batch_size=BATCH_SIZE, lr=2e-3, warmup_steps=max(1, steps // 10)
    )
    settings.update(
        seed=SEED, log_every=max(1, steps // 5), checkpoint_every=0, progress=False, drop_last=True
    )
    return TrainingConfig(out=str(out / "runs" / run), **{**settings, **kw})


def pretrain_puzzle(run: str, data, modalities) -> torch.nn.Module:
    """The Sinkhorn puzzle task (encoder + permutation heads) trained for STEPS steps on ``data``."""
    torch.manual_seed(SEED)
    encoder = create_encoder("unet3d", in_chans=1, base_width=WIDTH, depth=DEPTH)
    options = {"grids": list(GRIDS), "patch_multiple": 2 ** (DEPTH - 1), "modalities": list(modalities)}
    task = create_task("puzzle", encoder=encoder, dim=3, **options)
    Trainer(task, task_loss, TaskItems(data), training_config(run, STEPS), collate_fn=TaskCollate(task)).fit(
        resume=True
    )
    return task.eval()


def accuracy_rows(task, images: torch.Tensor, pretraining: str) -> list[dict]:
    """Tile and exact-puzzle accuracy per grid for mixed-modality and single-modality puzzles, with chance."""
    rows = []
    for confusion, tiles_from in ((True, "mixed modalities"), (False, "one modality")):
        for grid, (tile, puzzle) in held_out_accuracy(task, images, confusion, seed=SEED).items():
            chance_tile, chance_puzzle = chance_accuracy(grid**3)
            rows.append(
                {
                    "pretraining": pretraining,
                    "grid": grid,
                    "tiles_from": tiles_from,
                    "tile_accuracy": tile,
                    "chance_tile": chance_tile,
                    "puzzle_accuracy": puzzle,
                    "chance_puzzle": chance_puzzle,
                }
            )
    return rows


# %% [markdown]
# ## 1. Multimodal puzzle on co-registered brains

# %%
train = SyntheticMultimodal(N_PRETRAIN, SIZE, CONTRASTS, seed=11)
test = SyntheticMultimodal(N_TEST, SIZE, CONTRASTS, seed=12)
puzzle = pretrain_puzzle("puzzle", train, CONTRASTS)
accuracy = accuracy_rows(puzzle, test.images, "T1+T2+FLAIR")
pd.DataFrame(accuracy)

# %% [markdown]
# ## 2. Cross-modal generation: pix2pix T1 → FLAIR
# The last 25% of the biobank's rows are held out; the baseline "copy" uses the standardised T1 as the
# FLAIR, "zeros" predicts the mean.

# %%
biobank = out / "biobank"
if not (biobank / "manifest.parquet").is_file():
    simulate_biobank(
        biobank,
        BiobankConfig(
            n_individuals=N_PEOPLE_TRANSLATION,
            image_kind="mri3d",
            image_size=TRANSLATION_SIZE,
            seed=SEED,
            progress=False,
        ),
    )
n_rows = len(PairedVolumes(biobank, "t1", "flair"))
n_val = max(1, n_rows // 4)
train_rows, val_rows = list(range(n_rows - n_val)), list(range(n_rows - n_val, n_rows))
model_kwargs = {"dim": 3, "width": 2 * WIDTH, "depth": 3, "disc_width": 2 * WIDTH, "l1_weight": 100.0}
torch.manual_seed(SEED)
generator = create_translation_model("paired", **model_kwargs)
run = out / "runs" / "t1_to_flair"
save_model_config(
    run, {"mode": "paired", "source": "t1", "target": "flair", "size": None, "model": model_kwargs}
)
held_out = PairedVolumes(biobank, "t1", "flair", rows=val_rows)
Trainer(
    generator,
    lambda model, batch: model(batch),
    PairedVolumes(biobank, "t1", "flair", rows=train_rows),
    training_config("t1_to_flair", TRANSLATION_STEPS, lr=1e-3, betas=(0.5, 0.999), weight_decay=0.0),
    eval_fn=make_eval_fn(held_out),
).fit(resume=True)
generator.eval()
items = [held_out[i] for i in range(len(held_out))]
copy_l1 = float(torch.stack([(item["source"] - item["target"]).abs().mean() for item in items]).mean())
zeros_l1 = float(torch.stack([item["target"].abs().mean() for item in items]).mean())
with torch.no_grad():
    pix2pix_l1 = make_eval_fn(held_out)(generator)["val_l1"]
translation = pd.DataFrame(
    [
        {"method": "pix2pix", "held_out_l1": pix2pix_l1},
        {"method": "copy T1", "held_out_l1": copy_l1},
        {"method": "zeros", "held_out_l1": zeros_l1},
    ]
)
translation.to_csv(out / "translation.csv", index=False)
translation

# %%
item = items[0]
with torch.no_grad():
    fake = translate_volume(generator, item["source"][0])
middle = TRANSLATION_SIZE // 2
figure, axes = plt.subplots(1, 3, figsize=(9, 3))
for axis, (title, volume) in zip(
    axes, (("T1", item["source"][0]), ("FLAIR", item["target"][0]), ("synthetic FLAIR", fake)), strict=True
):
    axis.imshow(volume[middle].numpy(), cmap="gray")
    axis.set_title(title)
    axis.axis("off")
figure.tight_layout()
figure.savefig(out / "translation.png", dpi=100)
plt.show()

# %% [markdown]
# ## 3. Puzzle on (T1, synthetic FLAIR)
# `translate_folder` writes a synthetic FLAIR for every person and a manifest pointing at it; the puzzle
# reads it like any biobank folder. Accuracy is measured on the held-out synthetic brains' T1 and FLAIR.

# %%
synthetic = out / "biobank_synthetic_flair"
translate_folder(run, biobank, synthetic, checkpoint="last")
pair = MultimodalVolumes(synthetic, ("t1", "flair"), size=SIZE)
puzzle_synth = pretrain_puzzle("puzzle_synthetic_flair", pair, ("t1", "flair"))
accuracy += accuracy_rows(puzzle_synth, test.images[:, [0, 2]], "T1+synthetic FLAIR")
table = pd.DataFrame(accuracy)
table.to_csv(out / "puzzle_accuracy.csv", index=False)
table

# %% [markdown]
# ## Reading the numbers
# The synthetic brains are centred and stereotyped, so in full mode both puzzles are solved almost exactly
# (docs/puzzles.md); the point is the pipeline, and that a synthetic modality can stand in for a missing
# one. Smoke-mode numbers are from 2 steps and sit near chance.
