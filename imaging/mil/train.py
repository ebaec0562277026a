"""Training the MIL caries model: its configuration and the runner behind ``contig mil train``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imaging.training.config import TrainingConfig


@dataclass
class MILConfig(TrainingConfig):
    """``contig mil train`` configuration: the shared training fields plus data, model and guidance."""

    out: str = "runs/mil"
    epochs: int | None = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    data: str = ""  # labels CSV (image, label[, mask])
    val_data: str | None = None  # optional validation CSV; then monitor defaults to val_auroc
    image_col: str = "image"
    label_col: str = "label"
    mask_col: str = "mask"
    flip: bool = True
    backbone: str = "resnet18"
    pretrained: str | None = None  # local backbone checkpoint; never downloaded
    pooling: Literal["interpretable", "attention", "mean", "max"] = "interpretable"
    num_classes: int = 1
    feature_stride: int | None = 8
    patch_size: int = 2
    patch_stride: int | None = None
    embed_dim: int = 128
    attention_dim: int = 64
    k_min: float = 1.0
    attention_bias: float = -2.0  # initial attention logit bias (σ(−2) ≈ 0.12)
    dropout: float = 0.0
    guide_patch: float = 1.0  # weight of the patch-probability guidance on images with masks
    guide_attention: float = 0.5  # weight of the attention guidance
    min_coverage: float = 0.0  # a patch is a lesion patch when more than this fraction is lesion


_MODEL_KEYS = (
    "num_classes",
    "feature_stride",
    "patch_size",
    "patch_stride",
    "embed_dim",
    "attention_dim",
    "k_min",
    "attention_bias",
    "dropout",
)


def train_mil(config: MILConfig, resume: bool = False) -> dict[str, Any]:
    """Train the configured MIL model on ``config.data`` (labels CSV: image, label[, mask]).

    With ``config.val_data`` the validation AUROC is monitored (``best``). Returns the trainer's result.
    """
    import torch

    from imaging.mil.data import MILFolderDataset
    from imaging.mil.evaluate import make_eval_fn
    from imaging.mil.losses import MILLoss
    from imaging.mil.model import create_mil_model, save_model_config
    from imaging.training import Trainer

    if config.val_data and config.monitor == "loss":
        config = dataclasses.replace(config, monitor="val_auroc", mode="max")
    dataset_args = {
        "image_col": config.image_col,
        "label_col": config.label_col,
        "mask_col": config.mask_col,
        "num_classes": config.num_classes,
    }
    train_data = MILFolderDataset(config.data, flip=config.flip, **dataset_args)
    eval_fn = make_eval_fn(MILFolderDataset(config.val_data, **dataset_args)) if config.val_data else None
    torch.manual_seed(config.seed)  # the model's initialisation
    model = create_mil_model(
        config.pooling,
        backbone=config.backbone,
        pretrained=config.pretrained or False,
        **{key: getattr(config, key) for key in _MODEL_KEYS},
    )
    loss_fn = MILLoss(config.guide_patch, config.guide_attention, config.min_coverage)
    if resume or not (Path(config.out) / "last.state.safetensors").is_file():
        save_model_config(model, config.out)  # else the trainer refuses to overwrite the run
    return Trainer(model, loss_fn, train_data, config, eval_fn=eval_fn).fit(resume=resume)
