"""imaging.training: the one training loop every training command shares, and its infrastructure.

Configuration dataclasses (``config``), AdamW + warm-up/cosine schedule (``schedule``), safetensors
checkpoints with an exact resume (``checkpoint``), torchrun/DDP helpers (``distributed``), the run
folder's files and their readers (``run_folder``) and the ``Trainer`` itself. Names are re-exported
lazily, so ``import imaging.training.config`` (the CLI) does not load torch.

>>> from imaging.training import Trainer, TrainingConfig, all_gather_with_grad  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # config
    "ConfigError": "imaging.training.config",
    "TrainingConfig": "imaging.training.config",
    "apply_overrides": "imaging.training.config",
    "config_to_dict": "imaging.training.config",
    "from_dict": "imaging.training.config",
    "load_config": "imaging.training.config",
    "save_resolved": "imaging.training.config",
    # schedule
    "WarmupCosine": "imaging.training.schedule",
    "build_optimizer": "imaging.training.schedule",
    "build_scheduler": "imaging.training.schedule",
    "default_param_groups": "imaging.training.schedule",
    "warmup_cosine": "imaging.training.schedule",
    # checkpoint
    "CheckpointError": "imaging.training.checkpoint",
    "capture_rng_state": "imaging.training.checkpoint",
    "load_state": "imaging.training.checkpoint",
    "load_weights": "imaging.training.checkpoint",
    "read_info": "imaging.training.checkpoint",
    "read_weights": "imaging.training.checkpoint",
    "restore_rng_state": "imaging.training.checkpoint",
    "save_checkpoint_pair": "imaging.training.checkpoint",
    "save_state": "imaging.training.checkpoint",
    "save_weights": "imaging.training.checkpoint",
    "seed_everything": "imaging.training.checkpoint",
    # distributed
    "ResumableSampler": "imaging.training.distributed",
    "all_gather_object": "imaging.training.distributed",
    "all_gather_with_grad": "imaging.training.distributed",
    "all_reduce_mean": "imaging.training.distributed",
    "barrier": "imaging.training.distributed",
    "cleanup": "imaging.training.distributed",
    "init_distributed": "imaging.training.distributed",
    "is_distributed": "imaging.training.distributed",
    "is_main_process": "imaging.training.distributed",
    "local_rank": "imaging.training.distributed",
    "rank": "imaging.training.distributed",
    "resolve_device": "imaging.training.distributed",
    "unwrap_model": "imaging.training.distributed",
    "world_size": "imaging.training.distributed",
    # run folder
    "CONFIG_FILE": "imaging.training.run_folder",
    "MODEL_FILE": "imaging.training.run_folder",
    "checkpoint_file": "imaging.training.run_folder",
    "config_file": "imaging.training.run_folder",
    "find_checkpoint": "imaging.training.run_folder",
    "load_run_config": "imaging.training.run_folder",
    "read_model_spec": "imaging.training.run_folder",
    "read_run_config": "imaging.training.run_folder",
    "write_model_spec": "imaging.training.run_folder",
    "write_run_config": "imaging.training.run_folder",
    # trainer
    "Trainer": "imaging.training.trainer",
    "TrainingError": "imaging.training.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'imaging.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
