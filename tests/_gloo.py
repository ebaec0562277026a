"""Run a test body on several CPU processes joined in a gloo process group (torchrun's environment)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp

from imaging.training import cleanup, init_distributed, is_distributed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(local: int, body: Callable[[int, str], None], port: int, world: int, folder: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(local),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(local),
    )
    torch.set_num_threads(1)
    assert init_distributed(backend="gloo") and is_distributed()
    try:
        body(local, folder)
    finally:
        cleanup()
    # Skip interpreter teardown: on a loaded machine gloo's threads can rarely abort there (SIGABRT after
    # every result is written; cf. pytorch/pytorch#179291). Everything the test reads is on disk already.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(body: Callable[[int, str], None], world: int, folder: Path) -> None:
    """Call the module-level ``body(local_rank, folder)`` on ``world`` gloo processes; results go to files."""
    mp.spawn(_rank, args=(body, free_port(), world, str(folder)), nprocs=world, join=True)
