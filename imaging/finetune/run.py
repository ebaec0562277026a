"""One fine-tuning run: configuration, model set-up, frozen-encoder warm-up, training and held-out scores.

``finetune(config)`` opens ``config.data``, splits it by person (the layout's split when it has one,
else a seeded 70/15/15 split that is the same for every fine-tuning seed), keeps a ``label_fraction`` of
the training persons, builds a U-Net segmenter or a classifier whose encoder comes from
``config.pretrained`` (or is random for ``pretrained: none``), trains it with ``imaging.training.Trainer``
and writes ``results.json`` with the held-out scores (``imaging.finetune.evaluate``) into the run directory.

The transfer protocol is the same for every initialisation, so scratch and pretrained runs compare as
converged models: training runs until the validation metric (``val_dice``; QWK/AUROC for classification)
has not improved for ``patience`` evaluations, ``max_steps`` being only a cap, and the best checkpoint is
restored before the test split is scored. A pretrained encoder is frozen for the first ``freeze_steps``
steps (warm-up of the random decoder/head); a random encoder is never frozen. Test Dice is computed per
volume and averaged over volumes, per class and overall, with 95 % bootstrap intervals over volumes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imaging.errors import ImagingError
from imaging.finetune.data import (
    ClassificationItems,
    class_targets,
    count_classes,
    split_by_person,
    subsample_by_person,
)
from imaging.finetune.early_stopping import EarlyStopping, StopWhenStale
from imaging.finetune.evaluate import classification_scores, segmentation_scores
from imaging.finetune.models import (
    build_classifier,
    build_segmenter,
    load_pretrained_encoder,
    set_encoder_trainable,
    transfer_encoder_weights,
)
from imaging.io import atomic_target
from imaging.registry import create_encoder
from imaging.training.config import ConfigError, TrainingConfig

DEFAULT_ENCODERS = {2: "unet2d", 3: "unet3d"}
RESULTS = "results.json"
RELIABILITY = "reliability.png"  # MC-dropout reliability diagram of the test voxels (--mc-samples > 1)


@dataclass
class FinetuneConfig(TrainingConfig):
    """``contig finetune`` configuration: the shared training fields plus data, transfer and evaluation."""

    out: str = "runs/finetune"
    epochs: int | None = None
    max_steps: int | None = 3000  # a cap: training normally ends by early stopping (patience)
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    log_every: int = 10
    eval_every: int = 25
    patience: int = 8  # evaluations without a better validation metric that end training; 0: run to the cap
    checkpoint_every: int = 0
    task: Literal["segment", "classify"] = "segment"
    data: str = ""  # image folder: flat NIfTI/PNG, Medical Segmentation Decathlon or synthetic biobank
    dim: int = 3
    pretrained: str | None = None  # run directory of `contig ssl`; None (or "none") trains from scratch
    checkpoint: Literal["best", "last"] = "best"
    encoder: str | None = None  # scratch only: default unet3d / unet2d (a pretrained run names its own)
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, ...] | None = (32, 32, 32)  # (D, H, W), or (H, W) for dim 2
    modalities: list[str] | None = None
    target_spacing: tuple[float, float, float] | None = None
    normalize: str = "zscore"
    label_fraction: float = 1.0  # share of the training persons whose labels are used
    split_seed: int = 0  # the train/val/test split (fixed across fine-tuning seeds)
    target: str = "grade"  # classification: the table column with the class (grade or finding)
    num_classes: int | None = None  # None: the layout's class names, else 1 + the largest label
    freeze_steps: int = 20  # pretrained only: steps with the encoder frozen (warm-up of the new head)
    dropout: float = 0.0  # decoder/head dropout (and encoder dropout of U-Nets); > 0 for MC dropout
    dice_weight: float = 1.0  # segmentation loss = cross-entropy + dice_weight × soft Dice (foreground)
    mc_samples: int = 1  # > 1: MC dropout at evaluation, entropy/variance NIfTI maps for volumes
    eval_batch_size: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = []
        if self.dim not in (2, 3):
            problems.append(f"dim must be 2 or 3 (got {self.dim})")
        if not 0 < self.label_fraction <= 1:
            problems.append(f"label_fraction must be in (0, 1] (got {self.label_fraction})")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.mc_samples < 1 or self.freeze_steps < 0 or self.patience < 0:
            problems.append("mc_samples must be >= 1, freeze_steps and patience >= 0")
        if self.patience > 0 and self.eval_every < 1:
            problems.append(
                "early stopping (patience > 0) needs eval_every >= 1; set eval_every or patience=0"
            )
        if problems:
            raise ConfigError("invalid finetune config: " + "; ".join(problems))
        if isinstance(self.pretrained, str) and self.pretrained.lower() in ("", "none", "scratch"):
            self.pretrained = None


class SegmentationLoss:
    """Cross-entropy + soft Dice over the foreground classes; the one-hot width is fixed (``num_classes``)."""

    def __init__(self, num_classes: int, dice_weight: float = 1.0):
        self.num_classes, self.dice_weight = num_classes, dice_weight

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch  # (B, C, *S), (B, *S)
        logits = model(images)  # (B, K, *S)
        ce = F.cross_entropy(logits, labels)
        probs = torch.softmax(logits.float(), dim=1)
        onehot = F.one_hot(labels, self.num_classes).movedim(-1, 1).float()
        axes = (0, *range(2, logits.dim()))
        intersection = (probs * onehot).sum(axes)
        dice = (2 * intersection + 1e-5) / (probs.sum(axes) + onehot.sum(axes) + 1e-5)  # (K,)
        soft_dice = 1 - dice[1:].mean()
        return {"loss": ce + self.dice_weight * soft_dice, "ce": ce.detach(), "soft_dice": soft_dice.detach()}


def classification_loss(model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
    images, targets = batch  # (B, C, *S), (B,)
    logits = model(images)
    loss = F.cross_entropy(logits, targets)
    return {"loss": loss, "train_accuracy": (logits.argmax(1) == targets).float().mean().detach()}


class FrozenWarmup:
    """Wrap a ``loss_fn``: the encoder is frozen while the trainer's step is below ``freeze_steps``.

    The step is read from the trainer (``self.trainer``, set after it is built), so a resumed run
    unfreezes at the same step. Frozen parameters get no gradient, and AdamW skips them.
    """

    def __init__(self, loss_fn: Any, model: nn.Module, freeze_steps: int):
        self.loss_fn, self.model, self.freeze_steps = loss_fn, model, freeze_steps
        self.trainer: Any = None
        self.frozen: bool | None = None

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        step = 0 if self.trainer is None else self.trainer.step
        frozen = step < self.freeze_steps
        if frozen != self.frozen:
            set_encoder_trainable(self.model, not frozen)
            self.frozen = frozen
        terms = dict(self.loss_fn(model, batch))
        terms["encoder_frozen"] = torch.tensor(float(frozen))
        return terms


def build_encoder(config: FinetuneConfig, in_chans: int) -> tuple[FinetuneConfig, nn.Module, dict[str, Any]]:
    """The encoder to fine-tune: pretrained weights transferred (checksum-checked) or random.

    Returns the configuration with ``encoder``/``encoder_kwargs`` resolved, the encoder and a transfer
    summary (``{"init": "scratch"}`` or ``{"init": run, "matched": n, "total": m}``).
    """
    if config.pretrained is None:
        name = config.encoder or DEFAULT_ENCODERS[config.dim]
        kwargs = dict(config.encoder_kwargs)
        source = None
    else:
        from imaging.ssl.pretrained import read_ssl_config

        source = load_pretrained_encoder(config.pretrained, config.checkpoint)  # checks the run folder
        run_config = read_ssl_config(config.pretrained)
        name, kwargs = str(run_config.encoder), dict(run_config.encoder_kwargs)
    if kwargs.setdefault("in_chans", in_chans) != in_chans:
        raise ImagingError(
            f"the encoder takes {kwargs['in_chans']} channel(s) but {config.data} has {in_chans}; "
            "choose the modalities the encoder was pretrained on (modalities=[...])"
        )
    if name.startswith("unet") and config.dropout > 0:
        kwargs["dropout"] = config.dropout  # dropout layers hold no weights: the transfer is unaffected
    encoder = create_encoder(name, **kwargs)
    summary: dict[str, Any] = {"init": "scratch"}
    if source is not None:
        report = transfer_encoder_weights(source.state_dict(), encoder)
        summary = {"init": str(config.pretrained), "matched": report.matched, "total": report.total}
    resolved = dataclasses.replace(config, encoder=name, encoder_kwargs=kwargs)
    return resolved, encoder, summary


def finetune(config: FinetuneConfig, resume: bool = False) -> dict[str, Any]:
    """Fine-tune on ``config.data`` and score the held-out test split; see the module docstring.

    Returns the contents of ``results.json``: ``task``, ``init``, ``label_fraction``, ``seed``, the numbers
    of training/validation/test items, the transfer summary, the effective ``freeze_steps``, how training
    ended (``best_step``, ``steps``, ``stopped_early``) and the ``test`` scores of the restored best model.
    """
    from imaging.datasets import open_image_folder
    from imaging.training import Trainer
    from imaging.training.checkpoint import BEST, LAST, load_weights

    if not config.data:
        raise ImagingError("no image folder given; pass --data DIR (or data=DIR)")
    segment = config.task == "segment"
    dataset = open_image_folder(
        config.data,
        dim=config.dim,
        modalities=config.modalities,
        target_spacing=config.target_spacing,
        size=config.size,
        normalize=config.normalize,
        with_labels=segment,
        cache=True,
    )
    table = dataset.table
    given = table["split"].tolist() if "split" in table.columns else None
    splits = split_by_person(dataset.ids, seed=config.split_seed, given=given)
    if segment:
        num_classes = config.num_classes or count_classes(dataset, dataset.class_names)
        strata = None
    else:
        targets = class_targets(table, config.target, config.data)
        num_classes = config.num_classes or max(2, int(targets.max()) + 1)
        strata = targets[splits["train"]]
    train_ids = [dataset.ids[i] for i in splits["train"]]
    chosen = splits["train"][subsample_by_person(train_ids, config.label_fraction, config.seed, strata)]
    parts = {"train": chosen, "val": splits["val"], "test": splits["test"]}
    for name, indices in parts.items():
        if len(indices) == 0:
            raise ImagingError(f"{config.data}: the {name} split is empty; add persons or change the split")
    data = {name: dataset.subset(indices) for name, indices in parts.items()}
    if not segment:
        data = {name: ClassificationItems(data[name], targets[parts[name]]) for name in data}

    torch.manual_seed(config.seed)  # encoder (scratch) and decoder/head initialisation
    config, encoder, transfer = build_encoder(config, dataset.in_chans)
    if segment:
        model: nn.Module = build_segmenter(encoder, num_classes, config.dropout)
        loss_fn: Any = SegmentationLoss(num_classes, config.dice_weight)
        monitor = "val_dice"
    else:
        model = build_classifier(encoder, num_classes, config.dropout)
        loss_fn = classification_loss
        monitor = "val_qwk" if num_classes > 2 else "val_auroc"
    if config.monitor == "loss":
        config = dataclasses.replace(config, monitor=monitor, mode="max")
    config = dataclasses.replace(config, num_classes=num_classes)
    device = torch.device("cpu")

    def score(
        model: nn.Module,
        split: str,
        mc_samples: int = 1,
        maps_dir: Path | None = None,
        intervals: bool = False,
        reliability_png: Path | None = None,
    ) -> dict:
        if segment:
            return segmentation_scores(
                model,
                data[split],
                num_classes,
                dataset.class_names,
                config.eval_batch_size,
                device,
                mc_samples,
                maps_dir,
                ids=data[split].ids,
                spacing=config.target_spacing,
                intervals=intervals,
                reliability_png=reliability_png,
            )
        return classification_scores(
            model, data[split], num_classes, config.eval_batch_size, device, mc_samples
        )

    def eval_fn(model: nn.Module) -> dict[str, float]:
        return {f"val_{key}": value for key, value in score(model, "val").items()}

    # A random encoder has nothing to protect from the random decoder's first gradients: never frozen.
    freeze_steps = config.freeze_steps if config.pretrained is not None else 0
    warmup = FrozenWarmup(loss_fn, model, freeze_steps)
    stopper = None
    if config.patience > 0:
        rule = EarlyStopping(config.patience, config.eval_every, config.mode)
        stopper = StopWhenStale(eval_fn, config.monitor, rule)
    trainer = Trainer(model, warmup, data["train"], config, eval_fn=stopper or eval_fn)
    warmup.trainer, device = trainer, trainer.device
    if stopper is not None:
        stopper.trainer = trainer
    fit = trainer.fit(resume=resume)
    stopped = stopper is not None and stopper.rule.stopped_step is not None
    if stopped:  # every rank: the save gathers per-rank state, rank 0 writes
        trainer._save_last()  # the loop ended before its own final save; keep last/state a pair
    set_encoder_trainable(model, True)
    run = Path(config.out)
    load_weights(model, run / (BEST if (run / BEST).is_file() else LAST))
    maps = run / "mc_maps" if config.mc_samples > 1 and segment and config.dim == 3 else None
    reliability = run / RELIABILITY if config.mc_samples > 1 and segment else None
    test = score(model, "test", config.mc_samples, maps, intervals=True, reliability_png=reliability)
    persons = {dataset.ids[i] for i in chosen}
    results = {
        "task": config.task,
        "init": transfer["init"],
        "label_fraction": config.label_fraction,
        "seed": config.seed,
        "num_classes": num_classes,
        "n_train_items": int(len(chosen)),
        "n_train_persons": len(persons),
        "n_val_items": int(len(parts["val"])),
        "n_test_items": int(len(parts["test"])),
        "transfer": transfer,
        "freeze_steps": freeze_steps,
        "monitor": config.monitor,
        "best_step": fit["best_step"],
        "best_value": fit["best_value"],
        "steps": fit["step"],
        "max_steps": config.max_steps,
        "stopped_early": bool(stopped),
        "patience": config.patience,
        "eval_every": config.eval_every,
        "test": test,
    }
    _write_json(run / RESULTS, results)
    return results


def headline_metric(task: str, num_classes: int) -> str:
    """The metric reported first: foreground Dice, QWK for graded (K > 2) or AUROC for binary targets."""
    if task == "segment":
        return "dice"
    return "qwk" if num_classes > 2 else "auroc"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


__all__ = [
    "FinetuneConfig",
    "FrozenWarmup",
    "RELIABILITY",
    "RESULTS",
    "SegmentationLoss",
    "build_encoder",
    "classification_loss",
    "finetune",
    "headline_metric",
]
