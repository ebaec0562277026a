"""Flags shared by every training command (``pretrain``, ``ssl``, ``finetune``, ``translate``, ``mil train``).

``@training_options`` adds ``--config FILE``, ``--out DIR``, ``--max-steps N``, ``--epochs N``,
``--batch-size N``, ``--seed N``, ``--device auto|cpu|cuda``, ``--resume``, ``--overwrite`` and trailing
``KEY=VALUE`` overrides. ``resolve_training_config(cls, kwargs)`` turns them into the command's config dataclass:
defaults → YAML file → ``KEY=VALUE`` overrides → explicit flags (the last one wins). With ``--resume``
and no ``--config``, the run directory's own ``config.yaml`` is the starting point, so
``contig ssl --out run1 --resume`` continues with the settings ``run1`` was started with. A non-empty ``--out`` is refused unless
``--resume`` or ``--overwrite`` says what to do with it (``contig.cli._out_folder``); call
``start_run(config, kwargs, "ssl")`` right before training to clear (``--overwrite``) and record it.

Usage in a command module::

    @click.command("ssl")
    @training_options
    def command(**kwargs):
        config = resolve_training_config(SslConfig, kwargs)
        start_run(config, kwargs, "ssl")
        Trainer(model, loss_fn, data, config).fit(resume=kwargs["resume"])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from contig.cli._out_folder import OVERWRITE_OPTION, begin_out_folder, check_out_folder
from imaging.training.config import ConfigError, apply_overrides, from_dict, load_config
from imaging.training.run_folder import config_file

T = TypeVar("T")

# flag keyword → config field
FLAG_FIELDS = {
    "out": "out",
    "max_steps": "max_steps",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "seed": "seed",
    "device": "device",
}
TRAINING_KEYS = ("config_path", "resume", "overwrite", "overrides", *FLAG_FIELDS)

_TRAINING_FLAGS = [
    click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        metavar="FILE",
        help="YAML configuration; KEY=VALUE overrides and the flags below take precedence.",
    ),
    click.option(
        "--out", default=None, metavar="DIR", help="Run directory (config.yaml, metrics, checkpoints)."
    ),
    click.option(
        "--max-steps", type=click.IntRange(min=1), default=None, metavar="N", help="Optimizer steps."
    ),
    click.option(
        "--epochs", type=click.IntRange(min=1), default=None, metavar="N", help="Passes over the data."
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Samples per step per process.",
    ),
    click.option(
        "--seed", type=int, default=None, metavar="N", help="Seed of initialisation and data order."
    ),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default=None,
        help="Where to train [default: auto].",
    ),
    click.option("--resume", is_flag=True, help="Continue from last.* in the run directory."),
    OVERWRITE_OPTION,
    click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]..."),
]


def training_options(function: Callable) -> Callable:
    """Add the common training flags and the variadic ``KEY=VALUE`` overrides to a click command."""
    for decorator in reversed(_TRAINING_FLAGS):
        function = decorator(function)
    return function


# Settings a resumed run may change: how long (including early stopping's patience), how often it logs
# and saves, where it runs, the batch size (the trainer continues the data order approximately). Anything
# else (e.g. val_fraction, which changes the training images) would make config.yaml describe a run that
# was not trained that way.
RESUMABLE = frozenset(
    {"out", "max_steps", "epochs", "patience", "log_every", "eval_every", "checkpoint_every", "device",
     "progress", "num_workers", "tensorboard", "batch_size", "amp", "amp_dtype", "channels_last", "eval_boot"}
)  # fmt: skip


def resolve_training_config(cls: type[T], kwargs: dict[str, Any]) -> T:
    """Build ``cls`` from the flags in ``kwargs``: defaults → ``--config`` (or, with ``--resume``, the run
    directory's ``config.yaml``) → ``KEY=VALUE`` overrides → explicit flags.

    Raises:
        click.ClickException: a one-line reason for a bad file, key or value.
    """
    try:
        base = _base_config(cls, kwargs)
        config = apply_overrides(base, kwargs.get("overrides") or ())
        flags = [
            f"{field}={kwargs[flag]}" for flag, field in FLAG_FIELDS.items() if kwargs.get(flag) is not None
        ]
        config = apply_overrides(config, flags)
    except ConfigError as error:
        raise click.ClickException(" ".join(str(error).split())) from None
    if kwargs.get("resume") and not kwargs.get("config_path") and _saved_path(cls, kwargs) is not None:
        changed = [
            f.name
            for f in dataclasses.fields(config)  # type: ignore[arg-type]
            if f.name not in RESUMABLE and getattr(config, f.name) != getattr(base, f.name)
        ]
        if changed:
            error = click.ClickException(
                f"--resume continues the run as it was configured; {', '.join(changed)} would change what "
                f"was trained (only {', '.join(sorted(RESUMABLE - {'out'}))} may change): "
                "start a new --out to train with other settings"
            )
            error.exit_code = 2  # bad usage, found before anything runs
            raise error
    if getattr(config, "out", None):
        check_out_folder(
            config.out, resume=bool(kwargs.get("resume")), overwrite=bool(kwargs.get("overwrite"))
        )
    return config


def start_run(config: Any, kwargs: dict[str, Any], command: str) -> None:
    """Create the run directory ``config.out`` (cleared first with ``--overwrite``) and record the command
    and a fingerprint of its data (``data``, ``val_data``) in ``contig-run.json``; a ``--resume`` on
    changed data is refused. Call it after the command's own checks, right before training."""
    inputs = [getattr(config, name, None) for name in ("data", "val_data")]
    begin_out_folder(
        config.out,
        command,
        resume=bool(kwargs.get("resume")),
        overwrite=bool(kwargs.get("overwrite")),
        inputs=[path for path in inputs if isinstance(path, str) and path],
    )


def _base_config(cls: type[T], kwargs: dict[str, Any]) -> T:
    if kwargs.get("config_path"):
        return load_config(kwargs["config_path"], cls)
    saved = _saved_path(cls, kwargs) if kwargs.get("resume") else None
    return load_config(saved, cls) if saved is not None else from_dict(cls, {})


def _saved_path(cls: type, kwargs: dict[str, Any]) -> Path | None:
    """The ``config.yaml`` of the run directory a ``--resume`` continues, if there is one."""
    from_overrides = [o.partition("=")[2] for o in kwargs.get("overrides") or () if o.startswith("out=")]
    out = kwargs.get("out") or (from_overrides[-1] if from_overrides else _default_out(cls))
    saved = config_file(out) if out else None
    return saved if saved is not None and saved.is_file() else None


def _default_out(cls: type) -> str | None:
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name == "out" and field.default is not dataclasses.MISSING:
            return str(field.default)
    return None


__all__ = ["FLAG_FIELDS", "TRAINING_KEYS", "resolve_training_config", "start_run", "training_options"]
