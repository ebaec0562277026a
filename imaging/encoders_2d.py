"""2D image encoders: any timm backbone by name, with the contig encoder interface.

``forward_features(x)`` returns pooled (B, num_features) features; ``forward_feature_map(x)`` returns the
last (B, num_features, h, w) map (for patch models such as the caries MIL model). Weights are never
downloaded: ``pretrained`` must be a local checkpoint path or False.
"""

from __future__ import annotations

import os

import timm
import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import ENCODERS


def is_timm_model(name: str) -> bool:
    return name in timm.list_models() or timm.is_model(name)


class TimmEncoder(nn.Module):
    """A timm backbone without classifier.

    Args:
        name: timm model name (``resnet18``, ``resnet50``, ``convnext_tiny``, ...).
        in_chans: input channels (1 for radiographs, 3 for fundus photographs, ...).
        pretrained: False, or a path to a local checkpoint (timm or plain state dict; no network access).
        drop_rate: dropout before the (absent) classifier, kept for fine-tuning heads.
    """

    def __init__(
        self,
        name: str,
        in_chans: int = 3,
        pretrained: bool | str | os.PathLike = False,
        drop_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__()
        self.name = name
        self.model = timm.create_model(
            name, pretrained=False, in_chans=in_chans, num_classes=0, drop_rate=drop_rate, **kwargs
        )
        if pretrained:
            if not os.path.isfile(pretrained):
                raise ImagingError(
                    f"pretrained weights {pretrained!r} not found; contig never downloads weights, "
                    "pass a local checkpoint file"
                )
            state = torch.load(pretrained, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if len(missing) > 0.5 * len(self.model.state_dict()):
                raise ImagingError(
                    f"{pretrained}: does not look like weights for {name} ({len(missing)} missing)"
                )
        self.num_features = int(self.model.num_features)
        self.in_chans = in_chans

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, num_features, h, w)."""
        return self.model.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, num_features) pooled features."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@ENCODERS.register("resnet18")
def resnet18(**kwargs) -> TimmEncoder:
    """ResNet-18 (ContIG's image tower)."""
    return TimmEncoder("resnet18", **kwargs)


@ENCODERS.register("resnet50")
def resnet50(**kwargs) -> TimmEncoder:
    """ResNet-50."""
    return TimmEncoder("resnet50", **kwargs)
