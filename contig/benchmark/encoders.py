"""Encoder sources by name, and encoding images into frozen features.

| source                      | encoder                                                                  |
|-----------------------------|--------------------------------------------------------------------------|
| ``random:<name>``           | ``imaging.registry.create_encoder(name)``, random init (seeded)          |
| ``timm:<model>``            | a timm model, ``pretrained=False``; ``weights`` = an optional local file  |
| ``ssl:<run dir>``           | ``imaging.finetune.load_pretrained_encoder(run_dir)`` (``contig ssl``)    |
| ``contig:<run dir>``        | ``contig.embed.load_image_encoder(run_dir)`` (``contig pretrain``)        |
| ``features:<file.parquet>`` | precomputed features, e.g. from ``contig embed`` (no encoder)            |

Nothing is downloaded. The pretrained loaders are imported when used.

>>> encoder = load_encoder("random:resnet18", in_chans=1)
>>> encoder.num_features
512
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contig.benchmark.errors import BenchmarkError
from imaging.training.distributed import resolve_device

SOURCE_KINDS = ("random", "timm", "ssl", "contig", "features")
# source kind → (module, function) of a loader taking the run directory


def parse_source(source: str) -> tuple[str, str]:
    """``"random:resnet18"`` → ``("random", "resnet18")``; an unknown kind is a BenchmarkError."""
    kind, sep, target = source.partition(":")
    if not sep or kind not in SOURCE_KINDS or not target:
        raise BenchmarkError(
            f"encoder source {source!r} is not <kind>:<target> with kind one of {', '.join(SOURCE_KINDS)}; "
            "e.g. random:resnet18, timm:convnext_atto, ssl:runs/ssl, contig:runs/pretrain, features:f.parquet"
        )
    return kind, target


def load_encoder(
    source: str, in_chans: int = 3, weights: str | os.PathLike | None = None, seed: int = 0
) -> nn.Module:
    """Build the image encoder named by ``source`` (module table); ``seed`` fixes a random initialisation.

    Returns: a module with ``num_features`` and ``forward_features(x) -> (B, num_features)``, in eval mode.
    """
    kind, target = parse_source(source)
    if kind == "features":
        raise BenchmarkError(
            f"{source!r} names precomputed features, not an encoder; it supports probes only"
        )
    if weights is not None and kind != "timm":
        raise BenchmarkError(f"{source!r}: a weights file applies to timm: sources only; remove 'weights'")
    torch.manual_seed(seed)
    if kind in ("random", "timm"):
        from imaging.errors import UnknownNameError
        from imaging.registry import create_encoder

        if kind == "timm":
            from imaging.encoders_2d import TimmEncoder, is_timm_model

            if not is_timm_model(target):
                raise BenchmarkError(
                    f"{source!r}: {target!r} is not a timm model name (see timm.list_models())"
                )
            if weights is not None and not Path(weights).is_file():
                raise BenchmarkError(f"{source!r}: weights file {weights} does not exist; give a local file")
            encoder = TimmEncoder(target, in_chans=in_chans, pretrained=str(weights) if weights else False)
        else:
            try:
                encoder = create_encoder(target, in_chans=in_chans)
            except UnknownNameError as error:
                raise BenchmarkError(f"{source!r}: {error}") from None
    else:
        encoder = _run_loader(kind)(target)
    _check_interface(encoder, source)
    return encoder.eval()


def _run_loader(kind: str):
    """The loader of a run folder's encoder: ``contig ssl`` runs or ``contig pretrain`` runs (imported on
    use, so the harness imports without torch-heavy modules it may not need)."""
    if kind == "ssl":
        from imaging.finetune import load_pretrained_encoder

        return load_pretrained_encoder
    from contig.embed import load_image_encoder

    return load_image_encoder


def _check_interface(encoder: nn.Module, source: str) -> None:
    if not hasattr(encoder, "forward_features") or not hasattr(encoder, "num_features"):
        raise BenchmarkError(f"{source!r}: the loaded encoder lacks forward_features/num_features")


@torch.no_grad()
def encode(
    encoder: nn.Module, images: torch.Tensor, batch_size: int = 64, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Frozen features of (N, C, H, W) or (N, C, D, H, W) images → (N, num_features) float64."""
    device = resolve_device(device) if isinstance(device, str) else device
    was_training = encoder.training
    encoder = encoder.to(device).eval()
    chunks = [
        encoder.forward_features(images[i : i + batch_size].to(device, torch.float32)).float().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    encoder.train(was_training)
    if not chunks:
        return np.zeros((0, int(encoder.num_features)))
    return torch.cat(chunks).double().numpy()
