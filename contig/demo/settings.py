"""Sizes of ``contig demo``: the default run (≤ 15 min on 2 CPU cores) and ``--quick`` (≤ 3 min)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoConfig:
    """Every size the demo uses; the same settings and seed give the same report numbers on CPU.

    Attributes:
        n_individuals, image_size: the synthetic biobank (fundus photographs).
        split_fractions: train (pretraining and the downstream training pool) / val (checkpoint
            selection) / test (downstream evaluation) by person. GWAS uses the people not pretrained on.
        image_encoder: the image tower shared by ContIG, SimCLR and random init.
        pretrain_steps, batch_size, lr: the same budget for ContIG and SimCLR.
        max_snps: SNP-modality width.
        feature_pcs: principal components of the embeddings tested in the GWAS.
        fractions: downstream label fractions (a fraction whose drawn training people, or the test
            split, hold fewer than ``min_positives`` positives or negatives is refused and reported so).
        finetune_steps: the most fine-tuning steps per fraction; fine-tuning stops earlier when the
            validation loss (``val`` people) has not improved for ``finetune_patience`` evaluations, one
            every ``finetune_eval_every`` steps, and keeps the best weights.
        n_boot: bootstrap resamples for the 95% intervals.
        major_variance, polygenic_scale, render_calibration: the synthetic biobank's demo calibration, so
            that planted variants are findable by the GWAS people and every trait shows in the pictures
            (``BiobankConfig`` fields of the same names; docs/synthetic_biobank.md, "Demo calibration").
        n_discovery: people of the biobank's separate PGS discovery cohort.
    """

    n_individuals: int
    image_size: int
    split_fractions: tuple[float, float, float]
    image_encoder: str
    pretrain_steps: int
    batch_size: int
    lr: float
    max_snps: int
    feature_pcs: int
    fractions: tuple[float, ...]
    finetune_steps: int
    n_boot: int
    major_variance: float | None = None
    polygenic_scale: float = 1.0
    render_calibration: str = "default"
    finetune_eval_every: int = 10
    finetune_patience: int = 5
    min_positives: int = 10
    n_discovery: int = 2_000


FULL = DemoConfig(
    n_individuals=2_500,
    image_size=64,
    split_fractions=(0.5, 0.15, 0.35),
    image_encoder="resnet10t",
    pretrain_steps=200,
    batch_size=64,
    lr=2e-3,
    max_snps=4_000,
    feature_pcs=10,
    fractions=(0.01, 0.1, 0.25, 1.0),  # glaucoma: 1, 8, 19, 77 suspects among the drawn training people
    finetune_steps=100,
    n_boot=1_000,
    major_variance=0.12,
    polygenic_scale=0.25,
    render_calibration="demo",
    finetune_eval_every=10,
    finetune_patience=3,
)

QUICK = DemoConfig(
    n_individuals=800,
    image_size=32,
    split_fractions=(0.5, 0.15, 0.35),
    image_encoder="resnet10t",
    pretrain_steps=40,
    batch_size=32,
    lr=2e-3,
    max_snps=500,
    feature_pcs=5,
    fractions=(0.01, 0.1, 1.0),
    finetune_steps=40,
    n_boot=200,
    major_variance=0.2,
    polygenic_scale=0.25,
    render_calibration="demo",
    finetune_eval_every=5,
    finetune_patience=3,
)
