"""The run folder of a training command as one file format: its file names, readers and writers.

A run folder (the ``--out`` of ``contig pretrain``, ``ssl``, ``finetune``, ``translate``, ``mil train``)
holds, as ``imaging.training.Trainer`` writes it:

- ``config.yaml``: the resolved configuration dataclass of the command (``save_resolved``), a mapping;
- ``metrics.csv``, ``train.log``;
- ``best.safetensors`` / ``last.safetensors`` (the model's ``state_dict``) and ``last.state.safetensors``
  (the training state for ``--resume``), named in ``imaging.training.checkpoint``;
- ``model.yaml`` (``translate`` and ``mil train`` only): the model description, a mapping of the keyword
  arguments that rebuild the model.

Reading a folder that is no run, or the run of another command, raises ``ConfigError`` (an
``ImagingError``) in one line naming the folder, what it lacks, and the command whose ``--out`` to give.
Torch is imported only to locate a checkpoint, so the command line can use this module cheaply.

>>> import tempfile
>>> run = tempfile.mkdtemp()
>>> _ = write_model_spec(run, {"mode": "paired", "model": {"width": 8}})
>>> read_model_spec(run, "contig translate", required=("mode",))
{'mode': 'paired', 'model': {'width': 8}}
>>> read_run_config(run, "contig ssl")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
imaging.training.config.ConfigError: ...: not a contig ssl run (no config.yaml); give the --out of contig ssl
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from imaging.training.config import ConfigError, from_dict, save_resolved

T = TypeVar("T")

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.yaml"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"
_SHOWN_KEYS = 6  # keys named in an error message


def config_file(run_dir: str | os.PathLike) -> Path:
    """``RUN/config.yaml``."""
    return Path(run_dir) / CONFIG_FILE


def checkpoint_file(run_dir: str | os.PathLike, name: str = "best") -> Path:
    """``RUN/<name>.safetensors`` (``best`` → ``checkpoint.BEST``, ``last`` → ``checkpoint.LAST``)."""
    return Path(run_dir) / f"{name}.safetensors"


def read_run_config(run_dir: str | os.PathLike, command: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved configuration of ``RUN/config.yaml`` as a plain mapping (top-level key → value).

    Args:
        command: what wrote the run (``"contig ssl"``), for the error message.
        required: keys that must be present, neither null nor empty text (e.g. ``("encoder",)``).

    Raises:
        ConfigError: no ``config.yaml``, not a YAML mapping, or a required key missing.
    """
    run = Path(run_dir)
    data = _read_mapping(run, CONFIG_FILE, command)
    _check_keys(run, CONFIG_FILE, command, data, required)
    return data


def load_run_config(
    run_dir: str | os.PathLike, cls: type[T], command: str, required: Sequence[str] = ()
) -> T:
    """``RUN/config.yaml`` typed into the configuration dataclass ``cls`` (``from_dict``).

    Top-level keys that ``cls`` does not have mean the run was made by another command and are refused
    as such; a bad value is a ``ConfigError`` naming the file, as ``load_config`` gives.
    """
    run = Path(run_dir)
    data = _read_mapping(run, CONFIG_FILE, command)
    fields = {field.name for field in dataclasses.fields(cls) if field.init}  # type: ignore[arg-type]
    _check_keys(run, CONFIG_FILE, command, data, required, allowed=fields)
    try:
        return from_dict(cls, data)
    except ConfigError as error:
        raise ConfigError(f"config file {run / CONFIG_FILE}: {error}") from None


def write_run_config(run_dir: str | os.PathLike, config: Any) -> Path:
    """Write ``RUN/config.yaml`` atomically from a configuration dataclass (``save_resolved``)."""
    return save_resolved(config, config_file(run_dir))


def write_model_spec(run_dir: str | os.PathLike, spec: Mapping[str, Any]) -> Path:
    """Write ``RUN/model.yaml`` (the keyword arguments that rebuild the model) atomically."""
    from imaging.io import atomic_target

    path = Path(run_dir) / MODEL_FILE
    with atomic_target(path) as tmp, open(tmp, "w") as handle:  # a failure leaves no temporary file
        yaml.safe_dump(dict(spec), handle, sort_keys=False)
    return path


def read_model_spec(
    run_dir: str | os.PathLike,
    command: str,
    required: Sequence[str] = (),
    allowed: Collection[str] | None = None,
) -> dict[str, Any]:
    """``RUN/model.yaml`` as a mapping; ``required`` keys must be present, only ``allowed`` ones may be.

    Raises:
        ConfigError: no ``model.yaml`` (naming ``command``), not a mapping, or keys of another command.
    """
    run = Path(run_dir)
    data = _read_mapping(run, MODEL_FILE, command)
    _check_keys(run, MODEL_FILE, command, data, required, allowed)
    return data


def find_checkpoint(run_dir: str | os.PathLike, name: str = "best", command: str = "the command") -> Path:
    """``RUN/<name>.safetensors``; ``best`` falls back to ``last`` when the run kept no best.

    Raises:
        CheckpointError: neither file exists (the run has not saved a checkpoint yet).
    """
    from imaging.training.checkpoint import LAST, CheckpointError

    run = Path(run_dir)
    path = checkpoint_file(run, name)
    if not path.is_file() and name == "best":
        path = run / LAST
    if not path.is_file():
        tried = f"{name}.safetensors" + (f" or {LAST}" if name == "best" else "")
        raise CheckpointError(
            f"{run}: no {tried}; the run has not saved a checkpoint yet (train it, or give the --out of {command})"
        )
    return path


# --------------------------------------------------------------------------------------------- helpers


def _read_mapping(run: Path, name: str, command: str) -> dict[str, Any]:
    path = run / name
    if not path.is_file():
        where = "no such folder" if not run.is_dir() else f"no {name}"
        raise ConfigError(f"{run}: not a {command} run ({where}); give the --out of {command}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping, got {type(data).__name__}; give the --out of {command}")
    return data


def _check_keys(
    run: Path,
    name: str,
    command: str,
    data: Mapping[str, Any],
    required: Sequence[str],
    allowed: Collection[str] | None = None,
) -> None:
    missing = [key for key in required if data.get(key) is None or data.get(key) == ""]
    unknown = sorted(str(key) for key in data if allowed is not None and key not in allowed)
    if unknown:
        why = f"{name} has keys of another command: {_some(unknown)}"
    elif missing:
        why = f"{name} has no {', '.join(map(repr, missing))}; its keys: {_some(sorted(map(str, data)))}"
    else:
        return
    raise ConfigError(f"{run}: not a {command} run ({why}); give the --out of {command}")


def _some(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:_SHOWN_KEYS]) + (", …" if len(keys) > _SHOWN_KEYS else "")


__all__ = [
    "CONFIG_FILE",
    "LOG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "checkpoint_file",
    "config_file",
    "find_checkpoint",
    "load_run_config",
    "read_model_spec",
    "read_run_config",
    "write_model_spec",
    "write_run_config",
]
