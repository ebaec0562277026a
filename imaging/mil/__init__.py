"""imaging.mil: the interpretable, interactive multiple-instance model for caries in bitewing X-rays.

Bergner et al. (2022): a backbone feature map pooled into K patches; a shared per-patch classifier gives
local probabilities p_k (the heatmap) and sigmoid-gated attention gives weights w_k; the image
prediction is ``Σ w_k p_k / max(Σ w_k, k_min)``, made of the heatmap alone. Masks, where some images
have them, guide p_k and w_k; a user region edits w_k at inference. Attention-MIL (Ilse et al.) and
mean/max pooling are baselines behind the same factory.

>>> from imaging.mil import create_mil_model, list_mil_models
>>> list_mil_models()
['attention', 'interpretable', 'max', 'mean']
"""

from __future__ import annotations

from imaging.mil.data import MILFolderDataset, load_images, normalize_image, patch_targets, region_coverage
from imaging.mil.evaluate import evaluate, make_eval_fn
from imaging.mil.export import image_record, overlay, write_json, write_overlay
from imaging.mil.interact import attend, edit_prediction, region_keep
from imaging.mil.losses import MILLoss, attention_guidance_loss, image_loss, patch_guidance_loss
from imaging.mil.model import (
    POOLINGS,
    PatchMIL,
    aggregate,
    create_mil_model,
    list_mil_models,
    load_mil_model,
    save_model_config,
)
from imaging.mil.train import MILConfig, train_mil
from imaging.synthetic.bitewing import render_bitewing, simulate_bitewings

__all__ = [
    "MILConfig",
    "POOLINGS",
    "MILFolderDataset",
    "MILLoss",
    "PatchMIL",
    "aggregate",
    "attend",
    "attention_guidance_loss",
    "create_mil_model",
    "edit_prediction",
    "evaluate",
    "image_loss",
    "image_record",
    "list_mil_models",
    "load_images",
    "load_mil_model",
    "make_eval_fn",
    "normalize_image",
    "overlay",
    "patch_guidance_loss",
    "patch_targets",
    "region_coverage",
    "region_keep",
    "render_bitewing",
    "save_model_config",
    "train_mil",
    "simulate_bitewings",
    "write_json",
    "write_overlay",
]
