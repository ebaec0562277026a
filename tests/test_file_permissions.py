"""Results honour the umask: atomic writers give the permissions a plain open() would, not 0o600."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from genetics.atomic import atomic_write_text
from imaging.io import atomic_target
from imaging.training.checkpoint import save_weights


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_atomic_writer_honours_the_umask(umask, tmp_path):
    expected = 0o666 & ~umask
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_target(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    save_weights(torch.nn.Linear(2, 2), tmp_path / "c.safetensors")
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    assert _mode(tmp_path / "plain.txt") == expected
    assert {_mode(tmp_path / name) for name in ("a.txt", "b.bin", "c.safetensors")} == {expected}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.safetensors", "plain.txt"]
