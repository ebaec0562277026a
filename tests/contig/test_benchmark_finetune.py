"""Fine-tuning with early stopping on a validation set: it stops, it restores the best weights, it trains all."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from contig.benchmark import COLUMNS, FINETUNE_COLUMNS, BenchmarkError, benchmark_finetune, finetune_encoder


class TinyEncoder(nn.Module):
    """Flatten → linear → ReLU, no batch norm (so lr = 0 leaves the model exactly as it was)."""

    num_features = 8

    def __init__(self, side: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(side * side, self.num_features)
        self.seen: list[tuple[bool, bool, float]] = []  # (training, all trainable, weight sum) per call

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(
            (
                self.training,
                all(p.requires_grad for p in self.parameters()),
                float(self.linear.weight.detach().sum()),
            )
        )
        return torch.relu(self.linear(x.flatten(1)))


def _data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """(n, 1, 6, 6) images whose mean carries the 0/1 label."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 1, 6, 6)) + (2 * y[:, None, None, None] - 1) * 0.8
    return torch.tensor(x, dtype=torch.float32), y


def test_stops_on_a_plateau_of_the_validation_loss():
    x, y = _data()
    result = finetune_encoder(
        TinyEncoder(), x, y, x[:5], "binary", val_images=x, val_y=y, max_steps=200, eval_every=3, patience=4,
        lr=0.0,
    )  # fmt: skip
    # lr = 0: the validation loss never moves, so the first evaluation stays best and 4 more end the run
    assert result.stopped_early and result.steps_trained == 3 * (1 + 4)
    assert result.best_step == 3 and [step for step, _, _ in result.history] == [3, 6, 9, 12, 15]
    assert len({loss for _, loss, _ in result.history}) == 1


def test_restores_the_weights_of_the_best_validation_loss():
    x, y = _data()
    # Validation labels are the training labels flipped: learning the task makes validation worse.
    options = {"lr": 3e-3, "seed": 1, "batch_size": 8}
    early = finetune_encoder(
        TinyEncoder(), x, y, x, "binary", val_images=x, val_y=1 - y, max_steps=300, eval_every=2, patience=3,
        **options,
    )  # fmt: skip
    losses = [loss for _, loss, _ in early.history]
    assert early.stopped_early and early.steps_trained < 300
    assert early.best_step == early.history[int(np.argmin(losses))][0]
    assert early.steps_trained == early.best_step + 3 * 2
    assert losses[-1] > min(losses)  # the run went on past the best step ...
    # ... yet its predictions are those of a run that stopped at the best step.
    stopped = finetune_encoder(TinyEncoder(), x, y, x, "binary", max_steps=early.best_step, **options)
    np.testing.assert_array_equal(early.predictions, stopped.predictions)
    last = finetune_encoder(TinyEncoder(), x, y, x, "binary", max_steps=early.steps_trained, **options)
    assert not np.array_equal(early.predictions, last.predictions)
    assert early.val_loss == min(losses) and early.val_metric_name == "auroc"


def test_keeps_training_while_validation_improves_up_to_the_cap():
    x, y = _data()
    result = finetune_encoder(
        TinyEncoder(), x, y, x, "binary", val_images=x, val_y=y, max_steps=20, eval_every=6, patience=5,
        lr=1e-3,
    )  # fmt: skip
    assert not result.stopped_early and result.steps_trained == 20
    assert [step for step, _, _ in result.history] == [6, 12, 18, 20]  # the last step is evaluated too
    assert result.best_step == 20 and result.val_metric > 0.9


def test_a_random_encoder_is_never_frozen():
    x, y = _data()
    encoder = TinyEncoder()
    for parameter in encoder.parameters():  # even an encoder handed over frozen is trained end to end
        parameter.requires_grad_(False)
    finetune_encoder(
        encoder, x, y, x[:4], "binary", val_images=x, val_y=y, max_steps=12, eval_every=4, lr=1e-2
    )
    assert encoder.seen == []  # the caller's encoder is a template: a copy is trained
    assert not any(p.requires_grad for p in encoder.parameters())


def test_every_training_step_updates_the_encoder(monkeypatch):
    import contig.benchmark.finetune as module

    seen = []

    def spy(encoder):
        clone = TinyEncoder()
        clone.load_state_dict(encoder.state_dict())
        for parameter in clone.parameters():
            parameter.requires_grad_(False)  # frozen on arrival: fine-tuning must unfreeze it
        clone.seen = seen
        return clone

    monkeypatch.setattr(module, "copy", types.SimpleNamespace(deepcopy=spy))
    x, y = _data()
    finetune_encoder(
        TinyEncoder(), x, y, x[:4], "binary", val_images=x, val_y=y, max_steps=8, eval_every=4, lr=1e-2
    )
    training = [(trainable, weights) for is_training, trainable, weights in seen if is_training]
    assert len(training) == 8 and all(trainable for trainable, _ in training)
    assert len({weights for _, weights in training}) == 8  # the encoder's weights moved at every step


def test_benchmark_finetune_reports_steps_and_validation_metric():
    x, y = _data(48)
    ids = np.arange(48).astype(str)
    test = np.arange(48) >= 32
    val_x, val_y = _data(20, seed=1)
    table = benchmark_finetune(
        {"tiny": TinyEncoder()}, x, y, ids, test, "binary", fractions=(0.5, 1.0), steps=12, lr=1e-3,
        n_boot=20, val_images=val_x, val_y=val_y, eval_every=4, patience=2,
    )  # fmt: skip
    assert list(table.columns) == COLUMNS + FINETUNE_COLUMNS
    assert (table["steps_trained"] <= 12).all() and (table["best_step"] <= table["steps_trained"]).all()
    assert (table["n_val"] == 20).all() and table["val_metric"].between(0, 1).all()
    plain = benchmark_finetune({"tiny": TinyEncoder()}, x, y, ids, test, "binary", fractions=(1.0,), steps=2)
    assert list(plain.columns) == COLUMNS
    with pytest.raises(BenchmarkError, match="validation"):
        benchmark_finetune(
            {"tiny": TinyEncoder()}, x, y, ids, test, "binary", val_images=val_x, val_y=val_y[:3]
        )
