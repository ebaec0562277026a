"""Full fine-tuning protocol: an image encoder plus a linear head, trained end to end on in-memory tensors.

Small and self-contained (no run directory, no checkpoints): AdamW for a fixed number of steps on
minibatches drawn with replacement from the training tensors, then predictions on the test tensors in the
format of the task kind (see ``contig.benchmark.probes``). The caller's encoder is deep-copied, never
changed, so one loaded encoder serves every fraction and seed.

>>> import torch
>>> from imaging.registry import create_encoder
>>> encoder = create_encoder("test_efficientnet", in_chans=1)  # any encoder, e.g. "resnet18"
>>> x = torch.randn(8, 1, 16, 16); y = np.array([0, 1] * 4)
>>> finetune_classifier(encoder, x, y, x[:3], kind="binary", steps=2).shape
(3,)
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from contig.benchmark.errors import BenchmarkError
from contig.benchmark.probes import KINDS, Kind
from imaging.training.distributed import resolve_device


class _Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, outputs: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.num_features), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(x))  # (B, outputs)


def finetune_classifier(
    encoder: nn.Module,
    train_images: torch.Tensor,
    train_y: np.ndarray,
    test_images: torch.Tensor,
    kind: Kind = "binary",
    steps: int = 50,
    lr: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_classes: int | None = None,
    head_lr_scale: float = 10.0,
    weight_decay: float = 1e-4,
) -> np.ndarray:
    """Fine-tune a copy of ``encoder`` with a new linear head; return test predictions.

    Args:
        encoder: exposes ``num_features`` and ``forward_features(x) -> (B, num_features)``.
        train_images, test_images: float tensors (N, C, H, W) or (N, C, D, H, W), already normalised.
        train_y: (N_train,) labels (0/1, 0..K-1 or real, by ``kind``).
        kind: "binary" (BCE), "multiclass"/"ordinal" (cross-entropy over K = ``num_classes`` or
            1 + the largest label), "regression" (MSE on the standardised target).
        steps: optimizer steps; each draws ``batch_size`` rows with replacement (seeded).
        lr: encoder learning rate; the new head uses ``lr * head_lr_scale``.
        seed: seeds the head initialisation and the minibatch draws.
        device: "cpu", "cuda" or "auto"; inputs are moved there batch by batch.

    Returns: test predictions, (N,) or (N, K), float64, in the format of ``kind``.
    """
    if kind not in KINDS:
        raise BenchmarkError(f"unknown task kind {kind!r}; use one of {', '.join(KINDS)}")
    if not hasattr(encoder, "forward_features") or not hasattr(encoder, "num_features"):
        raise BenchmarkError(
            f"{type(encoder).__name__} lacks forward_features/num_features; wrap it to expose the encoder interface"
        )
    train_y = np.asarray(train_y)
    if train_images.shape[0] != train_y.shape[0] or train_images.shape[0] == 0:
        raise BenchmarkError(
            f"{train_images.shape[0]} training images but {train_y.shape[0]} labels; give one label per image"
        )
    if steps < 1 or batch_size < 1:
        raise BenchmarkError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    device = resolve_device(device) if isinstance(device, str) else device
    outputs, target, scale = _targets(train_y, kind, num_classes)
    torch.manual_seed(seed)
    model = _Classifier(copy.deepcopy(encoder), outputs).to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": lr},
            {"params": model.head.parameters(), "lr": lr * head_lr_scale},
        ],
        weight_decay=weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, train_images.shape[0], (batch_size,), generator=generator)
        output = model(train_images[rows].to(device, torch.float32))
        loss = _loss(output, target[rows].to(device), kind)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return _predict(model, test_images, kind, scale, batch_size, device)


def _targets(train_y: np.ndarray, kind: str, num_classes: int | None) -> tuple[int, torch.Tensor, tuple]:
    """Number of head outputs, the training target tensor, and the (mean, sd) of a regression target."""
    if kind == "regression":
        y = train_y.astype(np.float64)
        mean, sd = float(y.mean()), float(y.std()) or 1.0
        return 1, torch.tensor((y - mean) / sd, dtype=torch.float32), (mean, sd)
    if np.any(train_y != np.round(train_y)) or train_y.min() < 0:
        raise BenchmarkError(f"{kind} labels must be integers 0..K-1, got {np.unique(train_y)[:5].tolist()}")
    if kind == "binary":
        if train_y.max() > 1:
            raise BenchmarkError(f"binary labels must be 0/1, got {np.unique(train_y)[:5].tolist()}")
        return 1, torch.tensor(train_y, dtype=torch.float32), ()
    k = max(int(train_y.max()) + 1, num_classes or 0)
    return k, torch.tensor(train_y, dtype=torch.int64), ()


def _loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(output[:, 0], target)
    if kind == "regression":
        return F.mse_loss(output[:, 0], target)
    return F.cross_entropy(output, target)


@torch.no_grad()
def _predict(
    model: nn.Module, images: torch.Tensor, kind: str, scale: tuple, batch_size: int, device: torch.device
) -> np.ndarray:
    model.eval()
    outputs = [
        model(images[i : i + batch_size].to(device, torch.float32)).float().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    output = torch.cat(outputs) if outputs else torch.zeros((0, 1))
    if kind == "binary":
        return torch.sigmoid(output[:, 0]).double().numpy()
    if kind == "regression":
        mean, sd = scale
        return output[:, 0].double().numpy() * sd + mean
    return torch.softmax(output.double(), dim=1).numpy()
