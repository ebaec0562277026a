"""The ContIG model: one image trunk and one genetic tower per modality, projected pairwise.

As in ContIG (Taleb et al. 2022) the image trunk is shared and each genetic modality m has its own image
projection head (``head_layers = 2``: Linear → ReLU → Linear) into the space it shares with m's tower, so
aligning with one modality does not force the others' geometry. Towers come from the two factories
(``imaging.create_encoder``, ``genetics.create_encoder``); the model never knows whether a tower is 2D, 3D
or genetic. A genetic tower runs only on the people who have that modality, so padded rows of absent
people never reach BatchNorm statistics, and their output rows are exact zeros with no path to any
parameter. The temperature lives here (fixed by default, as in the paper; learnable open_clip style).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from genetics.encoders import create_encoder as create_genetic_encoder
from imaging.registry import create_encoder as create_image_encoder


@dataclass
class TowerSpec:
    """One genetic modality's tower: encoder name, input width, and encoder keyword arguments."""

    encoder: str = "mlp_h1"
    in_features: int = 0
    kwargs: dict = field(default_factory=dict)


def projection_head(in_features: int, out_features: int, layers: int) -> nn.Module:
    """(B, in_features) → (B, out_features): ``layers = 1`` a Linear, 2 a Linear → ReLU → Linear MLP."""
    if layers == 1:
        return nn.Linear(in_features, out_features)
    if layers == 2:
        return nn.Sequential(
            nn.Linear(in_features, in_features), nn.ReLU(), nn.Linear(in_features, out_features)
        )
    raise ValueError(f"head_layers must be 1 or 2, got {layers}")


class ContIG(nn.Module):
    """Image trunk + one image head per modality + genetic towers with linear heads, ``embed_dim`` wide.

    Args:
        image_encoder: image encoder name (any timm model or a registered contig encoder).
        towers: modality name → :class:`TowerSpec`.
        embed_dim: shared embedding width D.
        in_chans: image channels; image_kwargs: extra image-encoder arguments.
        init_temperature: τ (at start, when learned); the model learns log(1/τ) if ``learn_temperature``.
        head_layers: depth of each image projection head (1 linear, 2 MLP).
        sigmoid_bias: initial SigLIP logit bias (None: no bias parameter, for InfoNCE).
    """

    def __init__(
        self,
        towers: dict[str, TowerSpec],
        image_encoder: str = "resnet18",
        embed_dim: int = 128,
        in_chans: int = 3,
        image_kwargs: dict | None = None,
        init_temperature: float = 0.1,
        learn_temperature: bool = False,
        head_layers: int = 2,
        sigmoid_bias: float | None = None,
    ):
        super().__init__()
        self.image_tower = create_image_encoder(image_encoder, in_chans=in_chans, **(image_kwargs or {}))
        width = self.image_tower.num_features
        self.image_heads = nn.ModuleDict(
            {name: projection_head(width, embed_dim, head_layers) for name in towers}
        )
        self.genetic_towers = nn.ModuleDict(
            {
                name: create_genetic_encoder(spec.encoder, spec.in_features, **spec.kwargs)
                for name, spec in towers.items()
            }
        )
        self.genetic_heads = nn.ModuleDict(
            {name: nn.Linear(tower.num_features, embed_dim) for name, tower in self.genetic_towers.items()}
        )
        scale = torch.tensor(math.log(1.0 / init_temperature))
        self.log_logit_scale = nn.Parameter(scale, requires_grad=learn_temperature)
        self.logit_bias = None if sigmoid_bias is None else nn.Parameter(torch.tensor(float(sigmoid_bias)))
        self.embed_dim = embed_dim

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp(learned log-scale), clamped at 100 as in CLIP."""
        return self.log_logit_scale.exp().clamp(max=100.0)

    def project_image(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Trunk features (B, num_features) → modality → (B, embed_dim)."""
        return {name: head(features) for name, head in self.image_heads.items()}

    def encode_image(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, H, W) or (B, C, D, H, W) → modality → (B, embed_dim)."""
        return self.project_image(self.image_tower.forward_features(images))

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Trunk (pre-projection) features (B, num_features), what ``contig embed`` exports."""
        return self.image_tower.forward_features(images)

    def encode_genetics(self, name: str, values: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """(U, F) inputs and (U,) availability → (U, embed_dim); absent rows are zeros, never computed."""
        out = values.new_zeros((values.shape[0], self.embed_dim))
        rows = torch.nonzero(available).flatten()
        if rows.numel():
            tower = self.genetic_towers[name]
            out = out.index_put((rows,), self.genetic_heads[name](tower.forward_features(values[rows])))
        return out

    def forward(
        self, images: torch.Tensor, genetics: dict[str, torch.Tensor], available: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Embed a batch.

        Args:
            images: (B, ...) one row per image.
            genetics: modality → (U, F_m), one row per distinct person of the batch.
            available: modality → (U,) bool.

        Returns:
            ``image`` {modality: (B, D)}, ``genetics`` {modality: (U, D)}, ``logit_scale`` (), ``logit_bias`` or None.
        """
        return {
            "image": self.encode_image(images),
            "genetics": {
                name: self.encode_genetics(name, values, available[name])
                for name, values in genetics.items()
                if name in self.genetic_towers
            },
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
        }
