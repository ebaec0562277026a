"""The run folder format (``imaging.training.run_folder``): model.yaml round trip, typed config, the one-line
errors for a folder of another command or no run at all, atomic writes, checkpoint lookup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from imaging.errors import ImagingError
from imaging.mil.model import create_mil_model, load_mil_model, save_model_config
from imaging.ssl.pretrained import load_pretrained_encoder, read_ssl_config
from imaging.ssl.train import SslConfig
from imaging.training.checkpoint import BEST, LAST, CheckpointError, save_weights
from imaging.training.config import ConfigError, TrainingConfig
from imaging.training.run_folder import (
    CONFIG_FILE,
    MODEL_FILE,
    checkpoint_file,
    config_file,
    find_checkpoint,
    load_run_config,
    read_model_spec,
    read_run_config,
    write_model_spec,
    write_run_config,
)
from imaging.translation.runner import load_translation_model
from imaging.translation.runner import save_model_config as save_translation_spec

SSL = SslConfig(task="rotation", encoder="unet3d", encoder_kwargs={"base_width": 4, "depth": 2}, seed=3)


def ssl_run(run: Path) -> Path:
    """A folder as ``contig ssl`` leaves it: config.yaml and last.safetensors."""
    write_run_config(run, SSL)
    save_weights({"encoder.x": torch.zeros(1)}, run / LAST)
    return run


def test_model_yaml_round_trips(tmp_path):
    spec = {"mode": "paired", "source": "t1", "target": "t2", "size": None, "model": {"dim": 3, "gan": True}}
    path = write_model_spec(tmp_path / "run", spec)
    assert path == tmp_path / "run" / MODEL_FILE
    assert read_model_spec(path.parent, "contig translate", required=("mode", "model")) == spec
    assert list(yaml.safe_load(path.read_text())) == list(spec)  # key order kept
    write_model_spec(tmp_path / "defaults", {"mode": "paired", "model": {}})  # {} is a value, not missing
    assert read_model_spec(tmp_path / "defaults", "contig translate", required=("model",))["model"] == {}
    model = create_mil_model("attention", backbone="resnet10t", embed_dim=8, attention_dim=4)
    save_model_config(model, tmp_path / "mil")
    assert read_model_spec(tmp_path / "mil", "contig mil train") == model.config


def test_typed_config_round_trips(tmp_path):
    run = ssl_run(tmp_path / "rot")
    assert config_file(run) == run / CONFIG_FILE
    assert load_run_config(run, SslConfig, "contig ssl") == SSL
    assert read_ssl_config(run) == SSL
    assert read_run_config(run, "contig ssl", required=("encoder",))["encoder_kwargs"] == SSL.encoder_kwargs
    (run / CONFIG_FILE).write_text(yaml.safe_dump({"encoder": "unet3d", "lr": "fast"}))
    with pytest.raises(ConfigError, match=r"config file .*config.yaml: .*lr"):  # a bad value, not a command
        read_ssl_config(run)


def test_a_run_of_another_command_is_named_as_such(tmp_path):
    run = ssl_run(tmp_path / "rot")
    with pytest.raises(ConfigError) as error:  # an ssl run where a plain training run is expected
        load_run_config(run, TrainingConfig, "contig mil train")
    message = str(error.value)
    assert message.startswith(f"{run}: not a contig mil train run (config.yaml has keys of another command: ")
    assert "cache, data, dim, encoder, encoder_kwargs, modalities, …" in message
    assert message.endswith("; give the --out of contig mil train") and "\n" not in message
    with pytest.raises(
        ConfigError, match=r"not a contig mil train run \(no model.yaml\); give the --out of contig mil"
    ):
        load_mil_model(run)
    translation = tmp_path / "translation"
    save_translation_spec(translation, {"mode": "paired", "source": "t1", "target": "t2", "model": {}})
    with pytest.raises(
        ConfigError, match=r"model.yaml has keys of another command: mode, model, source, target\)"
    ):
        load_mil_model(translation)
    write_model_spec(tmp_path / "mil", {"backbone": "resnet10t", "pooling": "mean"})
    with pytest.raises(
        ConfigError, match=r"contig translate run \(model.yaml has no 'mode', 'source', 'target'"
    ):
        load_translation_model(tmp_path / "mil")
    pretrain = tmp_path / "pretrain"  # a contig pretrain run: no encoder, keys of its own
    pretrain.mkdir()
    (pretrain / CONFIG_FILE).write_text(
        yaml.safe_dump({"image_encoder": "resnet18", "towers": {"snp": "mlp"}})
    )
    save_weights({"image_tower.w": torch.zeros(1)}, pretrain / LAST)
    with pytest.raises(
        ImagingError, match=r"not a contig ssl run \(config.yaml has keys of another command: image"
    ):
        load_pretrained_encoder(pretrain, "last")


def test_a_folder_that_is_no_run_says_what_it_lacks(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^\S+: not a contig ssl run \(no config.yaml\); give the --out of contig ssl$"
    ):
        read_run_config(tmp_path, "contig ssl")
    with pytest.raises(ConfigError, match=r"missing: not a contig ssl run \(no such folder\)"):
        load_run_config(tmp_path / "missing", SslConfig, "contig ssl")
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump({"task": "rotation"}))
    with pytest.raises(ConfigError, match=r"\(config.yaml has no 'encoder'; its keys: task\)"):
        read_ssl_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping, got list"):
        read_run_config(tmp_path, "contig ssl")
    with pytest.raises(ConfigError, match=r"not a contig translate run \(no model.yaml\)"):
        load_translation_model(tmp_path)


def test_a_failed_model_yaml_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_model_spec(run, {"backbone": "resnet10t"})

    def half_then_crash(data, stream, **kwargs):
        stream.write("backbone: res")  # half of a file that would parse as another model
        raise OSError("disk full")

    monkeypatch.setattr(yaml, "safe_dump", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        write_model_spec(run, {"backbone": "resnet50"})
    with pytest.raises(OSError, match="disk full"):
        write_model_spec(tmp_path / "fresh", {"backbone": "resnet50"})
    monkeypatch.undo()
    assert read_model_spec(run, "contig mil train") == {"backbone": "resnet10t"}
    assert [p.name for p in run.iterdir()] == [MODEL_FILE]  # no temporary file left behind
    assert not (tmp_path / "fresh" / MODEL_FILE).exists() and not list((tmp_path / "fresh").iterdir())


def test_best_falls_back_to_last_and_a_missing_checkpoint_names_the_folder(tmp_path):
    assert (checkpoint_file(tmp_path, "best").name, checkpoint_file(tmp_path, "last").name) == (BEST, LAST)
    with pytest.raises(
        CheckpointError, match=r"no best.safetensors or last.safetensors; .*--out of contig ssl"
    ):
        find_checkpoint(tmp_path, "best", "contig ssl")
    save_weights({"w": torch.zeros(1)}, tmp_path / LAST)
    assert find_checkpoint(tmp_path) == tmp_path / LAST
    save_weights({"w": torch.zeros(1)}, tmp_path / BEST)
    assert find_checkpoint(tmp_path, "best") == tmp_path / BEST
    assert find_checkpoint(tmp_path, "last") == tmp_path / LAST
    (tmp_path / LAST).unlink()
    with pytest.raises(CheckpointError, match=r"no last.safetensors;"):  # last never falls back to best
        find_checkpoint(tmp_path, "last")


def test_the_format_module_does_not_load_torch():
    code = "import sys, imaging.training.run_folder; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
