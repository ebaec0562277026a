"""SimCLR (Chen et al. 2020) for 3D volumes and 2D images, at whole-image or patch level.

Two augmented views of each image (random resized crop, flips, 90° rotations, brightness/contrast,
Gaussian blur, noise, cut-out; ``imaging.augment.ViewAugment``) go through the shared encoder and an MLP
projection head; NT-Xent makes the two views of an image agree against the other 2B − 2 views.
``level="patch"`` first cuts ``patches_per_image`` random sub-volumes of ``patch_size`` out of each image
and contrasts those (local features); ``level="image"`` contrasts whole images.

From Python on an in-memory batch (the ContIG image-only baseline on RGB fundus photographs)::

    task = create_task("simclr", encoder=create_encoder("resnet18", in_chans=3), dim=2)
    batch = task.make_batch(images, torch.Generator().manual_seed(0))  # images (B, 3, H, W)
    task(batch)["loss"].backward()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from imaging.augment import ViewAugment, random_crop
from imaging.errors import ImagingError
from imaging.registry import TASKS
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import check_choice, mlp
from imaging.ssl.losses import nt_xent


@TASKS.register("simclr")
class SimCLR(ProxyTask):
    """Two views, MLP projection, NT-Xent.

    Args:
        encoder: shared encoder.
        dim: 2 or 3.
        level: ``"image"`` (= ``"volume"``: whole image/volume) or ``"patch"``.
        patch_size: patch side(s) at patch level (default half the image side).
        patches_per_image: patches cut from each image at patch level.
        projection_dim, hidden: the projection head (2-layer MLP with BatchNorm).
        temperature: NT-Xent temperature.
        crop_scale: random-resized-crop volume fraction; per_channel: colour jitter per channel (RGB).
        flip, rotate, brightness, contrast, blur, noise, noise_std, cutout: ``ViewAugment`` settings.
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        level: Literal["image", "volume", "patch"] = "image",
        patch_size: int | Sequence[int] | None = None,
        patches_per_image: int = 1,
        projection_dim: int = 128,
        hidden: int = 512,
        temperature: float = 0.1,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        per_channel: bool = False,
        flip: float = 0.5,
        rotate: bool = True,
        brightness: float = 0.4,
        contrast: float = 0.4,
        blur: float = 0.5,
        noise: float = 0.5,
        noise_std: float = 0.1,
        cutout: float = 0.3,
    ):
        super().__init__(encoder, dim)
        check_choice("simclr", "level", level, ("image", "volume", "patch"))
        self.level, self.patch_size, self.patches_per_image = level, patch_size, patches_per_image
        self.temperature = temperature
        self.projector = mlp(encoder.num_features, hidden, projection_dim)
        self.augment = ViewAugment(
            crop_scale=tuple(crop_scale),
            flip=flip,
            rotate=rotate,
            brightness=brightness,
            contrast=contrast,
            per_channel=per_channel,
            blur=blur,
            noise=noise,
            noise_std=noise_std,
            cutout=cutout,
        )

    def _patches(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        spatial = images.shape[2:]
        if self.patch_size is None:
            size = tuple(max(1, n // 2) for n in spatial)
        else:
            size = (
                (self.patch_size,) * self.dim if isinstance(self.patch_size, int) else tuple(self.patch_size)
            )
        if any(p > n for p, n in zip(size, spatial, strict=True)):
            raise ImagingError(
                f"simclr patch_size {size} is larger than the images {tuple(spatial)}; "
                "lower task_options.patch_size or raise size"
            )
        repeated = images.repeat_interleave(self.patches_per_image, 0)
        return random_crop(repeated, generator, size)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, C, *spatial) → {"view1", "view2"}: (N, C, *size), N = B (× patches_per_image)."""
        source = self._patches(images, generator) if self.level == "patch" else images
        return {"view1": self.augment(source, generator), "view2": self.augment(source, generator)}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n = batch["view1"].shape[0]
        features = self.encoder.forward_features(torch.cat([batch["view1"], batch["view2"]]))
        z = self.projector(features)
        z1, z2 = z[:n], z[n:]
        with torch.no_grad():  # how often the other view is the nearest of all 2N − 1 candidates
            zn = nn.functional.normalize(z.detach(), dim=1)
            similarity = (zn @ zn.T).fill_diagonal_(-2.0)
            partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
            accuracy = (similarity.argmax(1) == partner).float().mean()
        return {"loss": nt_xent(z1, z2, self.temperature), "accuracy": accuracy}

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """1 / (2N − 1): the other view is one of the 2N − 1 candidates."""
        return 1.0 / max(1, 2 * batch["view1"].shape[0] - 1)
