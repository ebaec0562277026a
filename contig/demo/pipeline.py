"""``contig demo``: the main job on the built-in synthetic biobank, end to end, beside its controls.

simulate (the demo calibration: planted effects findable at this size) → pretrain ContIG (SNP + PGS +
burden; some people lack genotypes or burden data) and, with the same budget, the permuted-genetics
ContIG control, SimCLR (image only) and random init → loss − chance of both ContIG runs on training and
held-out people → embed every image with each encoder → feature GWAS of the people not pretrained on
(PCA → covariate residuals → rank-INT → GWAS → loci matched one-to-one to truth.json), with the oracle
ceiling (the same protocol on the true rendered traits) → downstream probes and early-stopped
fine-tuning with counts and 95% bootstrap intervals, the heritability-free trait as negative control →
``report.json`` (every number) and ``report.html``.

Each stage reuses a finished result in ``out`` (the biobank, the runs), so an interrupted demo continues.
``out/demo.json`` records the settings and seed a folder was made with; a folder made with other
settings or another seed (or by an older demo) is refused before anything runs, never silently reused.
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
from contig.dataset import ImageConfig, MultimodalDataset
from contig.demo import downstream
from contig.demo.baselines import AUGMENTATIONS, random_encoder, train_simclr
from contig.demo.feature_gwas import feature_gwas, oracle_gwas
from contig.demo.report import checks, write_report
from contig.demo.settings import FULL, QUICK, DemoConfig
from contig.embed import embed_images, load_run
from contig.errors import ContigError
from contig.evaluation import paired_difference
from contig.genetic_inputs import GeneticInputsConfig
from contig.pretrain import EVALUATION_TERMS, PretrainConfig, pretrain
from genetics.atomic import atomic_write_text

log = logging.getLogger("contig.demo")
METHODS = ("contig", "contig_permuted", "simclr", "random")
ORACLE = "oracle"  # the same GWAS protocol on the true rendered traits: the ceiling
CONTIG_RUNS = {"contig": False, "contig_permuted": True}  # run name → permute_genetics


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


def _biobank(out: Path, s: DemoConfig, seed: int, progress: bool) -> Path:
    folder = out / "biobank"
    if not (folder / "truth.json").is_file():
        config = BiobankConfig(
            n_individuals=s.n_individuals,
            image_size=s.image_size,
            seed=seed,
            split_fractions=s.split_fractions,
            n_discovery=s.n_discovery,
            major_variance=s.major_variance,
            polygenic_scale=s.polygenic_scale,
            render_calibration=s.render_calibration,
            progress=progress,
        )
        simulate_biobank(folder, config)
    return folder


def _pretrain_contig(
    biobank: Path, out: Path, s: DemoConfig, seed: int, progress: bool, permute: bool = False
) -> dict:
    config = PretrainConfig(
        permute_genetics=permute,
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
        eval_every=max(1, s.pretrain_steps // 10),  # best.safetensors = early stopping on held-out loss
        checkpoint_every=0,
        progress=progress,
    )
    return pretrain(config, resume=True)


STAMP = "demo.json"
DEMO_FORMAT = 2  # bump when a stage's output changes meaning (2: calibrated biobank, controls)


class DemoFolderError(ContigError):
    """``out`` holds a demo made with other settings, another seed or an older demo."""


def _check_folder(out: Path, stamp: dict) -> None:
    """Refuse to reuse a folder made differently; write the stamp into a new one."""
    stamp = json.loads(json.dumps(stamp, default=str))  # as it reads back (tuples → lists)
    path = out / STAMP
    if path.is_file():
        found = json.loads(path.read_text())
        if found != stamp:
            changed = sorted(k for k in stamp if found.get(k) != stamp[k]) or ["format"]
            raise DemoFolderError(
                f"{out}: holds a demo made with other {', '.join(changed)}; "
                "give another --out, or replace it with --overwrite"
            )
    elif any(out.iterdir()):
        raise DemoFolderError(f"{out}: not empty and not a folder of this demo; give another --out")
    else:
        atomic_write_text(path, json.dumps(stamp, indent=2, default=str))


def run_demo(
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    settings: DemoConfig | None = None,
) -> dict:
    """Run the demo into ``out`` and return the report dictionary (also ``out/report.json``).

    ``settings`` replaces the built-in sizes (``QUICK`` with ``quick``, else ``FULL``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings or (QUICK if quick else FULL)
    _check_folder(out, {"format": DEMO_FORMAT, "seed": seed, "settings": asdict(s)})
    clock = _Clock()
    torch.manual_seed(seed)
    with clock("simulate"):
        biobank = _biobank(out, s, seed, progress)
    truth = json.loads((biobank / "truth.json").read_text())
    labels = downstream.read_image_table(biobank, "downstream/labels.parquet")

    trained, runs = {}, {}
    for name, permute in CONTIG_RUNS.items():
        with clock(f"pretrain_{name}"):
            trained[name] = _pretrain_contig(biobank, out / "runs" / name, s, seed, progress, permute)
        runs[name] = load_run(out / "runs" / name)
    run = runs["contig"]
    train_images = MultimodalDataset(labels[labels["split"] == "train"].reset_index(drop=True), ImageConfig())
    in_chans = train_images[0]["image"].shape[0]
    with clock("pretrain_simclr"):
        simclr = train_simclr(
            train_images, out / "runs" / "simclr", s.image_encoder, in_chans, s.pretrain_steps, s.batch_size,
            s.lr, seed, progress,
        )  # fmt: skip
    encoders = {
        **{name: loaded.model.image_tower for name, loaded in runs.items()},
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
        gwas_people = per_person["contig"].loc[~per_person["contig"]["IID"].isin(pretrained_people), "IID"]
        gwas[ORACLE] = oracle_gwas(
            biobank, gwas_people, out / "gwas" / ORACLE, truth, s.feature_pcs, progress=progress
        )

    with clock("downstream"):
        results = downstream.evaluate(labels, per_image, encoders, biobank, s, seed, progress)
    results.to_parquet(out / "downstream.parquet", index=False)

    report = {
        "settings": {**asdict(s), "quick": quick, "seed": seed},
        "cohort": _cohort(biobank, truth, run, labels),
        "pretraining": {
            **{
                name: {k: v for k, v in summary.items() if k != "evaluation"}
                for name, summary in trained.items()
            },
            "simclr_steps": s.pretrain_steps,
        },
        "alignment": {name: summary.get("evaluation") for name, summary in trained.items()},
        "alignment_vs_permuted": _versus_permuted(out / "runs", s.n_boot, seed),
        "augmentations": AUGMENTATIONS,
        "loci": gwas["contig"].loci,
        "loci_by_method": {m: g.loci for m, g in gwas.items()},
        "feature_pcs_explained_variance": {m: g.explained_variance for m, g in gwas.items()},
        "downstream": downstream.summary(results),
        "downstream_rows": results.replace({np.nan: None}).to_dict(orient="records"),
        "timing_seconds": clock.seconds,
    }
    report["timing_seconds"]["total"] = round(sum(clock.seconds.values()), 2)
    report["checks"] = checks(report).to_dict(orient="records")
    write_report(out, report, gwas, results)
    return report


def _versus_permuted(runs: Path, n_boot: int, seed: int) -> dict:
    """Per split and modality: ContIG's loss minus the permuted control's, paired over the same people
    and batches, with a 95% bootstrap interval (``contig.evaluation.paired_difference``)."""
    method, control = (pd.read_parquet(runs / name / EVALUATION_TERMS) for name in CONTIG_RUNS)
    return {
        str(split): paired_difference(
            method[method["split"] == split], control[control["split"] == split], n_boot, seed
        )
        for split in sorted(set(method["split"]) & set(control["split"]))
    }


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
