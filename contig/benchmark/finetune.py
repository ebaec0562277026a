"""Full fine-tuning protocol: an image encoder plus a linear head, trained end to end on in-memory tensors.

Small and self-contained (no run directory, no files): AdamW on minibatches drawn with replacement from
the training tensors, then predictions on the test tensors in the format of the task kind (see
``contig.benchmark.probes``). The caller's encoder is deep-copied, never changed, so one loaded encoder
serves every fraction and seed. Every weight is trained from the first step: nothing is frozen, not even
for a randomly initialised encoder.

Two stopping rules:

- a fixed number of steps (``finetune_classifier`` without validation tensors, as before);
- early stopping (``finetune_encoder`` with ``val_images``/``val_y``): every ``eval_every`` steps (and at the last
  step) the loss on the validation tensors is computed in eval mode; the weights of the evaluation with
  the lowest validation loss are kept (an improvement must beat the best by more than ``min_delta``), and
  training stops after ``patience`` evaluations without improvement or at ``max_steps``. The test
  predictions come from the restored best weights. Validation loss, not the metric, decides: it is a
  proper score that moves smoothly where AUROC or QWK on a few dozen positives jumps between ties.

>>> import torch
>>> from imaging.registry import create_encoder
>>> encoder = create_encoder("test_efficientnet", in_chans=1)  # any encoder, e.g. "resnet18"
>>> x = torch.randn(8, 1, 16, 16); y = np.array([0, 1] * 4)
>>> finetune_classifier(encoder, x, y, x[:3], kind="binary", steps=2).shape
(3,)
>>> result = finetune_encoder(encoder, x, y, x[:3], "binary", val_images=x, val_y=y, max_steps=4, eval_every=2)
>>> result.predictions.shape, result.steps_trained, [step for step, _, _ in result.history]
((3,), 4, [2, 4])
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from contig.benchmark.errors import BenchmarkError
from contig.benchmark.probes import KINDS, Kind
from imaging.metrics import auroc, classes_from_probabilities, quadratic_weighted_kappa, r2
from imaging.training.distributed import resolve_device


class _Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, outputs: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.num_features), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(x))  # (B, outputs)


@dataclass(frozen=True)
class FinetuneResult:
    """What one fine-tuning run returns.

    Attributes:
        predictions: test predictions, (N,) or (N, K), float64, in the format of the task kind.
        steps_trained: optimizer steps taken (≤ ``max_steps``; fewer when stopped early).
        best_step: the step whose weights made ``predictions`` (= ``steps_trained`` without validation).
        val_loss, val_metric: validation loss and the kind's headline metric (``val_metric_name``) at
            ``best_step``; NaN without validation tensors (or where the metric is undefined).
        val_metric_name: "auroc" (binary, multiclass), "qwk" (ordinal) or "r2" (regression).
        stopped_early: True when patience ran out before ``max_steps``.
        history: (step, val_loss, val_metric) of every evaluation.
    """

    predictions: np.ndarray
    steps_trained: int
    best_step: int
    val_loss: float = math.nan
    val_metric: float = math.nan
    val_metric_name: str = ""
    stopped_early: bool = False
    history: list[tuple[int, float, float]] = field(default_factory=list)


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
    """Fine-tune a copy of ``encoder`` with a new linear head for ``steps`` steps; return test predictions.

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
    return finetune_encoder(
        encoder, train_images, train_y, test_images, kind, max_steps=steps, lr=lr, seed=seed, device=device,
        batch_size=batch_size, num_classes=num_classes, head_lr_scale=head_lr_scale, weight_decay=weight_decay,
    ).predictions  # fmt: skip


def finetune_encoder(
    encoder: nn.Module,
    train_images: torch.Tensor,
    train_y: np.ndarray,
    test_images: torch.Tensor,
    kind: Kind = "binary",
    *,
    val_images: torch.Tensor | None = None,
    val_y: np.ndarray | None = None,
    max_steps: int = 50,
    eval_every: int = 10,
    patience: int = 5,
    min_delta: float = 1e-4,
    lr: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_classes: int | None = None,
    head_lr_scale: float = 10.0,
    weight_decay: float = 1e-4,
) -> FinetuneResult:
    """Fine-tune a copy of ``encoder`` with a new linear head, early-stopped on validation tensors if given.

    Args (beyond :func:`finetune_classifier`'s):
        val_images, val_y: validation tensors (N_val, C, ...) and labels (people of neither the training
            nor the test rows); None trains exactly ``max_steps`` steps.
        max_steps: the most optimizer steps.
        eval_every: steps between validation evaluations (the last step is always evaluated).
        patience: evaluations in a row without an improvement > ``min_delta`` of the validation loss
            that stop training.

    Returns: :class:`FinetuneResult`; its predictions come from the weights of the best evaluation.
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
    if max_steps < 1 or batch_size < 1 or eval_every < 1 or patience < 1:
        raise BenchmarkError(
            f"steps, batch_size, eval_every and patience must be >= 1, got {max_steps}, {batch_size}, "
            f"{eval_every} and {patience}"
        )
    validate = val_images is not None
    if validate and (val_y is None or val_images.shape[0] != len(val_y) or len(val_y) == 0):
        raise BenchmarkError(
            f"{val_images.shape[0]} validation images but {0 if val_y is None else len(val_y)} labels; "
            "give one label per validation image"
        )
    device = resolve_device(device) if isinstance(device, str) else device
    outputs, target, scale = _targets(train_y, kind, num_classes)
    val_target = _val_targets(np.asarray(val_y), kind, scale) if validate else None
    torch.manual_seed(seed)
    model = _Classifier(copy.deepcopy(encoder), outputs).to(device)
    for parameter in model.parameters():  # a frozen copy (e.g. requires_grad=False upstream) would not learn
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": lr},
            {"params": model.head.parameters(), "lr": lr * head_lr_scale},
        ],
        weight_decay=weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    best = {"loss": math.inf, "metric": math.nan, "step": 0, "state": None}
    history: list[tuple[int, float, float]] = []
    stale, step = 0, 0
    model.train()
    while step < max_steps:
        rows = torch.randint(0, train_images.shape[0], (batch_size,), generator=generator)
        output = model(train_images[rows].to(device, torch.float32))
        loss = _loss(output, target[rows].to(device), kind)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if not validate or (step % eval_every and step < max_steps):
            continue
        val_loss, val_metric = _validate(model, val_images, val_target, np.asarray(val_y), kind, scale,
                                         batch_size, device)  # fmt: skip
        history.append((step, val_loss, val_metric))
        if val_loss < best["loss"] - min_delta:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best, stale = {"loss": val_loss, "metric": val_metric, "step": step, "state": state}, 0
        else:
            stale += 1
            if stale >= patience:
                break
        model.train()
    if not validate:
        return FinetuneResult(_predict(model, test_images, kind, scale, batch_size, device), step, step)
    if best["state"] is not None:  # None: every validation loss was non-finite; keep the last weights
        model.load_state_dict(best["state"])
    return FinetuneResult(
        predictions=_predict(model, test_images, kind, scale, batch_size, device),
        steps_trained=step,
        best_step=best["step"] if best["state"] is not None else step,
        val_loss=best["loss"] if best["state"] is not None else math.nan,
        val_metric=best["metric"],
        val_metric_name=_HEADLINE[kind],
        stopped_early=step < max_steps,
        history=history,
    )


_HEADLINE = {"binary": "auroc", "multiclass": "auroc", "ordinal": "qwk", "regression": "r2"}


def _targets(train_y: np.ndarray, kind: str, num_classes: int | None) -> tuple[int, torch.Tensor, tuple]:
    """Number of head outputs, the training target tensor, and the (mean, sd) of a regression target."""
    if kind == "regression":
        y = train_y.astype(np.float64)
        mean, sd = float(y.mean()), float(y.std()) or 1.0
        return 1, torch.tensor((y - mean) / sd, dtype=torch.float32), (mean, sd)
    _check_labels(train_y, kind)
    if kind == "binary":
        return 1, torch.tensor(train_y, dtype=torch.float32), ()
    k = max(int(train_y.max()) + 1, num_classes or 0)
    return k, torch.tensor(train_y, dtype=torch.int64), (k,)


def _check_labels(y: np.ndarray, kind: str) -> None:
    if np.any(y != np.round(y)) or y.min() < 0:
        raise BenchmarkError(f"{kind} labels must be integers 0..K-1, got {np.unique(y)[:5].tolist()}")
    if kind == "binary" and y.max() > 1:
        raise BenchmarkError(f"binary labels must be 0/1, got {np.unique(y)[:5].tolist()}")


def _val_targets(val_y: np.ndarray, kind: str, scale: tuple) -> torch.Tensor:
    """Validation labels as the training loss expects them (regression: standardised with training stats)."""
    if kind == "regression":
        mean, sd = scale
        return torch.tensor((val_y.astype(np.float64) - mean) / sd, dtype=torch.float32)
    _check_labels(val_y, kind)
    if kind == "binary":
        return torch.tensor(val_y, dtype=torch.float32)
    if val_y.max() >= scale[0]:
        raise BenchmarkError(
            f"validation labels reach class {int(val_y.max())} but the head has {scale[0]} classes; "
            "set num_classes"
        )
    return torch.tensor(val_y, dtype=torch.int64)


def _loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(output[:, 0], target)
    if kind == "regression":
        return F.mse_loss(output[:, 0], target)
    return F.cross_entropy(output, target)


@torch.no_grad()
def _outputs(model: nn.Module, images: torch.Tensor, chunk: int, device: torch.device) -> torch.Tensor:
    """Raw head outputs (N, outputs) in eval mode, ``chunk`` images at a time, float32 on the CPU."""
    model.eval()
    outputs = [
        model(images[i : i + chunk].to(device, torch.float32)).float().cpu()
        for i in range(0, images.shape[0], chunk)
    ]
    return torch.cat(outputs) if outputs else torch.zeros((0, 1))


def _format(output: torch.Tensor, kind: str, scale: tuple) -> np.ndarray:
    if kind == "binary":
        return torch.sigmoid(output[:, 0]).double().numpy()
    if kind == "regression":
        mean, sd = scale
        return output[:, 0].double().numpy() * sd + mean
    return torch.softmax(output.double(), dim=1).numpy()


def _validate(model, images, target, y, kind, scale, batch_size, device) -> tuple[float, float]:
    """(validation loss, headline metric) of the current weights; the metric is NaN where undefined."""
    output = _outputs(model, images, max(batch_size, 128), device)  # no gradients: larger chunks are cheaper
    loss = float(_loss(output, target, kind))
    prediction = _format(output, kind, scale)
    if kind in ("binary", "multiclass"):
        metric = auroc(y.astype(np.int64), prediction)
    elif kind == "ordinal":
        metric = quadratic_weighted_kappa(y.astype(np.int64), classes_from_probabilities(prediction))
    else:
        metric = r2(y.astype(np.float64), prediction)
    return (loss if math.isfinite(loss) else math.inf), float(metric)


def _predict(
    model: nn.Module, images: torch.Tensor, kind: str, scale: tuple, batch_size: int, device: torch.device
) -> np.ndarray:
    return _format(_outputs(model, images, batch_size, device), kind, scale)
