"""``contig embed``: trunk (pre-projection) image features of a pretraining run, per image and per person.

Features are what GWAS and downstream probes use: the image tower's pooled output, before the
projection head (projection heads discard what the contrastive task does not need; Chen et al. 2020).
A person's features are the mean over their images (two eyes, two visits).

Usage, on the folder of a finished ``contig pretrain`` (not run as a doctest: it needs one)::

    from contig.embed import embed_images, load_run
    run = load_run("runs/pretrain")
    per_image, per_person = embed_images(run.model.image_tower, manifest)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from contig.dataset import MultimodalDataset, image_settings_for, read_manifest
from contig.errors import ContigError
from contig.genetic_inputs import open_genetic_record
from contig.pretrain import INPUTS_DIR, PretrainConfig, build_model
from genetics.atomic import atomic_path
from genetics.record import GeneticRecord
from imaging.training import checkpoint as ckpt
from imaging.training.distributed import resolve_device
from imaging.training.run_folder import find_checkpoint, load_run_config

FEATURE_PREFIX = "feat_"
PRETRAIN_COMMAND = "contig pretrain"


@dataclass
class LoadedRun:
    """A pretraining run rebuilt from its directory: config, model with weights, genetic record."""

    config: PretrainConfig
    model: nn.Module
    record: GeneticRecord
    weights: Path


def load_run(run_dir: str | os.PathLike, weights: str = "best") -> LoadedRun:
    """Rebuild the model of ``run_dir`` and load its ``best`` (or ``last``) weights, in eval mode."""
    run = Path(run_dir)
    config = load_run_config(run, PretrainConfig, PRETRAIN_COMMAND)
    path = find_checkpoint(run, "best" if weights == "best" else "last", PRETRAIN_COMMAND)
    record = open_genetic_record(run / INPUTS_DIR)
    model = build_model(config, record.num_features, _in_chans(path))
    ckpt.load_weights(model, path)
    return LoadedRun(config, model.eval(), record, path)


def _in_chans(path: Path) -> int:
    """Input channels of the image tower, read from its first convolution's weight shape."""
    for name, tensor in ckpt.read_weights(path).items():
        if name.startswith("image_tower.") and tensor.dim() >= 4:
            return int(tensor.shape[1])
    raise ContigError(f"{path}: no image-tower convolution found; is this a contig pretrain checkpoint?")


def load_image_encoder(run_dir: str | os.PathLike) -> nn.Module:
    """The trained image tower of a run (``num_features``, ``forward_features(x) -> (B, F)``)."""
    return load_run(run_dir).model.image_tower


@torch.no_grad()
def embed_images(
    encoder: nn.Module,
    manifest: pd.DataFrame,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of every manifest image and their mean per person.

    Returns:
        per image: the manifest's non-path columns (IID, eye/visit, ...) + ``feat_000…``;
        per person: ``IID`` + ``feat_000…`` (mean over the person's images), in first-seen order.
    """
    dev = resolve_device(device)
    encoder = encoder.to(dev).eval()
    dataset = MultimodalDataset(manifest, image_settings_for(manifest))
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=lambda items: items
    )
    chunks = []
    for items in tqdm(loader, desc="embed", unit="batch", disable=not progress):
        images = torch.stack([item["image"] for item in items]).to(dev)
        with torch.autocast(dev.type, enabled=dev.type == "cuda"):
            chunks.append(encoder.forward_features(images).float().cpu().numpy())
    features = np.concatenate(chunks).astype(np.float32)
    names = [f"{FEATURE_PREFIX}{k:03d}" for k in range(features.shape[1])]
    keep = [c for c in manifest.columns if not c.startswith("image")]
    per_image = pd.concat(
        [manifest[keep].reset_index(drop=True), pd.DataFrame(features, columns=names)], axis=1
    )
    per_person = per_image.groupby("IID", sort=False)[names].mean().reset_index()
    return per_image, per_person


def embed_run(
    run_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    people: set[str] | None = None,
    **kwargs,
) -> tuple[Path, Path]:
    """``contig embed``: write per-person features to ``out`` and per-image ones beside it
    (``<stem>.images.parquet``), atomically. ``people`` restricts to those IIDs (e.g. held-out ones)."""
    run = load_run(run_dir)
    table = read_manifest(manifest)
    if people is not None:
        table = table[table["IID"].isin(people)].reset_index(drop=True)
    if table.empty:
        raise ContigError(f"{manifest}: no image to embed (after selecting people)")
    per_image, per_person = embed_images(run.model.image_tower, table, **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    images_path = out.with_name(out.name.removesuffix(".parquet") + ".images.parquet")
    for frame, path in ((per_person, out), (per_image, images_path)):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    return out, images_path
