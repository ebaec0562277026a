"""Loading the encoder that ``contig ssl`` pretrained, for fine-tuning or feature extraction."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import create_encoder
from imaging.ssl.train import SslConfig
from imaging.training.checkpoint import read_weights
from imaging.training.run_folder import checkpoint_file, config_file, load_run_config

ENCODER_PREFIX = "encoder."
SSL_COMMAND = "contig ssl"


def read_ssl_config(run_dir: str | os.PathLike) -> SslConfig:
    """The resolved ``SslConfig`` of a ``contig ssl`` run (``config.yaml``, naming an ``encoder``).

    Raises:
        ConfigError: the folder holds no ``config.yaml``, or that of another command.
    """
    return load_run_config(run_dir, SslConfig, SSL_COMMAND, required=("encoder",))


def load_pretrained_encoder(run_dir: str | os.PathLike, checkpoint: str = "best") -> nn.Module:
    """Rebuild the encoder of an ``contig ssl`` run from its ``config.yaml`` and load its weights.

    Args:
        run_dir: the run directory (``config.yaml`` with ``encoder`` and ``encoder_kwargs``).
        checkpoint: ``"best"`` or ``"last"`` (``<checkpoint>.safetensors``, keys prefixed ``encoder.``).
    """
    run = Path(run_dir)
    config_path, weights_path = config_file(run), checkpoint_file(run, checkpoint)
    if not config_path.is_file() or not weights_path.is_file():
        raise ImagingError(
            f"{run}: not a finished ssl run (needs {config_path.name} and {weights_path.name}); "
            "pass the --out folder of `contig ssl`"
        )
    config = read_ssl_config(run)
    encoder = create_encoder(config.encoder, **config.encoder_kwargs)
    weights = read_weights(weights_path)
    state = {k.removeprefix(ENCODER_PREFIX): v for k, v in weights.items() if k.startswith(ENCODER_PREFIX)}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected or not state:
        raise ImagingError(
            f"{weights_path} does not fit encoder {config.encoder!r} of {config_path} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys); the run folder may be mixed up"
        )
    return encoder


def untrained_tensors(
    initial: dict[str, torch.Tensor], trained: dict[str, torch.Tensor], tolerance: float = 1e-6
) -> list[str]:
    """Names of the floating-point tensors of ``initial`` that training did not move by a gradient.

    A tensor counts as untrained when ``trained`` equals ``c × initial`` for one scalar ``c`` up to
    ``tolerance`` (relative to its norm): that is what weight decay alone does to a weight without
    gradient (unchanged is ``c = 1``). Both are state dicts of the same encoder.

    >>> w = {"conv.weight": torch.ones(2, 3)}
    >>> untrained_tensors(w, {"conv.weight": 0.99 * torch.ones(2, 3)})
    ['conv.weight']
    >>> untrained_tensors(w, {"conv.weight": torch.tensor([[1.0, 1.1, 1.0], [1.0, 1.0, 1.0]])})
    []
    """
    names = []
    for name, before in initial.items():
        if not before.is_floating_point() or name not in trained:
            continue
        a, b = before.detach().double().flatten(), trained[name].detach().double().flatten()
        norm = float(a.norm())
        if norm == 0.0:
            moved = float(b.norm()) > tolerance
        else:
            scale = float(a @ b) / norm**2
            moved = float((b - scale * a).norm()) > tolerance * norm
        if not moved:
            names.append(name)
    return names


__all__ = ["ENCODER_PREFIX", "SSL_COMMAND", "load_pretrained_encoder", "read_ssl_config", "untrained_tensors"]
