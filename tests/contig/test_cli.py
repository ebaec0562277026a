"""The ``contig`` program: every subcommand of ARCHITECTURE.md is there, imports, and has --help with examples."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from contig.cli import SUBCOMMANDS, cli

DOCUMENTED = {
    "simulate", "gwas", "pgs", "burden", "pretrain", "embed", "explain", "ssl", "finetune", "translate",
    "mil", "benchmark", "demo",
}  # fmt: skip
TRAINING = ("pretrain", "ssl", "finetune", "translate")


def test_every_documented_subcommand_is_registered():
    assert DOCUMENTED <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_shows_examples(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"\n    contig {name} " in result.output.replace("\b", "")


@pytest.mark.parametrize("name", TRAINING)
def test_training_commands_take_the_common_options(name):
    output = CliRunner().invoke(cli, [name, "--help"]).output
    for flag in (
        "--config",
        "--out",
        "--max-steps",
        "--epochs",
        "--batch-size",
        "--seed",
        "--device",
        "--resume",
    ):
        assert flag in output, f"contig {name} lacks {flag}"
