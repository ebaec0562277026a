"""Contrastive predictive coding on a grid of patches (van den Oord et al. 2018; 3D as in Taleb et al. 2020).

The image is covered by an overlapping grid of patches (stride = half the patch by default), each
encoded by the shared encoder into a code z. Along the first spatial axis ("rows", D in 3D, H in 2D) an
autoregressive context network (a GRU over rows, or a masked convolution that sees only rows ≤ t) gives
c_t; a linear map per step k predicts z_{t+k} from c_t. The loss is InfoNCE: each prediction must pick
its true patch code among *all* patch codes of the batch. ``loss="binary"`` is the original 3D code's
logistic loss with a single random negative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import TASKS
from imaging.ssl import _grid
from imaging.ssl.base import ProxyTask
from imaging.ssl.heads import check_choice, encode_patches
from imaging.ssl.losses import binary_single_negative, info_nce


class MaskedConvContext(nn.Module):
    """Causal convolutions over the code grid: the output at row t sees rows ≤ t only.

    (B, F, rows, *rest) → same shape. Kernel ``kernel`` along rows (padded above only), 3 across.
    """

    def __init__(self, features: int, dim: int, layers: int = 2, kernel: int = 3):
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        size = (kernel,) + (3,) * (dim - 1)
        self.convs = nn.ModuleList(conv(features, features, size) for _ in range(layers))
        self.pad = [1, 1] * (dim - 1) + [kernel - 1, 0]  # F.pad order: last axis first, rows last

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for index, conv in enumerate(self.convs):
            z = conv(F.pad(z, self.pad))
            if index < len(self.convs) - 1:
                z = F.relu(z)
        return z


class GRUContext(nn.Module):
    """A GRU along rows, run independently for every position across the other axes."""

    def __init__(self, features: int):
        super().__init__()
        self.gru = nn.GRU(features, features, batch_first=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, f, rows, *rest = z.shape
        sequences = z.flatten(3).permute(0, 3, 2, 1).reshape(-1, rows, f)  # (B·rest, rows, F)
        context, _ = self.gru(sequences)
        return context.reshape(b, -1, rows, f).permute(0, 3, 2, 1).reshape(b, f, rows, *rest)


@TASKS.register("cpc")
class CPC(ProxyTask):
    """Predict the codes of patches in later rows from the context of earlier rows.

    Args:
        encoder: shared encoder, fed (B·K, C, *patch).
        dim: 2 or 3.
        patch_size: patch side(s); default: a quarter of the image side, rounded to ``patch_multiple``.
        stride: grid stride; default half the patch (overlapping patches); = patch_size for disjoint.
        code_size: width of the patch codes z.
        context: ``"gru"`` or ``"masked_conv"``.
        predict_steps: predict rows t+1 … t+predict_steps.
        loss: ``"infonce"`` (all other patches of the batch are negatives) or ``"binary"`` (one negative).
        temperature: InfoNCE temperature on L2-normalised codes.
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int = 3,
        patch_size: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        patch_multiple: int = 8,
        code_size: int = 128,
        context: Literal["gru", "masked_conv"] = "gru",
        predict_steps: int = 2,
        loss: Literal["infonce", "binary"] = "infonce",
        temperature: float = 0.1,
    ):
        super().__init__(encoder, dim)
        check_choice("cpc", "context", context, ("gru", "masked_conv"))
        check_choice("cpc", "loss", loss, ("infonce", "binary"))
        self.patch_size, self.stride, self.patch_multiple = patch_size, stride, patch_multiple
        self.predict_steps, self.loss_kind, self.temperature = predict_steps, loss, temperature
        self.project = nn.Linear(encoder.num_features, code_size)
        self.context = GRUContext(code_size) if context == "gru" else MaskedConvContext(code_size, dim)
        self.predictors = nn.ModuleList(nn.Linear(code_size, code_size) for _ in range(predict_steps))

    def geometry(self, spatial: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(patch, stride) for images of this spatial size."""
        if self.patch_size is None:
            m = self.patch_multiple
            patch = tuple(max(m, (n // 4) // m * m) for n in spatial)
        else:
            patch = (
                (self.patch_size,) * self.dim if isinstance(self.patch_size, int) else tuple(self.patch_size)
            )
        if self.stride is None:
            stride = tuple(max(1, p // 2) for p in patch)
        else:
            stride = (self.stride,) * self.dim if isinstance(self.stride, int) else tuple(self.stride)
        return patch, stride

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, C, *spatial) → {"patches": (B, K, C, *patch) in grid order, "grid": (dim,) grid shape}."""
        patch, stride = self.geometry(images.shape[2:])
        origins, grid = _grid.sliding_origins(images.shape[2:], patch, stride, images.shape[0], generator)
        if grid[0] <= self.predict_steps:
            raise ImagingError(
                f"a grid of {grid[0]} rows cannot predict {self.predict_steps} rows ahead; "
                "use larger images, a smaller patch_size/stride or fewer predict_steps"
            )
        return {"patches": _grid.extract(images, origins, patch), "grid": torch.tensor(grid)}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        patches = batch["patches"]
        b, grid = patches.shape[0], tuple(int(n) for n in batch["grid"].tolist())
        z = self.project(encode_patches(self.encoder, patches))  # (B, K, F)
        z_grid = z.transpose(1, 2).reshape(b, -1, *grid)  # (B, F, rows, *rest)
        context = self.context(z_grid)
        codes = F.normalize(z.reshape(-1, z.shape[-1]), dim=1)  # (B·K, F) all candidates
        index = torch.arange(b * z.shape[1], device=z.device).reshape(b, *grid)
        losses, accuracies = [], []
        for k, predictor in enumerate(self.predictors, start=1):
            c = context[:, :, : grid[0] - k].movedim(1, -1).reshape(-1, context.shape[1])
            prediction = F.normalize(predictor(c), dim=1)
            target = index[:, k:].reshape(-1)  # rows t + k, same order as c
            if self.loss_kind == "infonce":
                loss, acc = info_nce(prediction, codes, target, self.temperature)
                accuracies.append(acc.detach())
            else:
                shift = torch.randint(1, len(codes), target.shape, device=z.device)
                negatives = codes[(target + shift) % len(codes)]
                loss = binary_single_negative(prediction / self.temperature, codes[target], negatives)
            losses.append(loss)
        out = {"loss": torch.stack(losses).mean()}
        if accuracies:
            out["accuracy"] = torch.stack(accuracies).mean()
        return out

    def chance_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float | None:
        """1 / (B·K) with InfoNCE (every patch code of the batch is a candidate); None with the binary loss."""
        if self.loss_kind != "infonce":
            return None
        return 1.0 / (batch["patches"].shape[0] * batch["patches"].shape[1])
