"""Loading the encoder that ``contig ssl`` pretrained, for fine-tuning or feature extraction."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import create_encoder
from imaging.training.checkpoint import read_weights

ENCODER_PREFIX = "encoder."


def load_pretrained_encoder(run_dir: str | os.PathLike, checkpoint: str = "best") -> nn.Module:
    """Rebuild the encoder of an ``contig ssl`` run from its ``config.yaml`` and load its weights.

    Args:
        run_dir: the run directory (``config.yaml`` with ``encoder`` and ``encoder_kwargs``).
        checkpoint: ``"best"`` or ``"last"`` (``<checkpoint>.safetensors``, keys prefixed ``encoder.``).
    """
    run = Path(run_dir)
    config_path, weights_path = run / "config.yaml", run / f"{checkpoint}.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ImagingError(
            f"{run}: not a finished ssl run (needs config.yaml and {weights_path.name}); "
            "pass the --out folder of `contig ssl`"
        )
    config = yaml.safe_load(config_path.read_text()) or {}
    if not config.get("encoder"):
        raise ImagingError(f"{config_path} names no encoder; was it written by `contig ssl`?")
    encoder = create_encoder(config["encoder"], **(config.get("encoder_kwargs") or {}))
    weights = read_weights(weights_path)
    state = {k.removeprefix(ENCODER_PREFIX): v for k, v in weights.items() if k.startswith(ENCODER_PREFIX)}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected or not state:
        raise ImagingError(
            f"{weights_path} does not fit encoder {config['encoder']!r} of {config_path} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys); the run folder may be mixed up"
        )
    return encoder


__all__ = ["ENCODER_PREFIX", "load_pretrained_encoder"]
