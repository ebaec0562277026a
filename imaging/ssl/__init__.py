"""imaging.ssl: self-supervised proxy tasks (2D and 3D) sharing one interface (``base.ProxyTask``).

Tasks (built by ``imaging.create_task(name, encoder=..., dim=2|3, **options)``): ``cpc``, ``rotation``,
``rpl`` (relative patch location), ``jigsaw``, ``exemplar``, ``simclr``. ``train_ssl`` runs one on an
image folder; ``load_pretrained_encoder`` gives back the trained encoder. Names are loaded lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ProxyTask": "imaging.ssl.base",
    "TaskCollate": "imaging.ssl.base",
    "TaskItems": "imaging.ssl.base",
    "task_loss": "imaging.ssl.base",
    "SslConfig": "imaging.ssl.train",
    "train_ssl": "imaging.ssl.train",
    "load_pretrained_encoder": "imaging.ssl.pretrained",
    "hamming_permutations": "imaging.ssl.permutations",
    "nt_xent": "imaging.ssl.losses",
    "info_nce": "imaging.ssl.losses",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'imaging.ssl' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
