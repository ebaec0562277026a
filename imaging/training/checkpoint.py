"""Checkpoints as safetensors only: model weights, and the full training state for an exact resume.

A run directory holds ``last.safetensors`` and ``best.safetensors`` (the model's ``state_dict``) and
``last.state.safetensors``: every tensor of the training state (optimizer moments, RNG states) as a
safetensors tensor, every other value (counters, scheduler numbers, hyper-parameters) as JSON in the
file's metadata. Nothing is pickled, so a checkpoint from an untrusted source can only hold numbers.
Every file is written to a temporary sibling and renamed over the target (``os.replace``).

>>> import tempfile, pathlib, torch
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = save_state(folder / "s.safetensors", {"step": 3, "betas": (0.9, 0.99), "m": {0: torch.ones(2)}})
>>> load_state(folder / "s.safetensors")
{'step': 3, 'betas': (0.9, 0.99), 'm': {0: tensor([1., 1.])}}
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from imaging.errors import ImagingError
from imaging.io import process_umask
from imaging.training.distributed import unwrap_model

LAST = "last.safetensors"
BEST = "best.safetensors"
LAST_STATE = "last.state.safetensors"
_INFO_KEY = "contig"  # metadata key holding the JSON payload
_FORMAT_VERSION = 1


class CheckpointError(ImagingError):
    """A checkpoint file is missing, unreadable, or does not fit the model it is loaded into."""


# ------------------------------------------------------------------------------------------ weights


def save_weights(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model's ``state_dict`` (DDP/compile wrappers removed) to ``path``; ``info`` goes to metadata."""
    return _write_files([_weights_payload(model, path, info)])[0]


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON ``info`` stored in a checkpoint's metadata (``{}`` if none)."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    return json.loads(metadata[_INFO_KEY]) if _INFO_KEY in metadata else {}


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, on CPU."""
    path = _existing(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load ``path`` into ``model`` (in place; returned for chaining).

    Raises:
        CheckpointError: naming the file, the missing and unexpected keys (when ``strict``) and every
            shape mismatch (always).
    """
    state = read_weights(path)
    target = unwrap_model(model)
    expected = target.state_dict()
    if not any(key in expected for key in state) and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}  # saved from DDP
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} in file vs {tuple(expected[key].shape)} in model"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing key(s): {_some(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_some(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_some(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{path} does not fit the model: {'; '.join(problems)}. "
            "Load it into the model (and configuration) that wrote it, or pass strict=False for a partial load."
        )
    target.load_state_dict(state, strict=strict)
    return model


# ------------------------------------------------------------------------------------ training state


def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write a nested training state (dicts, lists, tuples, numbers, text, tensors, numpy arrays)."""
    return _write_files([_state_payload(state, path)])[0]


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a state written by ``save_state``; tensors land on ``device``."""
    path = _existing(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    info = read_info(path)
    if "state" not in info:
        raise CheckpointError(f"{path} holds no training state (is it a weights file?)")
    return _decode(info["state"], tensors)


def save_checkpoint_pair(
    weights: nn.Module | Mapping[str, torch.Tensor],
    weights_path: str | os.PathLike,
    state: Mapping[str, Any],
    state_path: str | os.PathLike,
    info: Mapping[str, Any],
) -> None:
    """Write weights and state together: both temporary files first, then two renames.

    ``info`` (e.g. the step) is stored in both, so a reader can tell the pair belongs together.
    """
    _write_files([_weights_payload(weights, weights_path, info), _state_payload(state, state_path, info)])


# -------------------------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's ``random``, numpy's global generator, torch CPU and (when used) CUDA."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": keys, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by ``capture_rng_state`` (CUDA only when the device count matches)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        (nps["kind"], np.asarray(nps["keys"], dtype=np.uint32), nps["pos"], nps["has_gauss"], nps["cached"])
    )
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.to("cpu", torch.uint8) for t in cuda])


# -------------------------------------------------------------------------------------------- helpers


def _some(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit} more)" if len(items) > limit else "")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def _to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    # A private contiguous copy: safetensors refuses tensors that share storage (tied weights).
    return tensor.detach().to("cpu", copy=True).contiguous()


def _weights_payload(model: Any, path: Any, info: Mapping[str, Any] | None) -> tuple:
    if isinstance(model, nn.Module):
        model = unwrap_model(model).state_dict()
    tensors = {key: _to_cpu(value) for key, value in model.items()}
    meta = {"format": "pt", _INFO_KEY: json.dumps(dict(info or {}))}
    return tensors, Path(path), meta


def _state_payload(state: Mapping[str, Any], path: Any, info: Mapping[str, Any] | None = None) -> tuple:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(dict(state), "", tensors)
    payload = {**dict(info or {}), "format_version": _FORMAT_VERSION, "state": skeleton}
    return tensors, Path(path), {"format": "pt", _INFO_KEY: json.dumps(payload)}


def _write_files(payloads: list[tuple]) -> list[Path]:
    """Write every payload to a temporary sibling (fsynced), then rename them in order."""
    temps: list[tuple[Path, Path]] = []
    try:
        for tensors, path, meta in payloads:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            temps.append((tmp, path))
            save_file(tensors, str(tmp), metadata=meta)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        mode = 0o666 & ~process_umask()  # safetensors writes 0600; results are meant to be shared
        for tmp, path in temps:
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return [path for _, path, _ in payloads]


def _encode(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of ``value``; tensors are moved into ``tensors`` under their path ``name``."""
    if isinstance(value, torch.Tensor):
        tensors[name] = _to_cpu(value)
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        stored = value.astype(np.int64) if value.dtype.kind == "u" and value.itemsize > 1 else value
        tensors[name] = torch.from_numpy(np.ascontiguousarray(stored)).clone()
        return {"__ndarray__": name, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: _encode(item, f"{name}/{key}", tensors) for key, item in value.items()}
        return {
            "__items__": [[_encode(k, "", {}), _encode(v, f"{name}/{k}", tensors)] for k, v in value.items()]
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, f"{name}/{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{name}/{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(
        f"cannot store a {type(value).__name__} at '{name or '/'}' in a checkpoint (no pickles)"
    )


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].cpu().numpy().astype(np.dtype(value["dtype"]))
    if "__tuple__" in value:
        return tuple(_decode(item, tensors) for item in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    return {key: _decode(item, tensors) for key, item in value.items()}


__all__ = [
    "BEST",
    "LAST",
    "LAST_STATE",
    "CheckpointError",
    "capture_rng_state",
    "load_state",
    "load_weights",
    "read_info",
    "read_weights",
    "restore_rng_state",
    "save_checkpoint_pair",
    "save_state",
    "save_weights",
    "seed_everything",
]
