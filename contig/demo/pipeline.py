"""``contig demo``: the main job on the built-in synthetic biobank, end to end.

simulate → pretrain ContIG (SNP + PGS + burden; some people lack genotypes or burden data) → SimCLR
(image only, same steps and batch) and random init → embed every image with each encoder → feature
GWAS of the people not pretrained on (PCA → covariate residuals → rank-INT → GWAS → loci vs truth.json)
→ downstream linear probe and fine-tuning at label fractions with 95% bootstrap intervals →
``report.json`` (every number) and ``report.html``.

Each stage reuses a finished result in ``out`` (the biobank, the runs), so an interrupted demo continues.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from contig.biobank import BiobankConfig, simulate_biobank
from contig.dataset import ImageSettings, MultimodalDataset
from contig.demo import downstream
from contig.demo.baselines import random_encoder, train_simclr
from contig.demo.feature_gwas import feature_gwas
from contig.demo.report import write_report
from contig.demo.settings import FULL, QUICK, DemoSettings
from contig.embed import embed_images, load_run
from contig.genetic_inputs import GeneticInputsConfig
from contig.pretrain import PretrainConfig, pretrain

log = logging.getLogger("contig.demo")
METHODS = ("contig", "simclr", "random")


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()
                log.info("demo: %s", name)

            def __exit__(self, *exc):
                clock.seconds[name] = round(time.perf_counter() - self.start, 2)

        return _Stage()


def _biobank(out: Path, s: DemoSettings, seed: int, progress: bool) -> Path:
    folder = out / "biobank"
    if not (folder / "truth.json").is_file():
        config = BiobankConfig(
            n_individuals=s.n_individuals,
            image_size=s.image_size,
            seed=seed,
            split_fractions=s.split_fractions,
            progress=progress,
        )
        simulate_biobank(folder, config)
    return folder


def _pretrain_contig(biobank: Path, out: Path, s: DemoSettings, seed: int, progress: bool) -> dict:
    config = PretrainConfig(
        out=str(out),
        data=str(biobank),
        max_steps=s.pretrain_steps,
        epochs=None,
        batch_size=s.batch_size,
        lr=s.lr,
        warmup_steps=max(1, s.pretrain_steps // 10),
        image_encoder=s.image_encoder,
        genetic=GeneticInputsConfig(max_snps=s.max_snps),
        seed=seed,
        log_every=max(1, s.pretrain_steps // 10),
        eval_every=max(1, s.pretrain_steps // 3),
        checkpoint_every=0,
        progress=progress,
    )
    return pretrain(config, resume=True)


def run_demo(
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    settings: DemoSettings | None = None,
) -> dict:
    """Run the demo into ``out`` and return the report dictionary (also ``out/report.json``).

    ``settings`` replaces the built-in sizes (``QUICK`` with ``quick``, else ``FULL``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings or (QUICK if quick else FULL)
    clock = _Clock()
    torch.manual_seed(seed)
    with clock("simulate"):
        biobank = _biobank(out, s, seed, progress)
    truth = json.loads((biobank / "truth.json").read_text())
    labels = downstream.read_image_table(biobank, "downstream/labels.parquet")

    with clock("pretrain_contig"):
        trained = _pretrain_contig(biobank, out / "runs" / "contig", s, seed, progress)
    run = load_run(out / "runs" / "contig")
    train_images = MultimodalDataset(
        labels[labels["split"] == "train"].reset_index(drop=True), ImageSettings()
    )
    in_chans = train_images[0]["image"].shape[0]
    with clock("pretrain_simclr"):
        simclr = train_simclr(
            train_images, out / "runs" / "simclr", s.image_encoder, in_chans, s.pretrain_steps, s.batch_size,
            s.lr, seed, progress,
        )  # fmt: skip
    encoders = {
        "contig": run.model.image_tower,
        "simclr": simclr,
        "random": random_encoder(s.image_encoder, in_chans, seed),
    }

    per_image, per_person = {}, {}
    with clock("embed"):
        for method, encoder in encoders.items():
            per_image[method], per_person[method] = embed_images(encoder, labels, progress=progress)

    pretrained_people = set(labels.loc[labels["split"] == "train", "IID"])
    gwas = {}
    with clock("gwas"):
        for method in METHODS:
            held_out = per_person[method][~per_person[method]["IID"].isin(pretrained_people)]
            gwas[method] = feature_gwas(
                held_out, biobank, out / "gwas" / method, truth, s.feature_pcs, progress=progress
            )

    with clock("downstream"):
        results = downstream.evaluate(labels, per_image, encoders, biobank, s, seed, progress)
    results.to_parquet(out / "downstream.parquet", index=False)

    report = {
        "settings": {**asdict(s), "quick": quick, "seed": seed},
        "cohort": _cohort(biobank, truth, run, labels),
        "pretraining": {
            "contig": {k: v for k, v in trained.items() if k != "last"} | {"last": trained.get("last", {})},
            "simclr_steps": s.pretrain_steps,
        },
        "loci": gwas["contig"].loci,
        "loci_by_method": {m: g.loci for m, g in gwas.items()},
        "feature_pcs_explained_variance": {m: g.explained_variance for m, g in gwas.items()},
        "downstream": downstream.summary(results),
        "downstream_rows": results.replace({np.nan: None}).to_dict(orient="records"),
        "timing_seconds": clock.seconds,
    }
    report["timing_seconds"]["total"] = round(sum(clock.seconds.values()), 2)
    write_report(out, report, gwas, results)
    return report


def _cohort(biobank: Path, truth: dict, run, labels: pd.DataFrame) -> dict:
    manifest = pd.read_parquet(biobank / "manifest.parquet")
    people = manifest.drop_duplicates("IID")
    inputs = json.loads((Path(run.config.out) / "inputs" / "inputs.json").read_text())
    return {
        "people": int(len(people)),
        "images": int(len(manifest)),
        "genotyped": int(people["genotyped"].sum()),
        "with_burden": int((people["genotyped"] & people["burden"]).sum()),
        "variants": int(truth["genotypes"]["n_variants"]) if "n_variants" in truth["genotypes"] else None,
        "splits": labels.drop_duplicates("IID")["split"].value_counts().to_dict(),
        "genetic_inputs": inputs,
    }
