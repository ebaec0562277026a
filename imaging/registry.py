"""Registries and factories: one per family (encoders, self-supervised tasks), like timm's create_model.

>>> from imaging.registry import create_encoder, list_encoders
>>> "resnet18" in list_encoders()
True
>>> encoder = create_encoder("resnet18", in_chans=1)
>>> encoder.num_features
512
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imaging.errors import UnknownNameError


class Registry:
    """Name → constructor table of one family, with a factory that names the alternatives on a typo."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable:
        """Decorator: ``@ENCODERS.register("unet3d")`` on a class or function returning the object."""

        def decorate(constructor: Callable) -> Callable:
            key = name or constructor.__name__
            if key in self._entries:
                raise ValueError(f"{self.family} {key!r} is registered twice")
            self._entries[key] = constructor
            return constructor

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any] | None:
        return self._entries.get(name)

    def create(self, name: str, **kwargs: Any) -> Any:
        constructor = self._entries.get(name)
        if constructor is None:
            raise UnknownNameError(f"unknown {self.family} {name!r}; available: {', '.join(self.names())}")
        return constructor(**kwargs)


ENCODERS = Registry("image encoder")
TASKS = Registry("self-supervised task")


# Importing these modules registers their entries.
_BUILTIN_MODULES = (
    "imaging.encoders_2d",
    "imaging.unet",
    "imaging.ssl.tasks",
    "imaging.puzzle.task",
)


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def create_encoder(name: str, **kwargs: Any):
    """Build an image encoder by name: a registered contig encoder, else any timm model name.

    Every encoder exposes ``num_features`` and ``forward_features(x) -> (B, num_features)``.
    """
    _load_builtins()
    if ENCODERS.get(name) is None:
        from imaging.encoders_2d import TimmEncoder, is_timm_model

        if is_timm_model(name):
            return TimmEncoder(name, **kwargs)
    return ENCODERS.create(name, **kwargs)


def is_encoder(name: str) -> bool:
    """Whether :func:`create_encoder` knows ``name`` (a registered encoder or a timm model), without
    building it."""
    _load_builtins()
    if ENCODERS.get(name) is not None:
        return True
    from imaging.encoders_2d import is_timm_model

    return is_timm_model(name)


def list_encoders(timm_models: bool = False) -> list[str]:
    """Registered encoder names (plus every timm model name when ``timm_models``)."""
    _load_builtins()
    names = ENCODERS.names()
    if timm_models:
        import timm

        names = sorted(set(names) | set(timm.list_models()))
    return names


def create_task(name: str, **kwargs: Any):
    """Build a self-supervised proxy task by name (see ``list_tasks``)."""
    _load_builtins()
    return TASKS.create(name, **kwargs)


def list_tasks() -> list[str]:
    _load_builtins()
    return TASKS.names()
