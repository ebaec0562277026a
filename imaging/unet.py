"""3D and 2D U-Net: an encoder with the contig encoder interface, a decoder with skips, and the whole net.

The encoder is what the proxy tasks pretrain and what ``contig finetune`` transfers; the decoder is
always initialised at random. Every level is two (conv → norm → ReLU) blocks; levels after the first
start with a 2× max-pool, so the input's spatial size must be divisible by ``2 ** (depth - 1)``.
Dropout layers are ``nn.Dropout3d`` / ``nn.Dropout2d`` (channel dropout), which MC dropout switches on
at inference (``imaging.finetune.mc_dropout``).

>>> import torch
>>> from imaging.registry import create_encoder
>>> encoder = create_encoder("unet3d", in_chans=1, base_width=4, depth=3)
>>> encoder.feature_channels, encoder.num_features
([4, 8, 16], 16)
>>> encoder.forward_features(torch.zeros(2, 1, 8, 8, 8)).shape
torch.Size([2, 16])
>>> UNet(encoder, num_classes=3)(torch.zeros(2, 1, 8, 8, 8)).shape
torch.Size([2, 3, 8, 8, 8])
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import ENCODERS

Norm = Literal["instance", "batch", "group", "none"]
_NORMS = ("instance", "batch", "group", "none")


def _conv(dim: int) -> type[nn.Module]:
    return nn.Conv3d if dim == 3 else nn.Conv2d


def _dropout(dim: int, p: float) -> nn.Module:
    """Channel dropout (``nn.Dropout3d``/``nn.Dropout2d``), or identity when ``p == 0``."""
    if p <= 0:
        return nn.Identity()
    return nn.Dropout3d(p) if dim == 3 else nn.Dropout2d(p)


class _InstanceNorm(nn.Module):
    """Affine instance norm that also accepts maps of one voxel (whose normalised value is 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self._warned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x[0, 0].numel() == 1:  # torch refuses one spatial element; x - mean is 0 there
            if self.training and not self._warned:
                self._warned = True
                warnings.warn(
                    "instance norm over a one-voxel map outputs a constant: nothing below this level "
                    "learns from it; feed larger inputs or use a shallower encoder (or norm=batch/group)",
                    stacklevel=2,
                )
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return (x * 0) + self.bias.view(shape)
        return nn.functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=1e-5)


def _norm(kind: str, dim: int, channels: int) -> nn.Module:
    if kind == "instance":
        return _InstanceNorm(channels)
    if kind == "batch":
        return (nn.BatchNorm3d if dim == 3 else nn.BatchNorm2d)(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two (conv 3 → norm → ReLU) layers, then channel dropout: (B, C_in, *S) → (B, C_out, *S)."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, norm: str, dropout: float):
        conv, bias = _conv(dim), norm == "none"
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, dim, out_channels),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, dim, out_channels),
            nn.ReLU(inplace=True),
            _dropout(dim, dropout),
        )


class UNetEncoder(nn.Module):
    """U-Net contracting path with the contig encoder interface.

    Args:
        dim: 3 (input (B, C, D, H, W)) or 2 (input (B, C, H, W)).
        in_chans: input channels (modalities).
        base_width: channels of the first level; level ``i`` has ``base_width * 2**i``.
        depth: number of levels (``depth - 1`` poolings).
        norm: ``instance``, ``batch``, ``group`` (up to 8 groups) or ``none``.
        dropout: channel-dropout probability after every level's block.

    Attributes:
        num_features: channels of the deepest level.
        feature_channels: channels per level, shallow → deep.
    """

    def __init__(
        self,
        dim: int = 3,
        in_chans: int = 1,
        base_width: int = 16,
        depth: int = 4,
        norm: Norm = "instance",
        dropout: float = 0.0,
    ):
        super().__init__()
        if dim not in (2, 3):
            raise ImagingError(f"U-Net dim must be 2 or 3, not {dim}")
        if norm not in _NORMS:
            raise ImagingError(f"U-Net norm {norm!r} is not one of {', '.join(_NORMS)}")
        if depth < 1 or base_width < 1 or in_chans < 1:
            raise ImagingError(
                f"U-Net needs depth, base_width and in_chans >= 1 (got {depth}, {base_width}, {in_chans})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ImagingError(f"U-Net dropout must be in [0, 1), got {dropout}")
        self.dim, self.in_chans, self.depth = dim, in_chans, depth
        self.base_width, self.norm, self.dropout = base_width, norm, dropout
        self.feature_channels = [base_width * 2**level for level in range(depth)]
        self.num_features = self.feature_channels[-1]
        pool = nn.MaxPool3d if dim == 3 else nn.MaxPool2d
        self.pool = pool(2)
        channels = [in_chans, *self.feature_channels]
        self.blocks = nn.ModuleList(
            ConvBlock(dim, channels[i], channels[i + 1], norm, dropout) for i in range(depth)
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_chans:
            expected = "(B, C, D, H, W)" if self.dim == 3 else "(B, C, H, W)"
            raise ImagingError(
                f"U-Net encoder expects {expected} with C={self.in_chans}, got shape {tuple(x.shape)}"
            )
        factor = 2 ** (self.depth - 1)
        if any(size % factor for size in x.shape[2:]):
            raise ImagingError(
                f"spatial size {tuple(x.shape[2:])} is not divisible by 2**(depth-1) = {factor}; "
                "crop/pad the images (size=...) or lower depth"
            )

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, *S) → per-level maps, shallow → deep; level ``i`` is (B, feature_channels[i], *S / 2**i)."""
        self._check(x)
        levels = []
        for index, block in enumerate(self.blocks):
            x = block(self.pool(x) if index else x)
            levels.append(x)
        return levels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → (B, num_features): global average of the deepest map."""
        return self.forward_levels(x)[-1].flatten(2).mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class UNetDecoder(nn.Module):
    """U-Net expanding path: upsample the deepest map, concatenate each skip, convolve; 1×1 to logits.

    Args:
        feature_channels: the encoder's channels per level, shallow → deep.
        num_classes: output channels (logits).
        dim: 3 or 2.
        dropout: channel dropout after every up-block (for MC dropout).
        norm: normalisation of the up-blocks.
    """

    def __init__(
        self,
        feature_channels: list[int],
        num_classes: int,
        dim: int = 3,
        dropout: float = 0.0,
        norm: Norm = "instance",
    ):
        super().__init__()
        if num_classes < 1:
            raise ImagingError(f"num_classes must be >= 1, got {num_classes}")
        self.dim, self.num_classes = dim, num_classes
        self.feature_channels = list(feature_channels)
        up = nn.ConvTranspose3d if dim == 3 else nn.ConvTranspose2d
        deep_to_shallow = self.feature_channels[::-1]
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for deeper, skip in zip(deep_to_shallow[:-1], deep_to_shallow[1:], strict=True):
            self.ups.append(up(deeper, skip, kernel_size=2, stride=2))
            self.blocks.append(ConvBlock(dim, 2 * skip, skip, norm, dropout))
        self.head = _conv(dim)(self.feature_channels[0], num_classes, kernel_size=1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Per-level maps (shallow → deep) → (B, num_classes, *S) logits at the shallowest resolution."""
        x = levels[-1]
        for up, block, skip in zip(self.ups, self.blocks, levels[-2::-1], strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class UNet(nn.Module):
    """Encoder + decoder with skips: (B, C, *S) → (B, num_classes, *S) logits.

    ``encoder`` must provide ``dim``, ``feature_channels`` and ``forward_levels`` (a ``UNetEncoder``).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        for attribute in ("dim", "feature_channels", "forward_levels"):
            if not hasattr(encoder, attribute):
                raise ImagingError(
                    f"a U-Net needs an encoder with {attribute!r} (a unet3d/unet2d encoder), "
                    f"got {type(encoder).__name__}"
                )
        self.encoder = encoder
        norm = getattr(encoder, "norm", "instance")
        self.decoder = UNetDecoder(encoder.feature_channels, num_classes, encoder.dim, dropout, norm)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.forward_levels(x))


@ENCODERS.register("unet3d")
def unet3d(**kwargs) -> UNetEncoder:
    """3D U-Net encoder; input (B, C, D, H, W)."""
    return UNetEncoder(dim=3, **kwargs)


@ENCODERS.register("unet2d")
def unet2d(**kwargs) -> UNetEncoder:
    """2D U-Net encoder; input (B, C, H, W)."""
    return UNetEncoder(dim=2, **kwargs)


__all__ = ["ConvBlock", "UNet", "UNetDecoder", "UNetEncoder", "unet2d", "unet3d"]
