"""Full fine-tuning protocol: an image encoder plus a linear head, trained end to end on in-memory tensors.

The training loop is the shared one of every training command (``imaging.training.Trainer``: AdamW,
seeded epoch order, mixed precision on CUDA) with the fine-tuning stopping rule of ``contig finetune``
(``imaging.finetune.early_stopping``); its run folder is a temporary directory, so nothing is written
where the caller can see it. The caller's encoder is deep-copied, never changed, so one loaded encoder
serves every fraction and seed. Every weight is trained from the first step: nothing is frozen, not even
for a randomly initialised encoder. The learning rate is constant (the encoder's ``lr``, the head's
``lr × head_lr_scale``).

Two stopping rules:

- a fixed number of steps (``finetune_classifier``, or ``finetune_encoder`` without validation tensors);
- early stopping (``finetune_encoder`` with ``val_images``/``val_y``): every ``eval_every`` steps (and at the last
  step) the loss on the validation tensors is computed in eval mode; the weights of the evaluation with
  the lowest validation loss are kept, and training stops once ``patience`` evaluations
  (``patience × eval_every`` steps) brought no lower loss, or at ``max_steps``. The test predictions come
  from the restored best weights. Validation loss, not the metric, decides: it is a proper score that
  moves smoothly where AUROC or QWK on a few dozen positives jumps between ties.

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

import contextlib
import copy
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from contig.benchmark.errors import BenchmarkError
from contig.benchmark.probes import KINDS, Kind
from imaging.finetune.early_stopping import EarlyStopping, StopWhenStale
from imaging.metrics import auroc, classes_from_probabilities, quadratic_weighted_kappa, r2
from imaging.training import Trainer, TrainingConfig
from imaging.training.checkpoint import BEST, load_weights


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
        steps: optimizer steps of ``batch_size`` rows, in a seeded order that visits every row once per epoch.
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
        patience: evaluations in a row without a lower validation loss that stop training.

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
    outputs, target, scale = _targets(train_y, kind, num_classes)
    val_target = _val_targets(np.asarray(val_y), kind, scale) if validate else None
    torch.manual_seed(seed)
    model = _Classifier(copy.deepcopy(encoder), outputs)
    for parameter in model.parameters():  # a frozen copy (e.g. requires_grad=False upstream) would not learn
        parameter.requires_grad_(True)
    groups = [
        {"params": list(model.encoder.parameters()), "lr": lr},
        {"params": list(model.head.parameters()), "lr": lr * head_lr_scale},
    ]
    history: list[tuple[int, float, float]] = []

    def loss_fn(net: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        images, targets = batch
        return {"loss": _loss(net(images.float()), targets, kind)}

    def eval_fn(net: nn.Module) -> dict[str, float]:
        val_loss, val_metric = _validate(net, val_images, val_target, np.asarray(val_y), kind, scale,
                                         batch_size, trainer.device)  # fmt: skip
        history.append((trainer.step, val_loss, val_metric))
        return {"val_loss": val_loss, "val_metric": val_metric}

    with tempfile.TemporaryDirectory(prefix="contig-finetune-") as folder, _quiet_trainer():
        config = TrainingConfig(
            out=folder,
            max_steps=max_steps,
            epochs=None,
            batch_size=batch_size,
            seed=seed,
            device=device.type if isinstance(device, torch.device) else device,
            lr=lr,
            min_lr_ratio=1.0,  # constant rate
            weight_decay=weight_decay,
            log_every=0,
            eval_every=eval_every if validate else 0,
            checkpoint_every=0,
            monitor="val_loss" if validate else "loss",
            mode="min",
            progress=False,
        )
        stopper = StopWhenStale(eval_fn, "val_loss", EarlyStopping(patience, eval_every, "min"))
        dataset = TensorDataset(train_images, target)
        trainer = Trainer(
            model, loss_fn, dataset, config, eval_fn=stopper if validate else None, param_groups=groups
        )
        stopper.trainer = trainer
        trainer.fit()
        step = trainer.step
        predict = lambda: _predict(model, test_images, kind, scale, batch_size, trainer.device)  # noqa: E731
        if not validate:
            return FinetuneResult(predict(), step, step)
        restored = trainer.best_step is not None  # None: every validation loss was non-finite; keep the last
        if restored:
            load_weights(model, Path(folder) / BEST)
        best = {s: (loss, metric) for s, loss, metric in history}.get(trainer.best_step, (math.nan, math.nan))
        return FinetuneResult(
            predictions=predict(),
            steps_trained=step,
            best_step=trainer.best_step if restored else step,
            val_loss=best[0],
            val_metric=best[1] if restored else math.nan,
            val_metric_name=_HEADLINE[kind],
            stopped_early=step < max_steps,
            history=history,
        )


@contextlib.contextmanager
def _quiet_trainer() -> Iterator[None]:
    """Mute the trainer's per-run INFO lines (start, new best, finish): a benchmark runs hundreds of runs."""
    logger = logging.getLogger("imaging.training")
    only_warnings = logging.Filter()
    only_warnings.filter = lambda record: record.levelno >= logging.WARNING  # type: ignore[method-assign]
    logger.addFilter(only_warnings)
    try:
        yield
    finally:
        logger.removeFilter(only_warnings)


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
