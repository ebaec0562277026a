"""Training configuration as dataclasses: YAML in, ``key=value`` overrides, resolved YAML out.

Library classes take keyword arguments; these dataclasses live only at the edge (the CLI, a run
directory's ``config.yaml``). Values are coerced to the annotated field types, so an override typed on a
command line (``optim.lr=3e-4``) arrives as a float, ``towers=[snp,pgs]`` as a list of strings.

>>> config = apply_overrides(TrainingConfig(), ["lr=3e-4", "batch_size=64", "amp=false"])
>>> config.lr, config.batch_size, config.amp
(0.0003, 64, False)
>>> apply_overrides(TrainingConfig(), ["lrr=1"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
imaging.training.config.ConfigError: unknown key 'lrr' in override 'lrr=1'; valid keys: amp, amp_dtype, ...
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from imaging.errors import ImagingError

T = TypeVar("T")


class ConfigError(ImagingError, ValueError):
    """A configuration file or override that does not fit the configuration dataclass."""


@dataclass
class TrainingConfig:
    """Fields shared by every training command; a command's config subclasses it and adds its own.

    Steps are optimizer steps (one per ``grad_accum_steps`` micro-batches); training stops at
    ``max_steps`` or after ``epochs`` passes over the data, whichever comes first. ``*_every = 0``
    means "only at the end of training".
    """

    out: str = "runs/train"
    max_steps: int | None = None
    epochs: int | None = 1
    batch_size: int = 32  # per process (per rank); the global batch is batch_size × world size × accum
    drop_last: bool = False
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lr: float = 1e-3
    min_lr_ratio: float = 0.0  # the cosine decays to lr × min_lr_ratio
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    grad_accum_steps: int = 1
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping
    amp: bool = True  # mixed precision; effective on CUDA only
    amp_dtype: Literal["float16", "bfloat16"] = "float16"  # float16 uses a GradScaler
    channels_last: bool = False  # effective on CUDA only
    num_workers: int = 0
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 500
    monitor: str = "loss"  # an eval metric, else a training loss term (mean since the last evaluation)
    mode: Literal["min", "max"] = "min"
    tensorboard: bool = False
    progress: bool = True  # tqdm progress bar on rank 0
    find_unused_parameters: bool = False  # DDP: towers skipped in some batches (missing modalities)

    def __post_init__(self) -> None:
        problems = []
        if self.max_steps is None and self.epochs is None:
            problems.append("set max_steps or epochs")
        for name in ("max_steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 (got {value})")
        for name in ("batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("warmup_steps", "num_workers", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            problems.append(f"min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))


def load_config(path: str | os.PathLike, cls: type[T]) -> T:
    """Read a YAML mapping into the dataclass ``cls`` (nested dataclasses from nested mappings)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        data = {}
    try:
        return from_dict(cls, data)
    except ConfigError as error:
        raise ConfigError(f"config file {path}: {error}") from None


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, coercing values; unknown keys are an error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))}{_at(where)}; valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {key: _coerce(value, hints[key], _join(where, key)) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or 'config'}: {error}") from None


def apply_overrides(config: T, overrides: typing.Iterable[str]) -> T:
    """Return a copy of ``config`` with ``dotted.key=value`` overrides applied in order.

    The value is parsed as YAML (``[a,b]`` → list, ``true`` → bool, ``null`` → None) and coerced to the
    field's annotated type; a ``str`` field takes the text verbatim.
    """
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r} is not of the form key=value")
        config = _set_path(config, key.strip().split("."), raw.strip(), override, "")
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-safe dict of a (nested) config dataclass: tuples → lists, paths → strings."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return _plain(dataclasses.asdict(config))


def save_resolved(config: Any, path: str | os.PathLike) -> Path:
    """Write ``config`` as YAML to ``path`` atomically (``imaging.io.atomic_target``)."""
    from imaging.io import atomic_target  # nibabel and pillow: not for every importer of the config

    path = Path(path)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
    with atomic_target(path) as tmp:
        tmp.write_text(text)
    return path


# --------------------------------------------------------------------------------------------- helpers


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _at(where: str) -> str:
    return f" at '{where}'" if where else ""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _set_path(obj: Any, parts: list[str], raw: str, override: str, where: str, tp: Any = Any) -> Any:
    """Return ``obj`` (annotated ``tp``) with the value at ``parts`` replaced (dataclasses via ``replace``)."""
    key, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(obj):
        names = sorted(f.name for f in dataclasses.fields(obj) if f.init)
        if key not in names:
            raise ConfigError(
                f"unknown key {key!r}{_at(where)} in override {override!r}; valid keys: {', '.join(names)}"
            )
        field_type = typing.get_type_hints(type(obj))[key]
        current = getattr(obj, key)
    elif isinstance(obj, dict):
        field_type = _dict_value_type(obj, tp)
        current = obj.get(key)
        if rest and key not in obj:
            valid = ", ".join(sorted(map(str, obj))) or "(none)"
            raise ConfigError(
                f"unknown key {key!r}{_at(where)} in override {override!r}; valid keys: {valid}"
            )
    else:
        raise ConfigError(
            f"cannot set {key!r} inside '{where}' ({type(obj).__name__}) in override {override!r}"
        )
    path = _join(where, key)
    if rest:
        new_value = _set_path(current, rest, raw, override, path, field_type)
    else:
        new_value = _coerce(_parse(raw, field_type), field_type, path, override)
    if isinstance(obj, dict):
        return {**obj, key: new_value}
    try:
        return dataclasses.replace(obj, **{key: new_value})
    except ConfigError as error:
        raise ConfigError(f"override {override!r}: {error}") from None


def _dict_value_type(obj: dict, tp: Any) -> Any:
    """The declared value type of a ``dict[K, V]`` field (Optional allowed), else the common type present."""
    for candidate in (tp, *typing.get_args(tp)):
        if typing.get_origin(candidate) is dict and len(typing.get_args(candidate)) == 2:
            return typing.get_args(candidate)[1]
    values = [v for v in obj.values() if v is not None]
    return type(values[0]) if values and all(type(v) is type(values[0]) for v in values) else Any


def _parse(raw: str, field_type: Any) -> Any:
    """YAML-parse an override value; text fields keep the raw text (``out=001`` stays '001')."""
    if _accepts_str(field_type) and raw not in ("null", "~", "None"):
        return raw
    try:
        return yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        return raw


def _accepts_str(tp: Any) -> bool:
    if tp is str or tp is Path:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return len(args) == 1 and _accepts_str(args[0])
    return False


def _coerce(value: Any, tp: Any, where: str, override: str | None = None) -> Any:
    """Check/convert ``value`` to the type annotation ``tp``; raise ConfigError naming ``where``."""
    try:
        return _convert(value, tp, where)
    except (TypeError, ValueError) as error:
        context = f" in override {override!r}" if override else ""
        message = error.args[0] if isinstance(error, ConfigError) else f"{where}: {error}"
        raise ConfigError(f"{message}{context}") from None


def _fail(value: Any, expected: str, where: str) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {value!r}")


def _convert(value: Any, tp: Any, where: str) -> Any:
    if tp is Any or tp is object:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except (TypeError, ValueError):
                continue
        raise _fail(value, " or ".join(_name(a) for a in args), where)
    if origin is Literal:
        if value in args:
            return value
        raise _fail(value, "one of " + ", ".join(map(repr, args)), where)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        return _convert_sequence(value, tp, origin or tp, args, where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _fail(value, "a mapping", where)
        key_t, val_t = args if args else (Any, Any)
        return {_convert(k, key_t, where): _convert(v, val_t, _join(where, k)) for k, v in value.items()}
    return _convert_scalar(value, tp, where)


def _convert_sequence(value: Any, tp: Any, origin: Any, args: tuple, where: str) -> Any:
    if not isinstance(value, list | tuple):
        raise _fail(value, f"a list ({_name(tp)})", where)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _fail(value, f"{len(args)} items ({_name(tp)})", where)
        return tuple(
            _convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    item_t = args[0] if args else Any
    items = [_convert(v, item_t, f"{where}[{i}]") for i, v in enumerate(value)]
    return origin(items) if origin is not list else items


def _convert_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise _fail(value, "true or false", where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                raise _fail(value, "an integer", where) from None
            if number.is_integer():
                return int(number)
        raise _fail(value, "an integer", where)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads '3e-4' (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        raise _fail(value, "a number", where)
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise _fail(value, "text", where)
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise _fail(value, "a path", where)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _fail(value, _name(tp), where)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


__all__ = [
    "ConfigError",
    "TrainingConfig",
    "apply_overrides",
    "config_to_dict",
    "from_dict",
    "load_config",
    "save_resolved",
]
