"""SimCLR (Chen et al. 2020) for 3D volumes and 2D images: a patch grid per volume, or whole images.

Two augmented views (random resized crop, flips, 90° rotations, brightness/contrast, Gaussian blur,
noise, cut-out; ``imaging.augment.ViewAugment``) go through the shared encoder and a projection head;
NT-Xent makes the two views agree against negatives. Three modes:

* ``mode="patches"`` (the 3D default; 3D SimCLR of Ali et al. 2021): each volume is cut into a grid of
  ``grid`` cells per axis, one patch per cell (jittered inside its cell when the cell is larger). Two
  views of each patch are the positive pair; the negatives are the views of the *other patches of the
  same volume* (``negatives="batch"`` adds the patches of every other volume of the batch). Temperature
  0.05, a *linear* projection head, and no flips or rotations (a turned patch would pass for its mirror
  twin, a negative).
* ``mode="volume"`` (alias ``"image"``; the 2D default): whole images contrasted across the batch,
  temperature 0.1 and a 2-layer MLP head with BatchNorm (Chen et al.'s setting).
* ``mode="random_patches"``: ``patches_per_image`` random sub-volumes of ``patch_size`` per image,
  contrasted across the batch like whole images.

``level`` is the former name of the choice (``image``/``volume`` → ``volume``, ``patch`` →
``random_patches``). ``temperature`` and ``head`` default per mode and can be set explicitly.

From Python on an in-memory batch (the ContIG image-only baseline on RGB fundus photographs)::

    task = create_task("simclr", encoder=create_encoder("resnet18", in_chans=3), dim=2)
    batch = task.make_batch(images, torch.Generator().manual_seed(0))  # images (B, 3, H, W)
    task(batch)["loss"].backward()

>>> from imaging.registry import create_encoder, create_task
>>> task = create_task("simclr", encoder=create_encoder("unet3d", base_width=4, depth=2), dim=3)
>>> task.mode, task.temperature, task.head_type, tuple(task.make_batch(torch.randn(2, 1, 16, 16, 16),
...     torch.Generator().manual_seed(0))["view1"].shape)
('patches', 0.05, 'linear', (2, 8, 1, 8, 8, 8))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from imaging.augment import ViewAugment, random_crop
from imaging.errors import ImagingError
from imaging.registry import TASKS
from imaging.ssl import _grid
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import check_choice, mlp, pooled_features, pooled_width
from imaging.ssl.losses import nt_xent

MODES = ("patches", "volume", "image", "random_patches")
LEVELS = {"image": "volume", "volume": "volume", "patch": "random_patches"}
# Per mode: (temperature, projection head). Patches follow Ali et al. 2021, whole images Chen et al. 2020.
DEFAULTS = {"patches": (0.05, "linear"), "volume": (0.1, "mlp"), "random_patches": (0.1, "mlp")}


@TASKS.register("simclr")
class SimCLR(ProxyTask):
    """Two views, projection head, NT-Xent (see the module docstring for the modes).

    Args:
        encoder: shared encoder.
        dim: 2 or 3.
        mode: ``"patches"``, ``"volume"`` (= ``"image"``) or ``"random_patches"``; None: ``"patches"``
            in 3D, ``"volume"`` in 2D.
        level: former name of ``mode`` (``image``/``volume``/``patch``); give one of the two.
        grid: cells per axis of the patch grid (``mode="patches"``).
        patch_size: patch side(s); ``patches``: default the cell side rounded down to a multiple of
            ``patch_multiple``; ``random_patches``: default half the image side.
        patch_multiple: default grid patches are multiples of this (``contig ssl`` sets a U-Net's
            2**(depth−1)); a patch reaching the deepest level as one voxel is refused.
        negatives: ``"volume"`` (other patches of the same volume only) or ``"batch"`` (all patches).
        patches_per_image: random patches cut from each image (``mode="random_patches"``).
        projection_dim, hidden: projection output width; hidden width of the MLP head.
        head: ``"linear"`` or ``"mlp"`` (2 layers with BatchNorm); None: per mode (linear for patches).
        temperature: NT-Xent temperature; None: per mode (0.05 for patches, else 0.1).
        pool_grid: the projection reads the deepest feature map average-pooled to this many cells per
            axis (``imaging.ssl.heads.pooled_features``); None: the encoder's ``forward_features``.
        crop_scale: random-resized-crop volume fraction; per_channel: colour jitter per channel (RGB).
        flip, rotate: flip probability per axis and 90° rotations; None: off for patches (see below),
            else 0.5 and on.
        brightness, contrast, blur, noise, noise_std, cutout: the other ``ViewAugment`` settings.

    Patches of one volume are each other's negatives, so a view must not be mapped onto another patch:
    a flipped or turned patch of a roughly symmetric brain looks like its mirror-image twin in the same
    volume. With flips and rotations on, patch-mode SimCLR stayed at chance (loss log(2K − 1)) on the
    synthetic MRI; without them it learns. They stay on for whole images.
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        mode: Literal["patches", "volume", "image", "random_patches"] | None = None,
        level: Literal["image", "volume", "patch"] | None = None,
        grid: int | Sequence[int] = 2,
        patch_size: int | Sequence[int] | None = None,
        patch_multiple: int = 1,
        negatives: Literal["volume", "batch"] = "volume",
        patches_per_image: int = 1,
        projection_dim: int = 128,
        hidden: int = 512,
        head: Literal["linear", "mlp"] | None = None,
        temperature: float | None = None,
        pool_grid: int | None = None,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        per_channel: bool = False,
        flip: float | None = None,
        rotate: bool | None = None,
        brightness: float = 0.4,
        contrast: float = 0.4,
        blur: float = 0.5,
        noise: float = 0.5,
        noise_std: float = 0.1,
        cutout: float = 0.3,
    ):
        super().__init__(encoder, dim)
        if level is not None:
            check_choice("simclr", "level", level, tuple(LEVELS))
            if mode is not None:
                raise ImagingError(
                    f"simclr: level={level!r} and mode={mode!r} both given; set only task_options.mode"
                )
            mode = LEVELS[level]
        if mode is None:
            mode = "patches" if dim == 3 else "volume"
        check_choice("simclr", "mode", mode, MODES)
        check_choice("simclr", "negatives", negatives, ("volume", "batch"))
        self.mode = "volume" if mode == "image" else mode
        self.level = level  # kept for configurations written before ``mode`` existed
        self.grid = (grid,) * dim if isinstance(grid, int) else tuple(grid)
        if len(self.grid) != dim or min(self.grid) < 1 or (self.mode == "patches" and max(self.grid) < 2):
            raise ImagingError(
                f"simclr: grid={grid!r} must give {dim} cells per axis (at least 2 along one axis, so a "
                "volume holds several patches); set task_options.grid"
            )
        self.patch_size, self.patch_multiple = patch_size, patch_multiple
        self.patches_per_image, self.negatives = patches_per_image, negatives
        default_temperature, default_head = DEFAULTS[self.mode]
        self.temperature = float(default_temperature if temperature is None else temperature)
        self.head_type = head or default_head
        check_choice("simclr", "head", self.head_type, ("linear", "mlp"))
        self.pool_grid = pool_grid
        width = encoder.num_features if self.pool_grid is None else pooled_width(encoder, dim, self.pool_grid)
        if self.head_type == "linear":
            self.projector: nn.Module = nn.Linear(width, projection_dim)
        else:
            self.projector = mlp(width, hidden, projection_dim)
        geometric = self.mode != "patches"
        self.augment = ViewAugment(
            crop_scale=tuple(crop_scale),
            flip=(0.5 if geometric else 0.0) if flip is None else flip,
            rotate=geometric if rotate is None else rotate,
            brightness=brightness,
            contrast=contrast,
            per_channel=per_channel,
            blur=blur,
            noise=noise,
            noise_std=noise_std,
            cutout=cutout,
        )

    def grid_patch(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Patch side per axis of ``mode="patches"`` for images of ``spatial`` voxels.

        Raises:
            ImagingError: patches larger than their cells, or default patches that an encoder pooling by
                ``patch_multiple`` would see as one voxel (names the smallest workable image side).
        """
        cells = [n // k for n, k in zip(spatial, self.grid, strict=True)]
        if self.patch_size is not None:
            size = (
                (self.patch_size,) * self.dim if isinstance(self.patch_size, int) else tuple(self.patch_size)
            )
        else:
            size = tuple((c // self.patch_multiple) * self.patch_multiple for c in cells)
        if any(s < 1 or s > c for s, c in zip(size, cells, strict=True)):
            raise ImagingError(
                f"simclr: images of {tuple(spatial)} in a {self.grid} grid give cells of {tuple(cells)} "
                f"voxels, too small for patches of {size}; use larger images (size=...), a smaller "
                "task_options.grid or task_options.patch_size"
            )
        if (
            self.patch_size is None
            and self.patch_multiple > 1
            and all(s // self.patch_multiple <= 1 for s in size)
        ):
            smallest = tuple(2 * self.patch_multiple * k for k in self.grid)
            raise ImagingError(
                f"simclr: patches of {size} voxels reach an encoder pooling by {self.patch_multiple} as one "
                f"voxel, where it cannot learn; use images of at least {smallest} voxels (size=...), a "
                "smaller task_options.grid or a shallower encoder"
            )
        return size

    def _random_patches(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
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
        """(B, C, *spatial) → {"view1", "view2"}.

        ``patches``: (B, K, C, *patch), K = prod(grid) patches per volume in grid (C) order;
        ``volume``: (B, C, *spatial); ``random_patches``: (B·patches_per_image, C, *patch).
        """
        if self.mode != "patches":
            source = self._random_patches(images, generator) if self.mode == "random_patches" else images
            return {"view1": self.augment(source, generator), "view2": self.augment(source, generator)}
        b, spatial = images.shape[0], images.shape[2:]
        patch = self.grid_patch(spatial)
        origins = _grid.jittered_origins(spatial, self.grid, patch, b, generator)
        patches = _grid.extract(images, origins, patch)  # (B, K, C, *patch)
        flat = patches.flatten(0, 1)
        views = [self.augment(flat, generator).reshape(patches.shape) for _ in range(2)]
        return {"view1": views[0], "view2": views[1]}

    def _groups(self, view: torch.Tensor) -> torch.Tensor | None:
        """(N,) volume index of each flattened patch in ``patches`` mode with same-volume negatives."""
        if view.dim() != self.dim + 3 or self.negatives == "batch":
            return None
        b, k = view.shape[:2]
        return torch.arange(b, device=view.device).repeat_interleave(k)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        groups = self._groups(batch["view1"])
        view1, view2 = (batch[key].flatten(0, batch[key].dim() - self.dim - 2) for key in ("view1", "view2"))
        n = view1.shape[0]
        views = torch.cat([view1, view2])
        if self.pool_grid is None:
            features = self.encoder.forward_features(views)
        else:
            features = pooled_features(
                self.encoder, views, self.pool_grid, "simclr views", "size=[...] or task_options.grid"
            )
        z = self.projector(features)
        z1, z2 = z[:n], z[n:]
        with torch.no_grad():  # how often the other view is the nearest of the candidates
            zn = nn.functional.normalize(z.detach(), dim=1)
            similarity = (zn @ zn.T).fill_diagonal_(-2.0)
            if groups is not None:
                both = torch.cat([groups, groups])
                similarity = similarity.masked_fill(both[:, None] != both[None, :], -2.0)
            partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
            accuracy = (similarity.argmax(1) == partner).float().mean()
        return {"loss": nt_xent(z1, z2, self.temperature, groups), "accuracy": accuracy}

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """1 / (number of candidates): 2K − 1 per volume (same-volume negatives), else 2N − 1."""
        view = batch["view1"]
        if self._groups(view) is not None:
            return 1.0 / max(1, 2 * view.shape[1] - 1)
        n = view.flatten(0, view.dim() - self.dim - 2).shape[0]
        return 1.0 / max(1, 2 * n - 1)
