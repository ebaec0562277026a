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
# # 1. ContIG on the synthetic biobank: does it learn genetics, and does it beat its controls?
#
# Simulate a biobank of fundus photographs with genotypes, polygenic scores and gene burdens (the demo
# calibration: planted effects findable at this size); pretrain ContIG (image tower aligned with the SNP,
# PGS and burden towers) and, with the same budget, three controls: **ContIG with permuted genetics**
# (each person's genetics swapped for another's), an image-only **SimCLR**, and **random init**. Then:
# the contrastive loss minus its chance level on training and held-out people; a feature GWAS of the
# people not pretrained on, read against the **oracle** (the same protocol on the true traits); and
# downstream probes and early-stopped fine-tuning with counts and 95% bootstrap intervals, with the
# heritability-free trait as the negative control. This is `contig demo` (`contig.demo.run_demo`),
# step by step.
#
# Full mode: the sizes of `contig demo` (2,500 people at 64 px, resnet10t, 200 pretraining steps of 64).
# Smoke mode (`CONTIG_NOTEBOOK_SMOKE=1`): 160 people at 32 px, `test_resnet`, 3 steps; about a minute.
#
# Results go to `$CONTIG_NOTEBOOK_OUT` (default `notebook-out/01_contig_pretraining`): the demo's
# `report.json`, `report.html`, `downstream.parquet` (one row per task × protocol × method × fraction ×
# metric) and the GWAS folders.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("CONTIG_NOTEBOOK_SMOKE") == "1"
OUT = os.environ.get("CONTIG_NOTEBOOK_OUT", "notebook-out/01_contig_pretraining")
SEED = 0

# %%
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Image, display

from contig.demo.pipeline import run_demo
from contig.demo.report import alignment_table, augmentation_table, downstream_tables, loci_tables
from contig.demo.settings import FULL

settings = FULL
if SMOKE:
    torch.set_num_threads(1)
    settings = replace(
        FULL,
        n_individuals=160,
        image_size=32,
        image_encoder="test_resnet",
        pretrain_steps=3,
        batch_size=16,
        max_snps=100,
        feature_pcs=5,
        fractions=(0.1, 1.0),
        finetune_steps=2,
        n_boot=20,
        min_positives=1,
        n_discovery=300,
    )
out = Path(OUT)

# %% [markdown]
# ## Run everything
# Each stage reuses a finished result in `out`, so a rerun continues where it stopped.

# %%
report = run_demo(out, seed=SEED, progress=False, settings=settings)
pd.Series(report["timing_seconds"])

# %% [markdown]
# ## Does ContIG align images with genetics?
# Loss minus chance (seeded batches of distinct people), mean over people with a 95% bootstrap interval.
# Below 0 on held-out people means images are paired with their own person's genetics better than chance.
# The permuted control is what a model with no real image–genetics relation scores.

# %%
alignment_table(report["alignment"])

# %% [markdown]
# ## Feature GWAS of held-out people, against the oracle

# %%
totals, per_trait = loci_tables(report["loci_by_method"])
display(totals)
per_trait

# %% [markdown]
# ## Downstream label efficiency and trait probes
# Refused fractions (too few positives) are shown as such; fine-tuning stops early on the validation people.

# %%
for title, table in downstream_tables(report["downstream"]):
    print(title)
    display(table)

# %%
for path in sorted(out.glob("downstream_*.png")):
    display(Image(filename=str(path)))

# %% [markdown]
# ## What each method's augmentations remove

# %%
augmentation_table(report["augmentations"])

# %% [markdown]
# ## Reading the numbers
# In smoke mode the encoders are barely trained and the splits are tiny, so differences are noise. In
# full mode read each ContIG number against its control: the permuted run's held-out loss − chance, the
# oracle's loci, random init's probe gain on the heritability-free trait.
