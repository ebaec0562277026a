"""imaging: image files, transforms, 2D/3D encoders, self-supervised tasks, fine-tuning, the MIL model.

``imaging.create_encoder`` and ``imaging.create_task`` are the registry's factories
(``imaging.registry``), imported on first use so that ``import imaging.io`` stays free of torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"create_encoder": "imaging.registry", "create_task": "imaging.registry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imaging' has no attribute {name!r}")


__all__ = ["create_encoder", "create_task"]
