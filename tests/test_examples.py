"""Every configuration file a --help example or the docs name is shipped and loads into its command's
configuration with no unknown key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from contig.benchmark.config import BenchmarkConfig
from contig.cli import cli
from contig.pretrain import PretrainConfig
from imaging.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"examples/contig.yaml": PretrainConfig, "examples/benchmark.yaml": BenchmarkConfig}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_example_configs_load(name):
    config = load_config(ROOT / name, CONFIGS[name])
    assert config.data == "biobank"


def test_every_config_named_in_help_or_docs_is_shipped():
    texts = [CliRunner().invoke(cli, [command, "--help"]).output for command in cli.list_commands(None)]
    texts += [p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]]
    named = {m for text in texts for m in re.findall(r"--config (\S+\.ya?ml)", text)} - {"FILE.yaml"}
    assert named and named <= set(CONFIGS), named - set(CONFIGS)
