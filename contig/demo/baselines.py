"""The demo's comparison encoders: an image-only SimCLR trained with ContIG's budget, and random init.

SimCLR's views follow what self-supervised work on colour fundus photographs uses, not ImageNet's colour
distortion: a random resized crop and a horizontal flip (RETFound's pretraining views, Zhou et al. 2023,
Nature 622:156; ``rmaphoh/RETFound_MAE`` ``main_pretrain.py``: ``RandomResizedCrop(scale=(0.2, 1))`` +
``RandomHorizontalFlip``), a rotation within ±20° (the fundus augmentation of ContIG, Taleb et al. 2022,
CVPR; ``HealthML/ContIG`` ``data/data_ukb.py``: ``RandomRotation(20)`` + ``RandomHorizontalFlip``), and
a mild brightness/contrast change. There is no hue, saturation or per-channel jitter, grey-scale or
blur: the colour of a fundus is biology (pigmentation), and at 64 px a blur erases the ~1.4-px cup. The
crop keeps at least half the field (area U(0.5, 1), not RETFound's 0.2 at 224 px) so that most views
still hold the 9-px optic disc. Brightness is one gain for all three channels and contrast is scaled
about each channel's own mean, so neither moves the image's channel ratios (its hue).

The former views (per-channel brightness/contrast jitter, ``per_channel=True``) moved the mean log
green/red ratio of the fundus by SD 0.42 against a population SD of 0.087 (``view_shifts`` on 300
rendered 64-px photographs): SimCLR was trained to ignore pigmentation, the one trait every method can
see. These views move it by SD 0.004, and the mean brightness by SD 0.06 against a population SD of
0.15. ``AUGMENTATIONS`` says what each method's views make its encoder invariant to; ``view_shifts``
measures how far a view pipeline moves an image's colour and brightness compared with how much people differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from contig.dataset import MultimodalDataset
from imaging.registry import create_encoder, create_task
from imaging.ssl.base import TaskCollate, TaskItems, task_loss
from imaging.training import Trainer, TrainingConfig

_CONTIG_VIEWS = {
    "views": "one augmented image per step; the person's genetics is the other view",
    "transforms": [
        "horizontal flip, p = 0.5",
        "rotation by U(-20°, 20°) about the centre (zero padding)",
    ],
    "invariant_to": ["left/right mirroring (laterality)", "rotations within ±20°"],
    "keeps": [
        "colour and hue (pigmentation)",
        "brightness and contrast",
        "size and position of disc, cup, vessels, macula and lesions",
    ],
    "source": "Taleb et al. 2022 (ContIG), HealthML/ContIG data/data_ukb.py: RandomRotation(20) + "
    "RandomHorizontalFlip",
}

AUGMENTATIONS: dict[str, dict] = {
    "contig": _CONTIG_VIEWS,
    "contig_permuted": {
        **_CONTIG_VIEWS,
        "views": "as contig, with each person's genetics swapped for another's",
    },
    "simclr": {
        "views": "two augmented views of one image; the other images of the batch are the negatives",
        "transforms": [
            "random resized crop, square, area U(0.5, 1) of the image (zoom 1-1.41×), anywhere inside it",
            "horizontal flip, p = 0.5",
            "rotation by U(-20°, 20°) about the centre (zero padding)",
            "brightness: one gain U(0.9, 1.1) on all channels",
            "contrast: U(0.9, 1.1) about each channel's mean",
        ],
        "invariant_to": [
            "position of the field of view (crop centre)",
            "scale up to 1.41×: part of disc size (×1.14 per SD of disc_size) and vessel calibre",
            "left/right mirroring (laterality)",
            "rotations within ±20°",
            "overall exposure ±10% (overlaps the brightness part of pigmentation, ~9% per SD)",
            "global contrast ±10%",
        ],
        "keeps": [
            "hue and channel ratios (the colour part of pigmentation)",
            "cup-to-disc ratio (scale-free)",
            "vessel density and tortuosity",
            "macula darkness relative to the background",
            "lesions",
        ],
        "source": "RETFound (Zhou et al. 2023; rmaphoh/RETFound_MAE main_pretrain.py: RandomResizedCrop + "
        "RandomHorizontalFlip) with ContIG's ±20° rotation; no colour jitter",
    },
    "random": {
        "views": "none: untrained, randomly initialised weights",
        "transforms": [],
        "invariant_to": [],
        "keeps": ["whatever its random weights respond to"],
        "source": "",
    },
}


@dataclass(frozen=True)
class FundusViews:
    """One SimCLR view of fundus photographs (B, C, H, W): crop, flip and rotation in one resampling
    (bilinear, zero padding), then one brightness gain for all channels and contrast about each channel's
    mean. ``__call__(x, g)`` draws one setting per image from ``g``.

    >>> g = torch.Generator().manual_seed(0)
    >>> FundusViews()(torch.rand(4, 3, 16, 16), g).shape
    torch.Size([4, 3, 16, 16])
    """

    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip: float = 0.5
    degrees: float = 20.0
    brightness: float = 0.1
    contrast: float = 0.1

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        uniform = lambda low, high: low + (high - low) * torch.rand(b, generator=g, dtype=torch.float64)  # noqa: E731
        side = uniform(*self.crop_scale).sqrt()  # crop side as a fraction of the image side
        # the crop's outer pixel centres stay on or inside the image's outer pixel centres
        inset = torch.tensor([1 - 1 / x.shape[3], 1 - 1 / x.shape[2]], dtype=torch.float64)
        centre = (torch.rand(b, 2, generator=g, dtype=torch.float64) * 2 - 1) * (1 - side)[:, None] * inset
        mirror = torch.where(torch.rand(b, generator=g) < self.flip, -1.0, 1.0).double()
        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        cos, sin = angle.cos() * side, angle.sin() * side
        theta = torch.stack(  # output (x, y) → input (x, y) in [-1, 1]: rotate ∘ scale ∘ mirror, then shift
            [
                torch.stack([cos * mirror, -sin, centre[:, 0]], 1),
                torch.stack([sin * mirror, cos, centre[:, 1]], 1),
            ],
            1,
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        gain = uniform(1 - self.brightness, 1 + self.brightness).to(x.dtype).view(b, 1, 1, 1)
        contrast = uniform(1 - self.contrast, 1 + self.contrast).to(x.dtype).view(b, 1, 1, 1)
        mean = out.mean(dim=(2, 3), keepdim=True)
        return ((out - mean) * contrast + mean) * gain


def view_shifts(images: torch.Tensor, views, seed: int = 0) -> dict[str, dict[str, float]]:
    """How far ``views(x, g)`` moves each image's colour and brightness, against how much images differ.

    Args:
        images: (N, 3, H, W) RGB in [0, 1] (e.g. fundus photographs of N people).
        views: a view pipeline, e.g. :class:`FundusViews` or ``imaging.augment.ViewAugment``.

    Returns:
        ``{statistic: {"population_sd", "view_shift_sd"}}`` for ``log_green_red`` (log of the mean green
        over the mean red: the hue that pigmentation moves) and ``log_brightness`` (log mean intensity).
        A view shift SD near or above the population SD trains an encoder to ignore that statistic.
    """
    g = torch.Generator().manual_seed(seed)
    before, after = _colour_statistics(images), _colour_statistics(views(images, g))
    return {
        name: {
            "population_sd": round(float(np.std(before[name])), 4),
            "view_shift_sd": round(float(np.std(after[name] - before[name])), 4),
        }
        for name in before
    }


def _colour_statistics(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean colour of the fundus (pixels brighter than 5% of full scale: the black surround is left out,
    so a crop or rotation that changes how much surround a view shows does not count as a colour shift)."""
    images = images.double().clamp_min(0)
    inside = (images.mean(dim=1, keepdim=True) > 0.05).double()  # (N, 1, H, W)
    mean = (images * inside).sum(dim=(2, 3)) / inside.sum(dim=(2, 3)).clamp_min(1)  # (N, 3)
    mean = mean.clamp_min(1e-6)
    return {
        "log_green_red": (mean[:, 1] / mean[:, 0]).log().numpy(),
        "log_brightness": mean.mean(dim=1).log().numpy(),
    }


class ImagesOnly(Dataset):
    """The (C, H, W) image tensors of a :class:`MultimodalDataset` (no IDs, no augmentation)."""

    def __init__(self, images: MultimodalDataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]["image"]


def random_encoder(name: str, in_chans: int, seed: int) -> nn.Module:
    """A freshly initialised encoder (the 'no pretraining' baseline)."""
    torch.manual_seed(seed)
    return create_encoder(name, in_chans=in_chans)


def simclr_task(encoder: nn.Module):
    """2D SimCLR (NT-Xent, τ = 0.1) on ``encoder`` with :class:`FundusViews` as its view pipeline."""
    task = create_task(
        "simclr",
        encoder=encoder,
        dim=2,
        crop_scale=(1.0, 1.0),  # the task's own view pipeline does nothing: FundusViews replaces it
        flip=0.0,
        rotate=False,
        brightness=0.0,
        contrast=0.0,
        blur=0.0,
        noise=0.0,
        cutout=0.0,
    )
    task.augment = FundusViews()
    return task


def train_simclr(
    images: MultimodalDataset,
    out: Path,
    encoder_name: str,
    in_chans: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
) -> nn.Module:
    """2D SimCLR with fundus views (:class:`FundusViews`) for ``steps`` steps; returns the trained encoder.

    A finished run in ``out`` is reused (``resume``)."""
    torch.manual_seed(seed)
    task = simclr_task(create_encoder(encoder_name, in_chans=in_chans))
    config = TrainingConfig(
        out=str(out),
        max_steps=steps,
        epochs=None,
        batch_size=batch_size,
        drop_last=True,
        lr=lr,
        weight_decay=1e-4,
        warmup_steps=max(1, steps // 10),
        seed=seed,
        log_every=max(1, steps // 10),
        checkpoint_every=0,
        progress=progress,
    )
    Trainer(task, task_loss, TaskItems(ImagesOnly(images)), config, collate_fn=TaskCollate(task)).fit(
        resume=True
    )
    return task.encoder
