"""Training configuration (YAML, overrides, resolved round trip), the warm-up + cosine schedule, and the
shared training flags of the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import click
import pytest
import torch
from click.testing import CliRunner

from contig.cli._training import resolve_training_config, training_options
from imaging.training.config import (
    ConfigError,
    TrainingConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    save_resolved,
)
from imaging.training.schedule import WarmupCosine, build_optimizer, build_scheduler, warmup_cosine


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"


@dataclass
class ModelConfig:
    name: str = "resnet18"
    pretrained: bool = False
    dropout: float | None = None


@dataclass
class PretrainConfig(TrainingConfig):
    towers: list[str] = field(default_factory=lambda: ["snp"])
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss_weights: dict[str, float] = field(default_factory=lambda: {"snp": 1.0})


# ------------------------------------------------------------------------------------------ config


def test_load_config_builds_nested_dataclasses(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "out: runs/a\nmax_steps: 100\nlr: 3e-4\ntowers: [snp, pgs]\n"
        "optim:\n  lr: 1.0e-2\n  betas: [0.8, 0.9]\nmodel:\n  name: resnet50\n"
    )
    config = load_config(path, PretrainConfig)
    assert config.max_steps == 100 and config.lr == pytest.approx(3e-4)  # '3e-4' is text to PyYAML
    assert config.towers == ["snp", "pgs"]
    assert config.optim == OptimConfig(lr=1e-2, betas=(0.8, 0.9))
    assert config.model.name == "resnet50" and config.model.pretrained is False


def test_load_config_errors_name_the_file_and_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'lrr' at 'optim'; valid keys: betas, lr, schedule"):
        load_config(path, PretrainConfig)
    path.write_text("batch_size: many\n")
    with pytest.raises(ConfigError, match="batch_size: expected an integer, got 'many'"):
        load_config(path, PretrainConfig)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml", PretrainConfig)


def test_overrides_coerce_to_field_types():
    config = apply_overrides(
        PretrainConfig(),
        [
            "optim.lr=3e-4",  # float from text PyYAML leaves unparsed
            "batch_size=64",  # int
            "max_steps=1e3",  # integral float → int
            "amp=false",  # bool
            "model.name=resnet50",  # nested str
            "model.dropout=0.1",  # Optional[float]
            "towers=[snp,pgs]",  # list[str]
            "optim.betas=[0.5, 0.6]",  # tuple[float, float]
            "loss_weights.pgs=2",  # dict entry
            "out=001",  # str field keeps the text verbatim
            "epochs=null",
        ],
    )
    assert config.optim.lr == pytest.approx(3e-4) and isinstance(config.optim.lr, float)
    assert config.batch_size == 64 and config.max_steps == 1000 and isinstance(config.max_steps, int)
    assert config.amp is False
    assert config.model.name == "resnet50" and config.model.dropout == pytest.approx(0.1)
    assert config.towers == ["snp", "pgs"] and config.optim.betas == (0.5, 0.6)
    assert config.loss_weights == {"snp": 1.0, "pgs": 2.0}
    assert config.out == "001" and config.epochs is None
    assert PretrainConfig().batch_size == 32  # the original is untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optim.lrr=1",
            r"unknown key 'lrr' at 'optim' in override 'optim.lrr=1'; valid keys: betas, lr, schedule",
        ),
        ("bogus=1", r"unknown key 'bogus' in override 'bogus=1'; valid keys: amp, amp_dtype, batch_size"),
        ("batch_size=abc", r"batch_size: expected an integer, got 'abc'"),
        ("amp=maybe", r"amp: expected true or false"),
        ("device=tpu", r"device: expected one of 'auto', 'cpu', 'cuda'"),
        ("optim.betas=[1,2,3]", r"optim.betas: expected 2 items"),
        ("batch_size", r"not of the form key=value"),
        ("batch_size=0", r"batch_size must be >= 1"),
    ],
)
def test_bad_overrides_raise_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as caught:
        apply_overrides(PretrainConfig(), [override])
    assert "\n" not in str(caught.value)


def test_resolved_config_round_trip(tmp_path):
    config = apply_overrides(PretrainConfig(), ["towers=[snp,pgs,burden]", "optim.betas=[0.5,0.6]", "lr=0.1"])
    path = save_resolved(config, tmp_path / "run" / "config.yaml")
    assert load_config(path, PretrainConfig) == config
    plain = config_to_dict(config)
    assert plain["optim"]["betas"] == [0.5, 0.6] and json.dumps(plain)  # YAML/JSON-safe values only
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left behind


def test_training_config_validates():
    with pytest.raises(ConfigError, match="set max_steps or epochs"):
        TrainingConfig(max_steps=None, epochs=None)


# ------------------------------------------------------------------------------------------ schedule


def _direct(step: int, warmup: int, total: int, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def test_schedule_warmup_end_and_end_match_the_formula():
    warmup, total, floor, base = 5, 25, 0.1, 0.2
    model = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(model, lr=base, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, warmup, total, floor)
    used = []
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [base * _direct(s, warmup, total, floor) for s in range(total)]
    assert used == pytest.approx(expected, rel=1e-12)
    assert used[0] == pytest.approx(base / warmup)
    assert used[warmup - 1] == pytest.approx(base) and used[warmup] == pytest.approx(base)  # peak
    assert optimizer.param_groups[0]["lr"] == pytest.approx(base * floor)  # at step T: the floor
    assert warmup_cosine(10 * total, warmup, total, floor) == pytest.approx(floor)
    state = scheduler.state_dict()
    assert json.loads(json.dumps(state))["lr_lambdas"][0] == vars(WarmupCosine(warmup, total, floor))


def test_param_groups_keep_their_own_lr_and_default_groups_skip_decay_on_biases():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.05)
    decay = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
    assert decay == {"decay": 0.05, "no_decay": 0.0}
    head = [{"params": model[2].parameters(), "lr": 0.01}, {"params": model[0].parameters()}]
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.05, param_groups=head)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]
    scheduler = build_scheduler(optimizer, warmup_steps=0, total_steps=4)
    optimizer.step()
    scheduler.step()
    ratio = optimizer.param_groups[0]["lr"] / optimizer.param_groups[1]["lr"]
    assert ratio == pytest.approx(0.1)  # one multiplier, each group's own base rate


# ---------------------------------------------------------------------------------------------- CLI


@click.command()
@training_options
def _train(**kwargs):
    config = resolve_training_config(PretrainConfig, kwargs)
    click.echo(json.dumps({**config_to_dict(config), "resume": kwargs["resume"]}))


def test_cli_precedence_file_then_overrides_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 16\nseed: 3\nmax_steps: 10\nmodel:\n  name: vit\n")
    args = [
        "--config",
        path,
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "seed=4",
        "batch_size=2",
        "model.name=r50",
    ]
    result = CliRunner().invoke(_train, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["batch_size"] == 8  # the flag wins over file and override
    assert resolved["seed"] == 4 and resolved["model"]["name"] == "r50" and resolved["max_steps"] == 10
    assert resolved["device"] == "cpu" and resolved["resume"] is False


def test_cli_resume_reads_the_run_config_and_bad_overrides_fail_in_one_line(tmp_path):
    run = tmp_path / "run"
    save_resolved(apply_overrides(PretrainConfig(), ["lr=0.5", f"out={run}"]), run / "config.yaml")
    result = CliRunner().invoke(_train, ["--out", str(run), "--resume", "--max-steps", "7"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["lr"] == 0.5 and resolved["max_steps"] == 7 and resolved["resume"] is True
    result = CliRunner().invoke(_train, ["optim.lrr=1"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert (
        "unknown key 'lrr' at 'optim'" in result.output and "valid keys: betas, lr, schedule" in result.output
    )


def test_cli_resume_refuses_settings_that_would_change_what_was_trained(tmp_path):
    run = tmp_path / "run"
    save_resolved(apply_overrides(PretrainConfig(), ["lr=0.5", f"out={run}"]), run / "config.yaml")
    result = CliRunner().invoke(_train, ["--out", str(run), "--resume", "lr=0.01", "--seed", "3"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "seed, lr would change what was trained" in result.output and "new --out" in result.output
    fine = CliRunner().invoke(_train, ["--out", str(run), "--resume", "--batch-size", "4", "log_every=5"])
    assert fine.exit_code == 0, fine.output
