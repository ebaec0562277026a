"""imaging.ssl.train: the runner writes a run directory the fine-tuning side can load, and resumes."""

from __future__ import annotations

import pytest
import torch
import yaml

from imaging.errors import ImagingError
from imaging.ssl import SslConfig, TaskCollate, load_pretrained_encoder, train_ssl
from imaging.ssl.train import resolve_model
from imaging.training.checkpoint import read_weights

TINY = {"base_width": 4, "depth": 2}


def volumes(n: int = 4, channels: int = 2, side: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(channels, side, side, side, generator=g) for _ in range(n)]


def config(tmp_path, **kw) -> SslConfig:
    defaults = dict(
        out=str(tmp_path / "run"),
        task="rotation",
        dim=3,
        encoder_kwargs=dict(TINY),
        max_steps=2,
        batch_size=2,
        device="cpu",
        progress=False,
        log_every=1,
        warmup_steps=0,
    )
    return SslConfig(**{**defaults, **kw})


def test_run_directory_holds_encoder_config_and_prefixed_weights(tmp_path):
    result = train_ssl(config(tmp_path), dataset=volumes())
    run = tmp_path / "run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["encoder"] == "unet3d" and saved["encoder_kwargs"] == {**TINY, "in_chans": 2}
    assert result["step"] == 2 and result["config"].encoder == "unet3d"
    weights = read_weights(run / "last.safetensors")
    assert any(k.startswith("encoder.") for k in weights) and any(k.startswith("head.") for k in weights)
    encoder = load_pretrained_encoder(run, "last")
    state = encoder.state_dict()
    assert state and all(torch.equal(v, weights[f"encoder.{k}"]) for k, v in state.items())
    assert encoder.forward_features(torch.zeros(1, 2, 8, 8, 8)).shape == (1, encoder.num_features)


def test_resume_continues_from_the_last_step(tmp_path):
    train_ssl(config(tmp_path, task="simclr", task_options={"hidden": 8}), dataset=volumes())
    result = train_ssl(
        config(tmp_path, task="simclr", task_options={"hidden": 8}, max_steps=3),
        resume=True,
        dataset=volumes(),
    )
    assert result["step"] == 3
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]


def test_patch_multiple_follows_the_unet_depth():
    cfg = SslConfig(task="jigsaw", encoder_kwargs={"base_width": 4, "depth": 3}, max_steps=1)
    resolved, task = resolve_model(cfg, in_chans=1)
    assert resolved.task_options == {"patch_multiple": 4} and task.patch_multiple == 4


def test_bad_options_are_typed_errors_naming_the_fix(tmp_path):
    with pytest.raises(ImagingError, match="no option.*colour.*valid: .*num_permutations"):
        resolve_model(SslConfig(task="jigsaw", task_options={"colour": 1}), in_chans=1)
    with pytest.raises(ImagingError, match="unknown self-supervised task 'jigsw'.*jigsaw"):
        resolve_model(SslConfig(task="jigsw"), in_chans=1)
    with pytest.raises(ImagingError, match="in_chans=3 but the images .* have 2 channel"):
        train_ssl(config(tmp_path, encoder_kwargs={**TINY, "in_chans": 3}), dataset=volumes())
    with pytest.raises(ImagingError, match="not a finished ssl run"):
        load_pretrained_encoder(tmp_path)


def test_collate_makes_the_same_batch_from_the_same_seeds():
    _, task = resolve_model(SslConfig(task="rpl", encoder_kwargs=TINY, task_options={"hidden": 8}), 1)
    items = [{"image": v, "seed": s} for v, s in zip(volumes(3, 1, 15), (5, 6, 7), strict=True)]
    a, b = TaskCollate(task)(items), TaskCollate(task)(items)
    assert torch.equal(a["patches"], b["patches"]) and torch.equal(a["label"], b["label"])
    other = TaskCollate(task)([{**item, "seed": item["seed"] + 1} for item in items])
    assert not torch.equal(a["patches"], other["patches"])
