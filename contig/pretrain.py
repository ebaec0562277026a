"""``contig pretrain``: contrastive image ↔ genetics pretraining on a biobank folder.

The run directory holds ``config.yaml`` (resolved), ``inputs/`` (the genetic modalities built with the
training people's statistics), ``metrics.csv``, ``last``/``best`` safetensors checkpoints, the log and
``evaluation.json`` (+ ``evaluation_terms.parquet``, per person): the best checkpoint's loss − chance per
modality with 95% intervals, for the people
of every split of the split table (training, validation, and e.g. test people, who were never trained
on nor used to pick the checkpoint; :mod:`contig.evaluation`). Every training row carries the chance level of its batch
(``chance``) and every evaluation its held-out ``val_excess`` per modality.

``genetic.permute=true`` trains the permuted-genetics control: each training person's genetic record is
replaced by another training person's with the same modalities (a seeded permutation), images untouched;
evaluation always pairs people with their own genetics, so the control's held-out excess estimates what
a model that learned no genetics scores.
The loop is the shared :class:`imaging.training.Trainer`; this module only supplies the data, the model,
the loss and a validation loss.

Under ``torchrun`` each rank computes the loss of the *global* batch: image and genetic embeddings are
gathered from every rank with :func:`imaging.training.all_gather_with_grad` (genetic rows padded to the
image batch size, so every rank sends equal shapes), and a person whose images landed on two ranks keeps
one genetic row. The gradient is then exactly the single-process gradient of the same global batch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from contig.dataset import (
    ImageConfig,
    MultimodalCollate,
    MultimodalDataset,
    check_images,
    image_settings_for,
    read_manifest,
)
from contig.errors import ContigError
from contig.evaluation import contrastive_evaluation, summarise_excess, validation_metrics
from contig.genetic_inputs import GeneticInputsConfig, build_genetic_inputs, open_genetic_record
from contig.losses import chance_level, contrastive_loss
from contig.model import ContIG, TowerSpec
from genetics.atomic import atomic_path, atomic_write_text
from genetics.encoders import list_encoders as list_genetic_encoders
from genetics.record import GeneticRecord
from imaging.errors import UnknownNameError
from imaging.registry import is_encoder as is_image_encoder
from imaging.training import checkpoint as ckpt
from imaging.training import distributed as D
from imaging.training.config import TrainingConfig

INPUTS_DIR = "inputs"
EVALUATION_FILE = "evaluation.json"
EVALUATION_TERMS = "evaluation_terms.parquet"  # one row per split, person and modality


@dataclass
class PretrainConfig(TrainingConfig):
    """``contig pretrain`` configuration: the shared training fields plus data, towers and loss.

    Attributes:
        data: biobank folder (``manifest.parquet``, ``genotypes.*``, ``pgs/``, ``burden/``).
        splits: ``IID split`` table (default ``<data>/downstream/splits.tsv``); people of ``train_split``
            train, people of ``val_split`` give the validation loss. Without a table everyone trains.
        genetic: which modalities and how they are built (``contig.genetic_inputs``).
        image_encoder, image_kwargs: image tower (timm name or a registered contig encoder).
        towers: genetic encoder name per modality; tower_kwargs: keyword arguments per modality. The SNP
            tower defaults to a linear map with 95% input dropout, not the paper's MLP: at ~1,250
            training people an MLP (or an undropped linear map) of thousands of SNPs memorises people
            and scores above chance on held-out people (measurements in docs/contig.md).
        loss: ``infonce`` or ``sigmoid``; alpha: weight of image → genetics; loss_mode: ``outer``/``inner``.
        temperature, learn_temperature: τ (fixed at 0.1 as in ContIG) and whether log(1/τ) is learned.
        head_layers: depth of each modality's image projection head (2: the paper's MLP; 1: linear).
        genetic_lr_scale: learning-rate multiplier of the genetic towers and heads.
        augment: horizontal flips and ±20° rotations of training images (the paper's augmentation).
        permute_genetics: train the permuted-genetics control (module docstring).
        eval_boot: bootstrap resamples of the final evaluation's intervals.
    """

    out: str = "runs/pretrain"
    epochs: int | None = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    drop_last: bool = True
    monitor: str = "val_loss"
    find_unused_parameters: bool = True
    data: str = ""
    splits: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    genetic: GeneticInputsConfig = field(default_factory=GeneticInputsConfig)
    image_encoder: str = "resnet18"
    image_kwargs: dict = field(default_factory=dict)
    embed_dim: int = 128
    towers: dict[str, str] = field(
        default_factory=lambda: {"snp": "linear", "pgs": "mlp_h1", "burden": "mlp_h1"}
    )
    tower_kwargs: dict[str, dict] = field(default_factory=lambda: {"snp": {"input_dropout": 0.95}})
    loss: Literal["infonce", "sigmoid"] = "infonce"
    alpha: float = 0.75
    loss_mode: Literal["outer", "inner"] = "outer"
    temperature: float = 0.1
    learn_temperature: bool = False
    head_layers: int = 2
    genetic_lr_scale: float = 1.0
    augment: bool = True
    permute_genetics: bool = False
    eval_boot: int = 1_000


# ----------------------------------------------------------------------------------------- data
def person_splits(config: PretrainConfig) -> pd.DataFrame:
    """``IID split`` per person; everyone is ``train_split`` when there is no split table."""
    data = Path(config.data)
    path = Path(config.splits) if config.splits else data / "downstream" / "splits.tsv"
    if path.is_file():
        return pd.read_csv(path, sep="\t", dtype=str)[["IID", "split"]]
    if config.splits:
        raise ContigError(f"{path}: no such split table (columns IID, split)")
    people = read_manifest(data / "manifest.parquet")["IID"].unique()
    return pd.DataFrame({"IID": people, "split": config.train_split})


def _images_of(manifest: pd.DataFrame, splits: pd.DataFrame, split: str) -> pd.DataFrame:
    people = set(splits.loc[splits["split"] == split, "IID"])
    return manifest[manifest["IID"].isin(people)].reset_index(drop=True)


def _with_genetics(images: pd.DataFrame, record: GeneticRecord, modalities: tuple[str, ...], mode: str):
    """Drop images of people who could never enter a term (no modality; ``inner``: not all of them)."""
    table = record.availability(images["IID"].to_numpy())[list(modalities)].to_numpy()
    keep = table.all(axis=1) if mode == "inner" else table.any(axis=1)
    return images[keep].reset_index(drop=True)


def build_model(config: PretrainConfig, num_features: dict[str, int], in_chans: int) -> ContIG:
    towers = {
        m: TowerSpec(config.towers.get(m, "mlp_h1"), num_features[m], dict(config.tower_kwargs.get(m, {})))
        for m in config.genetic.modalities
    }
    return ContIG(
        towers,
        image_encoder=config.image_encoder,
        embed_dim=config.embed_dim,
        in_chans=in_chans,
        image_kwargs=dict(config.image_kwargs),
        init_temperature=config.temperature,
        learn_temperature=config.learn_temperature,
        head_layers=config.head_layers,
        sigmoid_bias=-10.0 if config.loss == "sigmoid" else None,
    )


# ----------------------------------------------------------------------------------------- loss
def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros((rows - x.shape[0], *x.shape[1:]))]) if x.shape[0] < rows else x


def gather_global_batch(
    image: dict[str, torch.Tensor],
    genetics: dict[str, torch.Tensor],
    available: dict[str, torch.Tensor],
    person: torch.Tensor,
    person_code: torch.Tensor,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Every rank's {m: (B, D)} images and {m: (U, D)} genetics as one global batch (identity on one
    process).

    ``person_code`` (U,) identifies people across ranks; a person seen on several ranks keeps the row of
    the first rank and the copies are marked unavailable.
    """
    if not D.is_distributed():
        return image, genetics, available, person
    rows = person.shape[0]
    if person_code.shape[0] > rows:
        raise ValueError("more distinct people than images in a batch")
    image_all = {m: D.all_gather_with_grad(v) for m, v in image.items()}
    person_all = D.all_gather_with_grad(person + D.rank() * rows)
    codes = D.all_gather_with_grad(_pad_rows(person_code + 1, rows))  # 0 = padding
    # Each row points at the first row holding the same person (padding rows at themselves), on device.
    position = torch.arange(codes.numel(), device=codes.device)
    distinct, which = torch.unique(codes, return_inverse=True)
    first_row = torch.full_like(distinct, codes.numel()).scatter_reduce(0, which, position, "amin")
    remap = torch.where(codes == 0, position, first_row[which])
    first = (remap == position) & (codes != 0)
    person_all = remap[person_all]
    genetics_all = {m: D.all_gather_with_grad(_pad_rows(g, rows)) for m, g in genetics.items()}
    available_all = {
        m: (D.all_gather_with_grad(_pad_rows(a.float(), rows)) > 0.5) & first for m, a in available.items()
    }
    return image_all, genetics_all, available_all, person_all


def pretrain_loss(config: PretrainConfig):
    """The trainer's ``loss_fn``: model forward on the batch, gathered, then the contrastive terms."""

    def loss_fn(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        out = model(batch["images"], batch["genetics"], batch["available"])
        image, genetics, available, person = gather_global_batch(
            out["image"], out["genetics"], batch["available"], batch["person"], batch["person_code"]
        )
        terms = contrastive_loss(
            {m: v.float() for m, v in image.items()},
            {m: g.float() for m, g in genetics.items()},
            available,
            person,
            out["logit_scale"],
            alpha=config.alpha,
            kind=config.loss,
            mode=config.loss_mode,
            logit_bias=out["logit_bias"],
        )
        if config.loss == "infonce":
            chance = chance_level(available, person, alpha=config.alpha, mode=config.loss_mode)["chance"]
            terms["chance"] = torch.tensor(chance)
        return terms

    return loss_fn


class CodedCollate(MultimodalCollate):
    """``MultimodalCollate`` plus ``person_code`` (U,): a person's index in the whole cohort."""

    def __init__(
        self,
        record: GeneticRecord,
        modalities,
        codes: dict[str, int],
        genetics_of: dict[str, str] | None = None,
    ):
        super().__init__(record, modalities, genetics_of)
        self.codes = codes

    def __call__(self, items):
        batch = super().__call__(items)
        batch["person_code"] = torch.tensor([self.codes[i] for i in batch["iids"]], dtype=torch.long)
        return batch


def _validation(config: PretrainConfig, dataset: MultimodalDataset, collate):
    """``eval_fn``: loss, chance and loss − chance on seeded batches of distinct held-out people."""

    def eval_fn(model: nn.Module) -> dict[str, float]:
        terms = contrastive_evaluation(model, dataset, collate, config.batch_size, config.alpha, config.seed)
        return validation_metrics(terms, "val")

    return eval_fn


def param_groups(model: ContIG, config: PretrainConfig) -> list[dict]:
    """One AdamW: image tower/head at ``lr``, genetic towers/heads at ``lr × genetic_lr_scale``; no
    weight decay on biases, norms and the temperature."""
    groups: dict[tuple[float, float], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr = config.lr * (config.genetic_lr_scale if name.startswith("genetic_") else 1.0)
        decay = config.weight_decay if parameter.dim() >= 2 else 0.0
        groups.setdefault((lr, decay), []).append(parameter)
    return [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]


@dataclass
class PretrainParts:
    """What a pretraining run is made of (built by :func:`prepare_pretraining`)."""

    model: ContIG
    train: MultimodalDataset
    val: MultimodalDataset | None
    collate: CodedCollate
    record: GeneticRecord
    inputs: dict
    evaluation: dict[str, MultimodalDataset]


def _check_before_training(config: PretrainConfig, manifest: pd.DataFrame, splits: pd.DataFrame) -> None:
    """What would otherwise fail minutes in: encoder names, and every image the run reads."""
    if not is_image_encoder(config.image_encoder):
        raise UnknownNameError(
            f"image_encoder={config.image_encoder!r} is neither a contig encoder nor a timm model; "
            "see imaging.list_encoders() or timm.list_models()"
        )
    unknown = sorted(set(config.towers.values()) - set(list_genetic_encoders()))
    if unknown:
        raise ContigError(
            f"towers: unknown genetic encoder(s) {unknown}; choose from {list_genetic_encoders()}"
        )
    used = set(splits.loc[splits["split"].isin([config.train_split, config.val_split]), "IID"])
    check_images(manifest[manifest["IID"].isin(used)], image_settings_for(manifest).columns)


def prepare_pretraining(config: PretrainConfig) -> PretrainParts:
    """Build (or reuse) the genetic inputs and assemble datasets, collate and model."""
    data, run = Path(config.data), Path(config.out)
    manifest = read_manifest(data / "manifest.parquet")
    splits = person_splits(config)
    _check_before_training(config, manifest, splits)
    train_people = splits.loc[splits["split"] == config.train_split, "IID"]
    if D.is_main_process():
        inputs = build_genetic_inputs(data, run / INPUTS_DIR, train_people, config.genetic)
    D.barrier()
    inputs = build_genetic_inputs(data, run / INPUTS_DIR, train_people, config.genetic)
    record = open_genetic_record(run / INPUTS_DIR)
    modalities = tuple(config.genetic.modalities)
    settings = image_settings_for(manifest)
    train_images = _with_genetics(
        _images_of(manifest, splits, config.train_split), record, modalities, config.loss_mode
    )
    if train_images.empty:
        raise ContigError(
            f"{data}: no training images of people with genetic data (split {config.train_split!r})"
        )
    val_images = _images_of(manifest, splits, config.val_split)
    codes = {iid: i for i, iid in enumerate(pd.unique(manifest["IID"]))}
    train = MultimodalDataset(train_images, ImageConfig(settings.columns, augment=config.augment))
    val = MultimodalDataset(val_images, settings) if len(val_images) else None
    evaluation = {config.train_split: MultimodalDataset(train_images, settings)}
    for split in sorted(set(splits["split"]) - {config.train_split}):  # val, and e.g. test: never trained on
        images = _images_of(manifest, splits, split)
        if len(images):
            evaluation[split] = MultimodalDataset(images, settings)
    in_chans = train[0]["image"].shape[0]
    torch.manual_seed(config.seed)
    model = build_model(config, record.num_features, in_chans)
    genetics_of = (
        permuted_genetics(record, pd.unique(train_images["IID"]), modalities, config.seed)
        if config.permute_genetics
        else None
    )
    train_collate = CodedCollate(record, modalities, codes, genetics_of)
    return PretrainParts(model, train, val, train_collate, record, inputs, evaluation)


def permuted_genetics(
    record: GeneticRecord, iids: np.ndarray, modalities: tuple[str, ...], seed: int
) -> dict[str, str]:
    """IID → the IID whose genetic record that person receives: a seeded permutation within each group of
    people with the same available modalities, so availability (and the images) stay as they are."""
    availability = record.availability(np.asarray(iids, dtype=str))[list(modalities)]
    rng = np.random.default_rng([seed, 0x9E3779B9])
    alias: dict[str, str] = {}
    for _, group in availability.groupby(list(modalities), sort=True):
        people = np.asarray(iids, dtype=str)[group.index.to_numpy()]
        alias.update(zip(people, people[rng.permutation(people.size)], strict=True))
    return alias


def pretrain(config: PretrainConfig, resume: bool = False) -> dict:
    """Train ContIG as configured; returns the trainer's summary (step, best value, last row)."""
    from imaging.training import Trainer

    parts = prepare_pretraining(config)
    loss_fn = pretrain_loss(config)
    own_genetics = CodedCollate(parts.record, parts.collate.modalities, parts.collate.codes)
    eval_fn = _validation(config, parts.val, own_genetics) if parts.val is not None else None
    if eval_fn is None and config.monitor == "val_loss":  # no validation people: monitor the training loss
        config = dataclasses.replace(config, monitor="loss")
    trainer = Trainer(
        parts.model,
        loss_fn,
        parts.train,
        config,
        eval_fn=eval_fn,
        param_groups=param_groups(parts.model, config),
        collate_fn=parts.collate,
    )
    summary = trainer.fit(resume=resume)
    if config.loss == "infonce" and D.is_main_process():
        summary["evaluation"] = evaluate_run(parts, own_genetics, config)
    return summary


def evaluate_run(parts: PretrainParts, collate: CodedCollate, config: PretrainConfig) -> dict:
    """Loss − chance of the best (else last) weights on each split's people → ``evaluation.json``."""
    run = Path(config.out)
    weights = run / ckpt.BEST if (run / ckpt.BEST).is_file() else run / ckpt.LAST
    if weights.is_file():
        ckpt.load_weights(parts.model, weights)
    result: dict = {"weights": weights.name, "permute_genetics": config.permute_genetics, "splits": {}}
    frames = []
    for split, dataset in parts.evaluation.items():
        terms = contrastive_evaluation(
            parts.model, dataset, collate, config.batch_size, config.alpha, config.seed
        )
        result["splits"][split] = summarise_excess(terms, config.eval_boot, config.seed)
        frames.append(terms.assign(split=split))
    with atomic_path(run / EVALUATION_TERMS) as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
    splits = result["splits"]
    train = splits.get(config.train_split, {})
    result["memorisation_gap"] = {  # per held-out split and modality: its excess minus training excess
        split: {m: entry["excess"] - train[m]["excess"] for m, entry in values.items() if m in train}
        for split, values in splits.items()
        if split != config.train_split
    }
    atomic_write_text(run / EVALUATION_FILE, json.dumps(result, indent=2))
    return result
