"""Image-to-image networks for 2D and 3D: a small U-Net generator and a PatchGAN discriminator.

Both follow pix2pix (Isola et al., CVPR 2017) at a size that trains on a CPU: instance norm, LeakyReLU
in the discriminator, skip connections in the generator. ``dim`` picks 2D or 3D layers.

>>> import torch
>>> generator = UNetGenerator(dim=3, width=4, depth=2)
>>> generator(torch.randn(2, 1, 10, 12, 9)).shape  # any size: padded inside, cropped back
torch.Size([2, 1, 10, 12, 9])
>>> PatchDiscriminator(dim=2, in_chans=2, width=4, n_layers=2)(torch.randn(1, 2, 32, 32)).shape
torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _layers(dim: int) -> tuple[type[nn.Module], type[nn.Module]]:
    if dim == 2:
        return nn.Conv2d, nn.InstanceNorm2d
    if dim == 3:
        return nn.Conv3d, nn.InstanceNorm3d
    raise ValueError(f"dim must be 2 or 3, got {dim}")


class _Block(nn.Module):
    """Two 3×3(×3) convolutions, each followed by instance norm and ReLU."""

    def __init__(self, dim: int, in_chans: int, out_chans: int):
        super().__init__()
        conv, norm = _layers(dim)
        self.body = nn.Sequential(
            conv(in_chans, out_chans, 3, padding=1),
            norm(out_chans, affine=True),
            nn.ReLU(inplace=True),
            conv(out_chans, out_chans, 3, padding=1),
            norm(out_chans, affine=True),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNetGenerator(nn.Module):
    """U-Net: (B, in_chans, *S) → (B, out_chans, *S), widths ``width · 2^level`` for ``depth`` levels.

    Inputs of any size are padded (replicate) to a multiple of 2^(depth−1) and the output cropped back.
    The output is linear (no tanh): intensities are standardised, not scaled to [−1, 1].
    """

    def __init__(self, dim: int = 3, in_chans: int = 1, out_chans: int = 1, width: int = 16, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        conv, _ = _layers(dim)
        self.dim, self.depth = dim, depth
        widths = [width * 2**level for level in range(depth)]
        self.down = nn.ModuleList()
        chans = in_chans
        for w in widths:
            self.down.append(_Block(dim, chans, w))
            chans = w
        self.up = nn.ModuleList(_Block(dim, widths[i + 1] + widths[i], widths[i]) for i in range(depth - 1))
        self.out = conv(widths[0], out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        multiple = 2 ** (self.depth - 1)
        pad: list[int] = []
        for size in reversed(spatial):  # F.pad lists the last axis first
            pad += [0, (-size) % multiple]
        h = F.pad(x, pad, mode="replicate") if any(pad) else x
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                h = F.max_pool2d(h, 2) if self.dim == 2 else F.max_pool3d(h, 2)
            h = block(h)
            skips.append(h)
        for level in reversed(range(self.depth - 1)):
            mode = "bilinear" if self.dim == 2 else "trilinear"
            h = F.interpolate(h, size=skips[level].shape[2:], mode=mode, align_corners=False)
            h = self.up[level](torch.cat([h, skips[level]], dim=1))
        y = self.out(h)
        return y[(slice(None), slice(None), *(slice(0, s) for s in spatial))]


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, in_chans, *S) → (B, 1, *S / 2^n_layers) real/fake logits, one per receptive patch."""

    def __init__(self, dim: int = 3, in_chans: int = 2, width: int = 16, n_layers: int = 2):
        super().__init__()
        conv, norm = _layers(dim)
        layers: list[nn.Module] = [conv(in_chans, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        chans = width
        for level in range(1, n_layers):
            out = width * 2 ** min(level, 3)
            layers += [
                conv(chans, out, 4, stride=2, padding=1),
                norm(out, affine=True),
                nn.LeakyReLU(0.2, True),
            ]
            chans = out
        layers += [conv(chans, chans, 3, padding=1), norm(chans, affine=True), nn.LeakyReLU(0.2, True)]
        layers.append(conv(chans, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


__all__ = ["PatchDiscriminator", "UNetGenerator"]
