"""Importing this module registers every built-in proxy task in ``imaging.registry.TASKS``.

>>> from imaging.registry import list_tasks
>>> {"cpc", "exemplar", "jigsaw", "rotation", "rpl", "simclr"} <= set(list_tasks())
True
"""

from __future__ import annotations

from imaging.ssl.cpc import CPC
from imaging.ssl.exemplar import Exemplar
from imaging.ssl.jigsaw import Jigsaw
from imaging.ssl.rotation import RotationTask
from imaging.ssl.rpl import RelativePatchLocation
from imaging.ssl.simclr import SimCLR

__all__ = ["CPC", "Exemplar", "Jigsaw", "RelativePatchLocation", "RotationTask", "SimCLR"]
