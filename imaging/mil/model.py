"""Patch multiple-instance models for image-level labels: the interpretable model and its baselines.

One backbone pass gives a feature map (B, C, h, w); average pooling in feature space with a
``patch_size × patch_size`` window (stride ``patch_stride``, in feature cells) turns it into K patch
embeddings; a shared MLP embeds them (B, K, D). Then, by ``pooling``:

``interpretable`` (Bergner et al. 2022)
    A shared per-patch classifier gives local probabilities p_k (the heatmap) and gated attention
    with a sigmoid gives weights w_k ∈ (0, 1); the image prediction is
    ``P = Σ_k w_k p_k / max(Σ_k w_k, k_min)``, so it is made of the heatmap and nothing else. With C ≥ 2
    classes p_k is a softmax and the missing mass ``max(k_min − Σ w, 0)`` goes to class 0 (healthy):
    ``P_c = (Σ_k w_k p_kc + [c = 0] · max(k_min − Σ_k w_k, 0)) / max(Σ_k w_k, k_min)``, i.e. as if
    k_min − Σ w healthy patches were attended too; the classes c ≥ 1 follow the formula exactly.
``attention`` (Ilse et al. 2018)
    Gated attention with a softmax over patches, bag embedding Σ_k α_k h_k, a linear classifier on it.
``mean`` / ``max``
    The per-patch classifier's p_k averaged, or the maximum taken, over patches.

Every model returns the same dict, and every model accepts ``keep`` (B, K) ∈ [0, 1]: a per-patch factor
on the attention (0 drops a patch), which is how a user decides which regions the model attends to.

>>> model = create_mil_model("interpretable", backbone="resnet10t", feature_stride=8, patch_size=2)
>>> out = model(torch.randn(2, 1, 64, 128))
>>> out["prob"].shape, out["patch_prob"].shape, out["attention"].shape, out["heatmap"].shape
(torch.Size([2]), torch.Size([2, 32]), torch.Size([2, 32]), torch.Size([2, 4, 8]))
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imaging.errors import ImagingError
from imaging.mil.data import region_coverage
from imaging.registry import Registry, create_encoder
from imaging.training.run_folder import MODEL_FILE, find_checkpoint, read_model_spec, write_model_spec

MIL_MODELS = Registry("MIL model")
POOLINGS = ("interpretable", "attention", "mean", "max")


class GatedAttention(nn.Module):
    """Ilse et al.'s gated attention score: (B, K, D) → (B, K) logits ``wᵀ(tanh(V h) ⊙ σ(U h))``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w(torch.tanh(self.v(h)) * torch.sigmoid(self.u(h))).squeeze(-1)


class PatchMIL(nn.Module):
    """Backbone truncated to a feature map + patch pooling + one of the MIL poolings (module docstring).

    Args:
        backbone: ``imaging.create_encoder`` name (timm 2D models; ``in_chans=1`` for radiographs).
        in_chans: image channels.
        num_classes: 1 = binary (p_k and P are the positive-class probability), C ≥ 2 = softmax classes
            with class 0 the healthy/background class.
        pooling: ``interpretable``, ``attention``, ``mean`` or ``max``.
        feature_stride: truncate the backbone after its deepest stage whose stride is ≤ this (pixels
            per feature cell); None keeps the whole backbone (``forward_feature_map``).
        patch_size, patch_stride: patch window and step in feature cells (stride defaults to the size).
        embed_dim, attention_dim: patch embedding and attention hidden widths.
        k_min: the floor of the attention mass in the interpretable prediction (≥ 0; 0 = plain
            weighted mean, which needs at least one attended patch).
        attention_bias: initial bias of the attention logit. σ(−2) ≈ 0.12: training starts with a few
            patches' worth of attention in total (≈ 0.12 K) rather than half of every patch, so the
            interpretable P does not start as a plain mean over all patches (unguided training learns
            faster; no effect on softmax attention, which is shift-invariant).
        dropout: dropout on the patch embeddings during training.
        pretrained: False or a local backbone checkpoint (never downloaded).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        in_chans: int = 1,
        num_classes: int = 1,
        pooling: str = "interpretable",
        feature_stride: int | None = 8,
        patch_size: int = 2,
        patch_stride: int | None = None,
        embed_dim: int = 128,
        attention_dim: int = 64,
        k_min: float = 1.0,
        attention_bias: float = -2.0,
        dropout: float = 0.0,
        pretrained: bool | str | os.PathLike = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ImagingError(f"unknown MIL pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        if num_classes < 1 or patch_size < 1 or (patch_stride is not None and patch_stride < 1):
            raise ImagingError("num_classes, patch_size and patch_stride must be >= 1")
        if k_min < 0:
            raise ImagingError(f"k_min must be >= 0, got {k_min}")
        self.config = {
            "backbone": backbone,
            "in_chans": in_chans,
            "num_classes": num_classes,
            "pooling": pooling,
            "feature_stride": feature_stride,
            "patch_size": patch_size,
            "patch_stride": patch_stride,
            "embed_dim": embed_dim,
            "attention_dim": attention_dim,
            "k_min": k_min,
            "attention_bias": attention_bias,
            "dropout": dropout,
        }
        self.pooling, self.num_classes, self.k_min = pooling, num_classes, float(k_min)
        self.patch_size, self.patch_stride = patch_size, patch_stride or patch_size
        self.encoder = create_encoder(backbone, in_chans=in_chans, pretrained=pretrained)
        self.feature_dim, self._take = self._truncate(feature_stride)
        self.embed = nn.Sequential(nn.Linear(self.feature_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(embed_dim, num_classes)
        self.attention = (
            GatedAttention(embed_dim, attention_dim) if pooling in ("interpretable", "attention") else None
        )
        if self.attention is not None:
            nn.init.constant_(self.attention.w.bias, attention_bias)
        self._feature_hw: dict[tuple[int, int], tuple[int, int]] = {}

    # ------------------------------------------------------------------------------------ geometry

    def _truncate(self, feature_stride: int | None) -> tuple[int, int | None]:
        """Prune the timm backbone after the chosen stage; returns (channels, stage index or None)."""
        timm_model = getattr(self.encoder, "model", None)
        if feature_stride is None:
            return int(self.encoder.num_features), None
        info = getattr(timm_model, "feature_info", None)
        if not info or not hasattr(timm_model, "prune_intermediate_layers"):
            raise ImagingError(
                f"backbone {self.config['backbone']!r} cannot be truncated to a feature stride; "
                "pass feature_stride=None to use its last feature map"
            )
        stages = [i for i, stage in enumerate(info) if stage["reduction"] <= feature_stride]
        if not stages:
            raise ImagingError(f"no stage of {self.config['backbone']!r} has stride <= {feature_stride}")
        index = stages[-1]
        timm_model.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
        return int(info[index]["num_chs"]), index

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) → (B, feature_dim, h, w), one backbone pass."""
        if self._take is None:
            fmap = self.encoder.forward_feature_map(x)
        else:
            model = self.encoder.model
            fmap = model.forward_intermediates(x, indices=[self._take], intermediates_only=True)[0]
        self._feature_hw[tuple(x.shape[-2:])] = tuple(fmap.shape[-2:])
        return fmap

    def feature_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Feature-map size (h, w) for an image size (H, W): remembered from the last forward pass of that
        size, else measured once with a dummy image in eval mode (batch-norm statistics untouched)."""
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        if image_hw not in self._feature_hw:
            modes = {module: module.training for module in self.modules()}
            param = next(self.parameters())
            try:
                self.eval()
                with torch.no_grad():
                    self.feature_map(torch.zeros(1, self.config["in_chans"], *image_hw, device=param.device))
            finally:
                for module, mode in modes.items():
                    module.training = mode
        return self._feature_hw[image_hw]

    def grid_shape(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """(gh, gw): the patch grid for an image size; K = gh · gw."""
        h, w = self.feature_hw(image_hw)
        if h < self.patch_size or w < self.patch_size:
            raise ImagingError(
                f"images of {image_hw[0]} x {image_hw[1]} give a {h} x {w} feature map, smaller than "
                f"patch_size={self.patch_size}; use larger images or a smaller patch_size/feature_stride"
            )
        return (h - self.patch_size) // self.patch_stride + 1, (w - self.patch_size) // self.patch_stride + 1

    def patch_coverage(self, mask: torch.Tensor) -> torch.Tensor:
        """Fraction of each patch covered by a region: (B, H, W) or (B, C, H, W) in [0, 1] → (B, K[, C])."""
        h, w = self.feature_hw(tuple(mask.shape[-2:]))
        return region_coverage(mask, (h, w), self.patch_size, self.patch_stride)

    def patch_boxes(self, image_hw: tuple[int, int]) -> torch.Tensor:
        """(K, 4) float image-pixel boxes (y0, x0, y1, x1) of the patches, row-major like K."""
        (h, w), (gh, gw) = self.feature_hw(image_hw), self.grid_shape(image_hw)
        sy, sx = image_hw[0] / h, image_hw[1] / w
        i, j = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        y0, x0 = (i.flatten() * self.patch_stride).float(), (j.flatten() * self.patch_stride).float()
        return torch.stack(
            [y0 * sy, x0 * sx, (y0 + self.patch_size) * sy, (x0 + self.patch_size) * sx], dim=1
        )

    # ------------------------------------------------------------------------------------ forward

    def patch_embeddings(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C_in, H, W) → pooled patch features (B, K, feature_dim) and the grid (gh, gw)."""
        fmap = self.feature_map(x)
        pooled = F.avg_pool2d(fmap, self.patch_size, self.patch_stride)  # (B, C, gh, gw)
        grid = (int(pooled.shape[-2]), int(pooled.shape[-1]))
        return pooled.flatten(2).transpose(1, 2), grid

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Images (B, C_in, H, W), optional ``keep`` (B, K) ∈ [0, 1] → dict of float32 tensors:

        prob (B,) or (B, C); patch_prob (B, K) or (B, K, C); attention (B, K) (interpretable: w_k;
        attention: α_k; mean: the weights 1/K; max: one-hot of the chosen patch); heatmap (B, gh, gw),
        the lesion probability per patch (p_k, or 1 − p_k0 with classes; attention-MIL: α_k / max α);
        attention_mass (B,) Σ_k w_k (interpretable, after ``keep``).
        """
        tokens, grid = self.patch_embeddings(x)
        return self.head(tokens, grid, keep)

    def head(
        self, tokens: torch.Tensor, grid: tuple[int, int], keep: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The MIL head on pooled patch features (B, K, C) (see ``forward``); runs in float32, so an
        edited ``keep`` can be applied to stored tokens without a second backbone pass."""
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            h = self.embed(tokens.float())  # (B, K, D)
            if keep is not None:
                keep = keep.to(h.device, torch.float32)
                if keep.shape != h.shape[:2]:
                    raise ImagingError(
                        f"keep must have shape (B, K) = {tuple(h.shape[:2])}, got {tuple(keep.shape)}"
                    )
            out = getattr(self, f"_pool_{self.pooling}")(h, keep)
        if "heatmap" not in out:
            p = out["patch_prob"]
            out["heatmap"] = p if self.num_classes == 1 else 1.0 - p[..., 0]
        out["heatmap"] = out["heatmap"].reshape(tokens.shape[0], *grid)
        return out

    def _patch_prob(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(h)
        return torch.sigmoid(logits.squeeze(-1)) if self.num_classes == 1 else torch.softmax(logits, dim=-1)

    def _pool_interpretable(self, h: torch.Tensor, keep: torch.Tensor | None) -> dict[str, torch.Tensor]:
        p = self._patch_prob(h)
        w = torch.sigmoid(self.attention(h))
        if keep is not None:
            w = w * keep
        return {"patch_prob": p, "attention": w, **aggregate(p, w, self.k_min)}

    def _pool_attention(self, h: torch.Tensor, keep: torch.Tensor | None) -> dict[str, torch.Tensor]:
        scores = self.attention(h)
        if keep is not None:  # α ∝ keep · exp(score); a patch with keep = 0 gets exactly 0
            scores = scores + torch.log(keep.clamp_min(0.0))
            empty = ~(keep > 0).any(dim=1, keepdim=True)
            scores = torch.where(empty, torch.zeros_like(scores), scores)  # nothing kept: uniform
        alpha = torch.softmax(scores, dim=1)
        bag = torch.einsum("bk,bkd->bd", alpha, h)
        logits = self.classifier(bag)
        prob = torch.sigmoid(logits.squeeze(-1)) if self.num_classes == 1 else torch.softmax(logits, dim=-1)
        heat = alpha / alpha.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return {"prob": prob, "patch_prob": self._patch_prob(h), "attention": alpha, "heatmap": heat}

    def _pool_mean(self, h: torch.Tensor, keep: torch.Tensor | None) -> dict[str, torch.Tensor]:
        p = self._patch_prob(h)
        weight = torch.ones_like(p[..., 0] if p.ndim == 3 else p) if keep is None else keep
        weight = weight / weight.sum(dim=1, keepdim=True).clamp_min(1e-12)
        prob = torch.einsum("bk,bk...->b...", weight, p)
        return {"prob": prob, "patch_prob": p, "attention": weight}

    def _pool_max(self, h: torch.Tensor, keep: torch.Tensor | None) -> dict[str, torch.Tensor]:
        p = self._patch_prob(h)
        lesion = p if p.ndim == 2 else 1.0 - p[..., 0]
        if keep is not None:
            lesion = torch.where(keep > 0, lesion, torch.full_like(lesion, -1.0))
        index = lesion.argmax(dim=1)
        onehot = F.one_hot(index, lesion.shape[1]).to(p.dtype)
        prob = torch.einsum("bk,bk...->b...", onehot, p)
        return {"prob": prob, "patch_prob": p, "attention": onehot}


def aggregate(patch_prob: torch.Tensor, weights: torch.Tensor, k_min: float) -> dict[str, torch.Tensor]:
    """The interpretable prediction from local probabilities and attention weights.

    Args:
        patch_prob: (B, K) positive-class p_k, or (B, K, C) class probabilities (class 0 healthy).
        weights: (B, K) w_k ≥ 0.
        k_min: floor of the attention mass.

    Returns:
        {"prob": (B,) Σ w p / max(Σ w, k_min), or (B, C) with the residual mass on class 0,
        "attention_mass": (B,) Σ w}.
    """
    mass = weights.sum(dim=1)
    denominator = mass.clamp_min(k_min) if k_min > 0 else mass
    if patch_prob.ndim == 2:
        prob = (weights * patch_prob).sum(dim=1) / denominator
    else:
        numerator = torch.einsum("bk,bkc->bc", weights, patch_prob)
        residual = (k_min - mass).clamp_min(0.0)
        numerator = torch.cat([numerator[:, :1] + residual[:, None], numerator[:, 1:]], dim=1)
        prob = numerator / denominator[:, None]
    return {"prob": prob, "attention_mass": mass}


def _register(pooling: str) -> None:
    def build(**kwargs: Any) -> PatchMIL:
        return PatchMIL(pooling=pooling, **kwargs)

    build.__doc__ = f"PatchMIL with {pooling!r} pooling."
    MIL_MODELS.register(pooling)(build)


for _pooling in POOLINGS:
    _register(_pooling)


def create_mil_model(name: str, **kwargs: Any) -> PatchMIL:
    """Build a MIL model by name (``list_mil_models()``); keyword arguments as ``PatchMIL``."""
    return MIL_MODELS.create(name, **kwargs)


def list_mil_models() -> list[str]:
    return MIL_MODELS.names()


MIL_COMMAND = "contig mil train"


def save_model_config(model: PatchMIL, run_dir: str | os.PathLike) -> Path:
    """Write the model's constructor arguments to ``RUN/model.yaml`` (atomically)."""
    return write_model_spec(run_dir, model.config)


def load_mil_model(
    run_dir: str | os.PathLike, checkpoint: str = "best", map_location: str = "cpu"
) -> PatchMIL:
    """Rebuild a trained model from a run directory: ``model.yaml`` + ``{checkpoint}.safetensors``
    (``best`` falls back to ``last`` when the run saved no best)."""
    from imaging.training.checkpoint import load_weights

    allowed = set(inspect.signature(PatchMIL).parameters)
    config = read_model_spec(run_dir, MIL_COMMAND, allowed=allowed)
    weights = find_checkpoint(run_dir, checkpoint, MIL_COMMAND)
    model = PatchMIL(**config)
    load_weights(model, weights)
    return model.to(map_location).eval()


__all__ = [
    "MIL_COMMAND",
    "MIL_MODELS",
    "MODEL_FILE",
    "POOLINGS",
    "GatedAttention",
    "PatchMIL",
    "aggregate",
    "create_mil_model",
    "list_mil_models",
    "load_mil_model",
    "save_model_config",
]
