"""Transfer: a pretrained encoder's weights into a U-Net segmenter (decoder random) or a classifier.

``transfer_encoder_weights`` copies every tensor whose name and shape match and proves the copy by a
checksum (the sum of the copied tensors read back from the target equals the source's); it raises when
no tensor matched, the usual sign of a wrong run folder or encoder name.

>>> from imaging.registry import create_encoder
>>> source = create_encoder("unet3d", base_width=2, depth=2)
>>> model = build_segmenter(create_encoder("unet3d", base_width=2, depth=2), num_classes=3)
>>> report = transfer_encoder_weights(source.state_dict(), model.encoder)
>>> report.matched == len(source.state_dict()), report.checksum_ok
(True, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.unet import UNet


class TransferError(ImagingError):
    """Pretrained weights that do not fit the encoder they are transferred into."""


@dataclass(frozen=True)
class TransferReport:
    """What ``transfer_encoder_weights`` copied: counts, skipped names and the checksums."""

    matched: int
    total: int
    skipped: list[str] = field(default_factory=list)
    source_checksum: float = 0.0
    target_checksum: float = 0.0

    @property
    def checksum_ok(self) -> bool:
        return abs(self.source_checksum - self.target_checksum) <= 1e-6 * max(1.0, abs(self.source_checksum))


def state_checksum(state: dict[str, torch.Tensor], keys: list[str] | None = None) -> float:
    """Sum (float64) of all floating-point entries of ``state`` (only ``keys`` when given)."""
    total = 0.0
    for key in keys if keys is not None else sorted(state):
        value = state[key]
        if value.is_floating_point():
            total += float(value.detach().double().sum())
    return total


def transfer_encoder_weights(source: dict[str, torch.Tensor], encoder: nn.Module) -> TransferReport:
    """Copy the tensors of ``source`` that match ``encoder``'s by name and shape into ``encoder``.

    Raises:
        TransferError: no tensor matched, or the checksum read back differs (a silent copy failure).
    """
    target = encoder.state_dict()
    matched = [k for k, v in source.items() if k in target and tuple(target[k].shape) == tuple(v.shape)]
    skipped = sorted(set(target) - set(matched))
    if not matched:
        raise TransferError(
            f"none of the {len(source)} pretrained tensors fits the {type(encoder).__name__} "
            f"({len(target)} tensors, e.g. {', '.join(list(target)[:3])}); check that the run was pretrained "
            "with the same encoder name and encoder_kwargs"
        )
    encoder.load_state_dict({k: source[k] for k in matched}, strict=False)
    after = encoder.state_dict()
    report = TransferReport(
        matched=len(matched),
        total=len(target),
        skipped=skipped,
        source_checksum=state_checksum(source, matched),
        target_checksum=state_checksum(after, matched),
    )
    if not report.checksum_ok:
        raise TransferError(
            f"encoder checksum after transfer {report.target_checksum} != pretrained {report.source_checksum}"
        )
    return report


def load_pretrained_encoder(run_dir: str | os.PathLike, checkpoint: str = "best") -> nn.Module:
    """Rebuild a pretraining run's encoder from its ``config.yaml`` and load its ``encoder.`` weights.

    ``run_dir`` holds ``config.yaml`` (keys ``encoder`` and ``encoder_kwargs``) and
    ``best.safetensors`` / ``last.safetensors`` of the whole task module; ``checkpoint="best"`` falls back
    to ``last`` when the run kept no ``best``.
    """
    from imaging.ssl.pretrained import load_pretrained_encoder as load_ssl_encoder
    from imaging.training.run_folder import checkpoint_file

    run = Path(run_dir)
    if checkpoint == "best" and not checkpoint_file(run, "best").is_file():
        checkpoint = "last"
    return load_ssl_encoder(run, checkpoint)


class Classifier(nn.Module):
    """Encoder + dropout + linear head: (B, C, *S) → (B, num_classes) logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        if not hasattr(encoder, "num_features") or not hasattr(encoder, "forward_features"):
            raise ImagingError(f"{type(encoder).__name__} lacks num_features/forward_features")
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.num_features), num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encoder.forward_features(x)))


def build_segmenter(encoder: nn.Module, num_classes: int, dropout: float = 0.0) -> UNet:
    """A U-Net over ``encoder`` (its weights kept) with a randomly initialised decoder."""
    return UNet(encoder, num_classes, dropout)


def build_classifier(encoder: nn.Module, num_classes: int, dropout: float = 0.0) -> Classifier:
    """``encoder`` + linear head (random)."""
    return Classifier(encoder, num_classes, dropout)


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze the ``model.encoder`` parameters (the warm-up of fine-tuning)."""
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(trainable)


__all__ = [
    "Classifier",
    "TransferError",
    "TransferReport",
    "build_classifier",
    "build_segmenter",
    "load_pretrained_encoder",
    "set_encoder_trainable",
    "state_checksum",
    "transfer_encoder_weights",
]
