"""Paired (pix2pix) and unpaired (CycleGAN) translation models whose forward returns one training loss.

The generic trainer minimises one ``"loss"`` with one optimizer, so each model sums its generator and
discriminator objectives into one scalar, and keeps them from leaking into each other:

- the generator's adversarial term runs the discriminator with *detached* copies of its weights
  (``torch.func.functional_call``), so it moves only the generator;
- the discriminator's terms see *detached* fakes, so they move only the discriminator.

One backward pass then gives both players exactly their own gradients (simultaneous gradient descent,
the common variant of the alternating pix2pix/CycleGAN updates).

>>> import torch
>>> model = Pix2Pix(dim=2, width=4, depth=2, disc_width=4)
>>> terms = model({"source": torch.randn(2, 1, 16, 16), "target": torch.randn(2, 1, 16, 16)})
>>> sorted(terms)
['d_loss', 'g_adv', 'l1', 'loss']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from imaging.translation.networks import PatchDiscriminator, UNetGenerator

GanLoss = Literal["lsgan", "vanilla"]


def gan_loss(logits: torch.Tensor, real: bool, kind: GanLoss = "lsgan") -> torch.Tensor:
    """Least-squares (Mao et al. 2017) or binary cross-entropy GAN loss against an all-real/all-fake target."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def frozen_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the parameters detached: gradients reach ``x`` but not the module's weights."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, (x,))


class Pix2Pix(nn.Module):
    """Paired translation for co-registered modalities: U-Net generator + conditional PatchGAN.

    ``forward({"source": (B, 1, *S), "target": (B, 1, *S)})`` returns ``loss = g_adv + l1_weight · l1 +
    d_loss`` and the terms; ``translate(source)`` is the generator.
    """

    def __init__(
        self,
        dim: int = 3,
        width: int = 16,
        depth: int = 3,
        disc_width: int = 16,
        disc_layers: int = 2,
        l1_weight: float = 100.0,
        gan: GanLoss = "lsgan",
    ):
        super().__init__()
        self.generator = UNetGenerator(dim, 1, 1, width, depth)
        self.discriminator = PatchDiscriminator(dim, 2, disc_width, disc_layers)
        self.l1_weight, self.gan = l1_weight, gan

    def translate(self, source: torch.Tensor) -> torch.Tensor:
        return self.generator(source)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        fake = self.generator(source)
        g_adv = gan_loss(frozen_call(self.discriminator, torch.cat([source, fake], 1)), True, self.gan)
        l1 = F.l1_loss(fake, target)
        real_logits = self.discriminator(torch.cat([source, target], 1))
        fake_logits = self.discriminator(torch.cat([source, fake.detach()], 1))
        d_loss = 0.5 * (gan_loss(real_logits, True, self.gan) + gan_loss(fake_logits, False, self.gan))
        loss = g_adv + self.l1_weight * l1 + d_loss
        return {"loss": loss, "g_adv": g_adv.detach(), "l1": l1.detach(), "d_loss": d_loss.detach()}


class CycleGAN(nn.Module):
    """Unpaired translation A → B (and B → A) with cycle consistency (Zhu et al., ICCV 2017).

    ``forward({"source": (B, 1, *S) from A, "target": (B, 1, *S) from B, not matched})`` returns
    ``loss = g_adv + cycle_weight · cycle + identity_weight · identity + d_loss``; ``translate`` is A → B.
    """

    def __init__(
        self,
        dim: int = 3,
        width: int = 16,
        depth: int = 3,
        disc_width: int = 16,
        disc_layers: int = 2,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.0,
        gan: GanLoss = "lsgan",
    ):
        super().__init__()
        self.g_ab = UNetGenerator(dim, 1, 1, width, depth)
        self.g_ba = UNetGenerator(dim, 1, 1, width, depth)
        self.d_a = PatchDiscriminator(dim, 1, disc_width, disc_layers)
        self.d_b = PatchDiscriminator(dim, 1, disc_width, disc_layers)
        self.cycle_weight, self.identity_weight, self.gan = cycle_weight, identity_weight, gan

    def translate(self, source: torch.Tensor) -> torch.Tensor:
        return self.g_ab(source)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a, b = batch["source"], batch["target"]
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        g_adv = gan_loss(frozen_call(self.d_b, fake_b), True, self.gan) + gan_loss(
            frozen_call(self.d_a, fake_a), True, self.gan
        )
        cycle = F.l1_loss(self.g_ba(fake_b), a) + F.l1_loss(self.g_ab(fake_a), b)
        loss = g_adv + self.cycle_weight * cycle
        terms = {"g_adv": g_adv.detach(), "cycle": cycle.detach()}
        if self.identity_weight > 0:
            identity = F.l1_loss(self.g_ab(b), b) + F.l1_loss(self.g_ba(a), a)
            loss = loss + self.identity_weight * identity
            terms["identity"] = identity.detach()
        d_loss = 0.0
        for disc, real, fake in ((self.d_b, b, fake_b), (self.d_a, a, fake_a)):
            d_loss = d_loss + 0.5 * (
                gan_loss(disc(real), True, self.gan) + gan_loss(disc(fake.detach()), False, self.gan)
            )
        terms["d_loss"] = d_loss.detach()
        return {"loss": loss + d_loss, **terms}


def create_translation_model(mode: Literal["paired", "unpaired"], **kwargs) -> nn.Module:
    """``"paired"`` → ``Pix2Pix(**kwargs)``, ``"unpaired"`` → ``CycleGAN(**kwargs)``."""
    if mode == "paired":
        kwargs.pop("cycle_weight", None), kwargs.pop("identity_weight", None)
        return Pix2Pix(**kwargs)
    if mode == "unpaired":
        kwargs.pop("l1_weight", None)
        return CycleGAN(**kwargs)
    raise ValueError(f"mode must be 'paired' or 'unpaired', got {mode!r}")


__all__ = ["CycleGAN", "Pix2Pix", "create_translation_model", "frozen_call", "gan_loss"]
