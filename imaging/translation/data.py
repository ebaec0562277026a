"""Source/target pairs for translation, from a biobank folder's manifest (``image_<modality>`` columns).

``PairedVolumes``: the source and target of the same row (co-registered, for pix2pix).
``UnpairedVolumes``: a source and the target of a random row, possibly another person (for CycleGAN);
the draw uses the RNG the trainer seeds per (seed, epoch, index), so it is reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from imaging.errors import ImagingError
from imaging.puzzle.data import MultimodalVolumes


class PairedVolumes(Dataset):
    """``{"source": (1, D, H, W), "target": (1, D, H, W)}`` of one manifest row, each channel standardised."""

    def __init__(
        self,
        root: str | os.PathLike,
        source: str,
        target: str,
        size: int | None = None,
        rows: Sequence[int] | None = None,
    ):
        if source == target:
            raise ImagingError(f"source and target are both {source!r}; translate between two modalities")
        self.volumes = MultimodalVolumes(root, (source, target), size=size, rows=rows)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.volumes[index]
        return {"source": image[0:1], "target": image[1:2]}


class UnpairedVolumes(Dataset):
    """Sources from the rows that have the source modality, each with the target of a random row that has
    the target modality (no correspondence is assumed; the rows may be different people)."""

    def __init__(
        self,
        root: str | os.PathLike,
        source: str,
        target: str,
        size: int | None = None,
        rows: Sequence[int] | None = None,
    ):
        if source == target:
            raise ImagingError(f"source and target are both {source!r}; translate between two modalities")
        self.sources = MultimodalVolumes(root, (source,), size=size, rows=rows)
        self.targets = MultimodalVolumes(root, (target,), size=size, rows=rows)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        other = int(torch.randint(len(self.targets), ()).item())
        return {"source": self.sources[index], "target": self.targets[other]}


__all__ = ["PairedVolumes", "UnpairedVolumes"]
