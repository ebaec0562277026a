"""``contig embed`` reads its run folder through ``imaging.training.run_folder``: a folder of another command
(here ``contig ssl``) or no run at all is one line naming the folder and the command to take ``--out`` from."""

from __future__ import annotations

import pytest

from contig.embed import load_run
from imaging.ssl.train import SslConfig
from imaging.training.config import ConfigError
from imaging.training.run_folder import write_run_config


def test_an_ssl_run_is_not_taken_for_a_pretraining_run(tmp_path):
    write_run_config(tmp_path / "rot", SslConfig(task="rotation", encoder="unet3d"))
    with pytest.raises(ConfigError) as error:
        load_run(tmp_path / "rot")
    message = str(error.value)
    assert message.startswith(
        f"{tmp_path / 'rot'}: not a contig pretrain run (config.yaml has keys of another"
    )
    assert "encoder, encoder_kwargs" in message and message.endswith("give the --out of contig pretrain")
    with pytest.raises(ConfigError, match=r"not a contig pretrain run \(no config.yaml\)"):
        load_run(tmp_path)
