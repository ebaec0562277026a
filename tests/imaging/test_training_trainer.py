"""The shared Trainer on a tiny MLP regression: learning, logs, best checkpoint, exact resume, safetensors
only, gradient accumulation; and the checkpoint helpers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import Dataset

from imaging.training import (
    CheckpointError,
    Trainer,
    TrainingConfig,
    TrainingError,
    load_config,
    load_state,
    load_weights,
    read_info,
    read_weights,
    save_weights,
)


class Regression(Dataset):
    """``n`` samples of y = x·w + ε (x: (4,)); ``noise`` adds a random augmentation to x per access."""

    def __init__(self, n: int = 40, noise: float = 0.05):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i] + self.noise * torch.randn(4), "y": self.y[i]}


def make_model(dropout: float = 0.1) -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    error = model(batch["x"]).squeeze(-1) - batch["y"]
    return {"loss": error.pow(2).mean(), "mae": error.abs().mean()}


def make_config(out: Path, **overrides) -> TrainingConfig:
    values = dict(out=str(out), epochs=None, max_steps=6, batch_size=8, lr=1e-2, warmup_steps=2, device="cpu")
    values.update(log_every=1, eval_every=0, checkpoint_every=0, progress=False)
    return TrainingConfig(**{**values, **overrides})


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_one_step_lowers_the_loss_on_fixed_data(tmp_path):
    data = Regression(noise=0.0)
    model = make_model(dropout=0.0)
    full = {"x": data.x, "y": data.y}
    before = mse_loss(model, full)["loss"].item()
    config = make_config(tmp_path / "run", max_steps=1, batch_size=len(data), warmup_steps=0)
    Trainer(model, mse_loss, data, config).fit()
    assert mse_loss(model, full)["loss"].item() < before


def test_metrics_csv_train_log_and_config_yaml(tmp_path):
    data = Regression()
    model = make_model()
    config = make_config(tmp_path / "run", max_steps=6, log_every=2, eval_every=3, tensorboard=True)
    Trainer(
        model, mse_loss, data, config, eval_fn=lambda m: {"val_mse": mse_loss(m, vars(data))["loss"]}
    ).fit()
    run = tmp_path / "run"
    columns, rows = read_csv(run / "metrics.csv")
    assert columns == ["step", "epoch", "lr", "loss", "mae", "val_mse"]
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    assert [bool(r["val_mse"]) for r in rows] == [False, True, False, True]  # eval rows only
    assert [float(r["epoch"]) for r in rows] == [0.4, 0.6, 0.8, 1.2]  # 5 batches of 8 per epoch
    assert all(float(r["loss"]) > 0 for r in rows if r["loss"])
    log = (run / "train.log").read_text()
    assert "step 6/6" in log and "items/s" in log and "tensorboard package is absent" in log
    assert load_config(run / "config.yaml", TrainingConfig) == config


@pytest.mark.parametrize(("mode", "expected_step"), [("min", 3), ("max", 2)])
def test_best_checkpoint_follows_the_monitored_metric(tmp_path, mode, expected_step):
    scores = iter([5.0, 9.0, 1.0, 3.0, 2.0])
    snapshots = {}
    model = make_model()

    def eval_fn(m: nn.Module) -> dict[str, float]:
        snapshots[len(snapshots) + 1] = weights(m)
        return {"score": next(scores)}

    config = make_config(tmp_path / "run", max_steps=5, eval_every=1, monitor="score", mode=mode)
    result = Trainer(model, mse_loss, Regression(), config, eval_fn=eval_fn).fit()
    best = tmp_path / "run" / "best.safetensors"
    assert result["best_step"] == expected_step and read_info(best)["step"] == expected_step
    assert read_info(best)["value"] == result["best_value"]
    stored = read_weights(best)
    assert all(torch.equal(stored[k], snapshots[expected_step][k]) for k in stored)


def test_unknown_monitor_is_reported(tmp_path):
    config = make_config(tmp_path / "run", max_steps=1, monitor="auc")
    with pytest.raises(TrainingError, match="monitor 'auc' is neither an eval metric.*nor a loss term"):
        Trainer(make_model(), mse_loss, Regression(), config).fit()


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_after_a_crash_is_bit_identical(tmp_path, num_workers):
    # 40 samples, batch 8 → 5 micro-batches per epoch; accumulation of 2 spans epoch ends;
    # 5 epochs = 25 micro-batches → 13 steps (the last one a window of 1). Dropout + augmentation on.
    settings = dict(
        epochs=5, max_steps=None, grad_accum_steps=2, log_every=3, eval_every=3, num_workers=num_workers
    )
    eval_fn = lambda m: {"val_mse": mse_loss(m, vars(Regression(noise=0.0)))["loss"]}  # noqa: E731

    reference = make_model()
    Trainer(reference, mse_loss, Regression(), make_config(tmp_path / "a", **settings), eval_fn).fit()

    calls = 0

    def crashing_loss(model, batch):
        nonlocal calls
        calls += 1
        if calls == 2 * 10 + 1:  # inside step 11: after the checkpoint of step 8 and the log row of step 9
            raise _Crash("simulated crash")
        return mse_loss(model, batch)

    config = make_config(tmp_path / "b", checkpoint_every=4, **settings)
    with pytest.raises(_Crash):
        Trainer(make_model(), crashing_loss, Regression(), config, eval_fn).fit()
    assert read_info(tmp_path / "b" / "last.safetensors")["step"] == 8
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))  # other init
    result = Trainer(model, mse_loss, Regression(), config, eval_fn).fit(resume=True)

    assert result["step"] == 13
    expected = weights(reference)
    assert all(torch.equal(value, expected[key]) for key, value in weights(model).items())
    a, b = (tmp_path / "a" / "metrics.csv").read_text(), (tmp_path / "b" / "metrics.csv").read_text()
    assert a == b  # row 9 of the crashed run was dropped and re-logged identically
    assert (
        read_weights(tmp_path / "a" / "best.safetensors").keys()
        == read_weights(tmp_path / "b" / "best.safetensors").keys()
    )
    assert "resuming at step 8/13" in (tmp_path / "b" / "train.log").read_text()


def test_gradient_accumulation_equals_one_bigger_batch(tmp_path):
    data = Regression()
    one = make_model(dropout=0.0)
    Trainer(one, mse_loss, data, make_config(tmp_path / "a", max_steps=3, batch_size=8)).fit()
    accumulated = make_model(dropout=0.0)
    config = make_config(tmp_path / "b", max_steps=3, batch_size=2, grad_accum_steps=4)
    Trainer(accumulated, mse_loss, data, config).fit()
    for (name, a), b in zip(one.state_dict().items(), accumulated.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(one[0].weight, make_model()[0].weight)  # it did train


def test_checkpoints_are_safetensors_without_pickles(tmp_path):
    config = make_config(tmp_path / "run", max_steps=4, eval_every=2, checkpoint_every=2)
    Trainer(make_model(), mse_loss, Regression(), config).fit()
    run = tmp_path / "run"
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted(
        [
            "best.safetensors",
            "config.yaml",
            "last.safetensors",
            "last.state.safetensors",
            "metrics.csv",
            "train.log",
        ]
    )
    for path in run.glob("*.safetensors"):
        assert not path.read_bytes().startswith(b"\x80")  # pickle protocol marker
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            payload = json.loads(handle.metadata()["contig"])
        assert tensors and payload["step"] == (2 if path.name == "best.safetensors" else 4)
    state = load_state(run / "last.state.safetensors")
    assert state["progress"]["step"] == 4 and state["scheduler"]["last_epoch"] == 4
    assert set(state["optimizer"]["state"]) == {0, 1, 2, 3}  # int keys survive the JSON skeleton
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert state["ranks"][0]["rng"]["torch"].dtype == torch.uint8
    with pytest.raises(TrainingError, match="already holds a checkpoint"):
        Trainer(make_model(), mse_loss, Regression(), config).fit()


def test_load_weights_errors_name_the_file_and_the_keys(tmp_path):
    path = save_weights(make_model(), tmp_path / "w.safetensors", {"step": 1})
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1), nn.Linear(1, 1))
    with pytest.raises(CheckpointError) as caught:
        load_weights(other, path)
    message = str(caught.value)
    assert str(path) in message and "missing key(s): 4.weight, 4.bias" in message
    assert "0.weight (16, 4) in file vs (8, 4) in model" in message
    with pytest.raises(CheckpointError, match="absent.safetensors does not exist"):
        load_weights(other, tmp_path / "absent.safetensors")
    fresh = make_model()
    nn.init.zeros_(fresh[0].weight)
    load_weights(fresh, path)
    assert torch.equal(fresh[0].weight, make_model()[0].weight)


def test_amp_and_channels_last_are_cuda_only():
    config = TrainingConfig(out="unused", max_steps=1, device="cpu", amp=True, channels_last=True)
    trainer = Trainer(make_model(), mse_loss, Regression(), config)
    assert trainer.device == torch.device("cpu")
    assert not trainer.use_amp and not trainer.channels_last and not trainer.scaler.is_enabled()


def test_resume_with_a_smaller_batch_finishes(tmp_path):
    # Stopped at step 7 with batches of 8 (16 samples into the second epoch of 40), continued to step 12 with
    # batches of 2: the resumed micro-batch count (1 × 20 + 8) lies past max_steps × 1 and used to stall.
    first = Trainer(
        make_model(), mse_loss, Regression(), make_config(tmp_path, max_steps=7, checkpoint_every=7)
    )
    first.fit()
    resumed = Trainer(make_model(), mse_loss, Regression(), make_config(tmp_path, max_steps=12, batch_size=2))
    summary = resumed.fit(resume=True)
    assert summary["step"] == 12
    assert read_info(tmp_path / "last.safetensors")["step"] == 12
