"""The one training loop shared by every training command; it knows nothing of the model (minGPT style).

``loss_fn(model, batch) -> {"loss": scalar, **other_terms}`` and ``eval_fn(model) -> {metric: float}`` are
the only contact points. The loop does AdamW with parameter groups, warm-up + cosine per optimizer step,
gradient accumulation, mixed precision and channels-last on CUDA, DDP under torchrun, logging and
checkpoints with an exact resume.

Resume is exact (bit-identical weights on CPU) because everything that decides the next update is
either a pure function of the position or saved in ``last.state.safetensors``: the data order comes from
a ``ResumableSampler`` seeded by (seed, epoch) and restarted at the saved position; every sample's
random augmentation is seeded by (seed, epoch, index), independent of the worker that loads it; the
RNG states (per rank), optimizer, scheduler, scaler and the partly filled logging windows are saved.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from imaging.errors import ImagingError
from imaging.io import atomic_target
from imaging.training import checkpoint as ckpt
from imaging.training import distributed as D
from imaging.training.config import TrainingConfig
from imaging.training.run_folder import LOG_FILE, METRICS_FILE, write_run_config
from imaging.training.schedule import build_optimizer, build_scheduler

LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
EvalFn = Callable[[nn.Module], Mapping[str, float]]
log = logging.getLogger("imaging.training")


class TrainingError(ImagingError):
    """The training set-up or a run directory does not allow training to start or continue."""


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch)["loss"]`` over ``train_data``.

    Args:
        model: any ``nn.Module``; moved to the configured device (and wrapped in DDP under torchrun).
        loss_fn: ``(model, batch) -> dict`` with a scalar tensor ``"loss"``; other entries are logged.
            It must call ``model(...)`` (the DDP wrapper's forward), not inner methods, for DDP to sync.
        train_data: a map-style dataset (``len`` and ``[i]``).
        config: ``TrainingConfig`` or a subclass (saved whole as ``config.yaml``).
        eval_fn: ``model -> {metric: float}``, run on every rank under ``torch.no_grad()`` every
            ``eval_every`` steps and at the end; ``config.monitor`` picks the metric for ``best``.
        param_groups: AdamW groups ``[{"params": [...], "lr": ..., "weight_decay": ...}]``; default:
            weight decay on ≥2-D parameters only.
        collate_fn: the ``DataLoader`` collate function.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_data: Dataset,
        config: TrainingConfig,
        eval_fn: EvalFn | None = None,
        param_groups: Iterable[dict[str, Any]] | None = None,
        collate_fn: Callable | None = None,
    ):
        if isinstance(train_data, IterableDataset) or not hasattr(train_data, "__len__"):
            raise TrainingError(
                "train_data must be a map-style dataset (len and [index]) for a resumable order"
            )
        self.config, self.loss_fn, self.eval_fn, self.collate_fn = config, loss_fn, eval_fn, collate_fn
        self.rank, self.world_size, self.is_main = D.rank(), D.world_size(), D.is_main_process()
        self.device = D.resolve_device(config.device)
        self.amp_dtype = getattr(torch, config.amp_dtype)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.channels_last = config.channels_last and self.device.type == "cuda"
        self.model = model.to(self.device)
        if self.channels_last:
            D.to_channels_last(self.model)
        self.optimizer = build_optimizer(model, config.lr, config.weight_decay, config.betas, param_groups)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.use_amp and config.amp_dtype == "float16"
        )
        self.dataset = D.SeededDataset(train_data, config.seed)
        self.sampler = D.ResumableSampler(self.dataset, self.world_size, self.rank, seed=config.seed)
        count, size = self.sampler.num_samples, config.batch_size
        self.micro_per_epoch = count // size if config.drop_last else math.ceil(count / size)
        if self.micro_per_epoch == 0:
            raise TrainingError(
                f"{len(train_data)} samples give no full batch of {size} per process; lower batch_size or set drop_last=false"
            )
        accum = config.grad_accum_steps
        total_micro = math.inf if config.epochs is None else config.epochs * self.micro_per_epoch
        by_epochs = math.inf if config.epochs is None else math.ceil(total_micro / accum)
        self.total_steps = int(min(config.max_steps or math.inf, by_epochs))
        self._micro_needed = min(total_micro, self.total_steps * accum)
        self.scheduler = build_scheduler(
            self.optimizer, config.warmup_steps, self.total_steps, config.min_lr_ratio
        )
        self.ddp_model = D.wrap_ddp(self.model, self.device, config.find_unused_parameters)
        self.run_dir = Path(config.out)
        self.step = self.epoch = self.batch_in_epoch = self.micro_step = 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.last_row: dict[str, Any] = {}
        self._log_window, self._eval_window = _Window(), _Window()
        self._micro_in_window, self._window_size = 0, accum
        self._csv: _MetricsCsv | None = None
        self._tb: Any = None
        self._bar: Any = None

    # ------------------------------------------------------------------------------------------ fit
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``total_steps``; with ``resume``, continue from ``last.*`` in ``config.out`` (or start
        afresh when there is none). Returns step, epoch, best value/step and the last logged row."""
        state_path = self.run_dir / ckpt.LAST_STATE
        resumed = resume and state_path.is_file()
        if state_path.is_file() and not resume:
            raise TrainingError(
                f"{self.run_dir} already holds a checkpoint ({ckpt.LAST_STATE}); resume it (--resume) or choose another output directory"
            )
        if resumed:
            self._load_last()
        else:
            ckpt.seed_everything(self.config.seed + self.rank)
        with self._outputs(resumed):
            cfg, what = self.config, "resuming at" if resumed else "starting at"
            log.info(
                "%s step %d/%d on %s × %d", what, self.step, self.total_steps, self.device, self.world_size
            )
            log.info("amp %s, channels_last %s", self.use_amp, self.channels_last)
            log.info("batch %d per process, accumulation %d", cfg.batch_size, cfg.grad_accum_steps)
            self._loop()
            log.info(
                "finished at step %d; best %s %s at step %s",
                self.step,
                cfg.monitor,
                self.best_value,
                self.best_step,
            )
        keys = ("step", "epoch", "best_value", "best_step")
        return {**{key: getattr(self, key) for key in keys}, "last": dict(self.last_row)}

    def _loop(self) -> None:
        cfg = self.config
        while self.step < self.total_steps:
            self.sampler.set_position(self.epoch, self.batch_in_epoch * cfg.batch_size)
            self.dataset.epoch = self.epoch
            loader = DataLoader(
                self.dataset,
                batch_size=cfg.batch_size,
                sampler=self.sampler,
                num_workers=cfg.num_workers,
                collate_fn=self.collate_fn,
                pin_memory=self.device.type == "cuda",
                drop_last=cfg.drop_last,
                generator=torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch),
            )
            for batch in loader:
                if self._micro_in_window == 0:  # ≥ 1: a resumed micro count may run past the new target
                    remaining = self._micro_needed - self.micro_step
                    self._window_size = int(max(1, min(cfg.grad_accum_steps, remaining)))
                self._micro_step(batch)
                if self._micro_in_window == self._window_size:
                    self._optimizer_step()
                    self._after_step()
                    if self.step >= self.total_steps:
                        break
            if self.batch_in_epoch >= self.micro_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _micro_step(self, batch: Any) -> None:
        batch = D.move_to_device(batch, self.device, self.channels_last)
        sync = self._micro_in_window == self._window_size - 1
        no_sync = getattr(self.ddp_model, "no_sync", None)
        with no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext():
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                terms = self.loss_fn(self.ddp_model, batch)
            loss = terms.get("loss") if isinstance(terms, Mapping) else None
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TrainingError("loss_fn must return a dict with a scalar tensor under 'loss'")
            self.scaler.scale(loss.reshape(()) / self._window_size).backward()
        items = D.count_items(batch, self.config.batch_size) * self.world_size
        for window in (self._log_window, self._eval_window):
            window.add(terms, items)
        self._micro_in_window += 1
        self.micro_step += 1
        self.batch_in_epoch += 1

    def _optimizer_step(self) -> None:
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self._lr = self.optimizer.param_groups[0]["lr"]  # the rate this update used
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self._micro_in_window = 0

    def _after_step(self) -> None:
        cfg, final = self.config, self.step >= self.total_steps
        due_log = final or (cfg.log_every > 0 and self.step % cfg.log_every == 0)
        due_eval = final or (cfg.eval_every > 0 and self.step % cfg.eval_every == 0)
        due_save = final or (cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0)
        row: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.micro_step / self.micro_per_epoch, 4),
            "lr": self._lr,
        }
        if due_log:
            row.update(self._log_window.reduce(self.step))
            self._log_window.reset()
        if due_eval:
            row.update(self._evaluate())
        if due_log or due_eval:
            self._write_row(row)
        if due_save:
            self._save_last()
        if self._bar is not None:
            self._bar.update(1)

    # -------------------------------------------------------------------------------- evaluation
    def _evaluate(self) -> dict[str, float]:
        train = self._eval_window.reduce(self.step)
        self._eval_window.reset()
        metrics: dict[str, float] = {}
        if self.eval_fn is not None:
            modes = {module: module.training for module in self.model.modules()}
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = {str(k): float(v) for k, v in self.eval_fn(self.model).items()}
            finally:
                for module, mode in modes.items():
                    module.training = mode
            clash = sorted(set(metrics) & (set(train) | {"step", "epoch", "lr"}))
            if clash:
                raise TrainingError(
                    f"eval_fn metric name(s) {clash} clash with loss terms or columns; rename them (e.g. 'val_loss')"
                )
        value = metrics.get(self.config.monitor, train.get(self.config.monitor))
        if value is None:
            raise TrainingError(
                f"monitor {self.config.monitor!r} is neither an eval metric ({', '.join(metrics) or 'none'}) "
                f"nor a loss term ({', '.join(train)}); set monitor=<name>"
            )
        better = self.best_value is None or (
            value < self.best_value if self.config.mode == "min" else value > self.best_value
        )
        if better and math.isfinite(value):
            self.best_value, self.best_step = value, self.step
            if self.is_main:
                info = {"step": self.step, "monitor": self.config.monitor, "value": value}
                ckpt.save_weights(self.model, self.run_dir / ckpt.BEST, info)
                log.info("step %d: new best %s = %.6g → %s", self.step, self.config.monitor, value, ckpt.BEST)
        return metrics

    # -------------------------------------------------------------------------------- checkpoints
    def _save_last(self) -> None:
        # Per-rank state (RNGs, the rank's own loss sums): every rank takes part, rank 0 writes.
        windows = {"log": self._log_window.state(), "eval": self._eval_window.state()}
        ranks = D.all_gather_object({"rng": ckpt.capture_rng_state(), "windows": windows})
        if not self.is_main:
            return
        epoch, batch = self.epoch, self.batch_in_epoch
        if batch >= self.micro_per_epoch:  # the epoch just ended
            epoch, batch = epoch + 1, 0
        cfg = self.config
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {
                "step": self.step,
                "epoch": epoch,
                "batch_in_epoch": batch,
                "micro_step": self.micro_step,
                "batch_size": cfg.batch_size,
                "world_size": self.world_size,
                "seed": cfg.seed,
            },
            "best": {"value": self.best_value, "step": self.best_step},
            "ranks": ranks,
        }
        info = {"step": self.step, "epoch": epoch}
        ckpt.save_checkpoint_pair(
            self.model, self.run_dir / ckpt.LAST, state, self.run_dir / ckpt.LAST_STATE, info
        )
        log.info("step %d: saved %s and %s", self.step, ckpt.LAST, ckpt.LAST_STATE)

    def _load_last(self) -> None:
        weights, state_path = self.run_dir / ckpt.LAST, self.run_dir / ckpt.LAST_STATE
        steps = ckpt.read_info(weights).get("step"), ckpt.read_info(state_path).get("step")
        if steps[0] != steps[1]:
            raise TrainingError(
                f"{weights} (step {steps[0]}) and {state_path} (step {steps[1]}) are not a pair; the last save was interrupted"
            )
        ckpt.load_weights(self.model, weights)
        state = ckpt.load_state(state_path)
        self.optimizer.load_state_dict(state["optimizer"])
        # The saved schedule parameters are dropped: the schedule follows the (possibly extended) config.
        current = [dict(vars(fn)) for fn in self.scheduler.lr_lambdas]
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": current})
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        p = state["progress"]
        self.step, self.epoch, self.batch_in_epoch = p["step"], p["epoch"], p["batch_in_epoch"]
        self.micro_step = p["micro_step"]
        if (p["batch_size"], p["world_size"]) != (self.config.batch_size, self.world_size):
            consumed = p["batch_in_epoch"] * p["batch_size"] * p["world_size"]
            self.batch_in_epoch = consumed // (self.config.batch_size * self.world_size)
            self.micro_step = self.epoch * self.micro_per_epoch + self.batch_in_epoch
            log.warning(
                "batch size or world size changed since the checkpoint: the data order continues approximately"
            )
        self.best_value, self.best_step = state["best"]["value"], state["best"]["step"]
        if len(state["ranks"]) == self.world_size:
            mine = state["ranks"][self.rank]
            ckpt.restore_rng_state(mine["rng"])
            self._log_window.load(mine["windows"]["log"], self.device)
            self._eval_window.load(mine["windows"]["eval"], self.device)
        else:  # another world size: fresh per-rank randomness and empty windows
            ckpt.seed_everything(self.config.seed + self.rank + self.step)

    # ------------------------------------------------------------------------------------- outputs
    @contextlib.contextmanager
    def _outputs(self, resumed: bool):
        """Rank 0: ``config.yaml``, ``train.log``, ``metrics.csv``, TensorBoard and the progress bar."""
        handler = None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(self.run_dir, self.config)
            handler = logging.FileHandler(self.run_dir / LOG_FILE, encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
            )
            log.addHandler(handler)
            if log.level == logging.NOTSET or log.level > logging.INFO:
                log.setLevel(logging.INFO)
            self._csv = _MetricsCsv(self.run_dir / METRICS_FILE, keep_until=self.step if resumed else None)
            self._tb = _tensorboard(self.run_dir / "tensorboard") if self.config.tensorboard else None
            self._bar = tqdm(
                total=self.total_steps,
                initial=self.step,
                unit="step",
                desc="train",
                disable=not self.config.progress,
                dynamic_ncols=True,
            )
        try:
            yield
        finally:
            for closable in (self._csv, self._tb, self._bar):
                if closable is not None:
                    closable.close()
            self._csv = self._tb = self._bar = None
            if handler is not None:
                log.removeHandler(handler)
                handler.close()

    def _write_row(self, row: dict[str, Any]) -> None:
        self.last_row = row
        if not self.is_main:
            return
        assert self._csv is not None
        self._csv.write(row)
        if self._tb is not None:
            for key, value in row.items():
                if key != "step":
                    self._tb.add_scalar(key, value, self.step)
        rate = self._log_window.rate()
        text = " ".join(f"{k} {v:.6g}" for k, v in row.items() if k not in ("step", "epoch"))
        log.info(
            "step %d/%d epoch %.3f %s (%.1f items/s)", self.step, self.total_steps, row["epoch"], text, rate
        )
        if self._bar is not None and "loss" in row:
            self._bar.set_postfix(
                loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.3g}", items_s=f"{rate:.1f}", refresh=False
            )


class _Window:
    """Running sums of the loss terms since the last log (or evaluation), kept on the device."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.items, self.started, self._rate = 0, time.perf_counter(), 0.0

    def add(self, terms: Mapping[str, torch.Tensor], items: int) -> None:
        for key, value in terms.items():
            value = value.detach().float().reshape(())
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.items += items

    def reduce(self, step: int) -> dict[str, float]:
        """Means over the window and over ranks (every rank must call it)."""
        keys = sorted(set().union(*D.all_gather_object(sorted(self.sums))))
        if not keys:
            return {}
        device = next(iter(self.sums.values())).device if self.sums else torch.device("cpu")
        sums = torch.stack([self.sums.get(k, torch.zeros((), device=device)) for k in keys]).double()
        counts = torch.tensor([self.counts.get(k, 0) for k in keys], dtype=torch.float64, device=device)
        totals = D.all_reduce_mean(torch.stack([sums, counts])).tolist()
        means = {k: s / c for k, s, c in zip(keys, *totals, strict=True) if c > 0}
        bad = sorted(k for k, v in means.items() if not math.isfinite(v))
        if bad:
            raise TrainingError(
                f"loss term(s) {bad} became non-finite by step {step}; lower lr, raise warmup_steps or set grad_clip"
            )
        elapsed = time.perf_counter() - self.started
        self._rate = self.items / elapsed if elapsed > 0 else 0.0
        return means

    def rate(self) -> float:
        return self._rate

    def reset(self) -> None:
        self.sums, self.counts, self.items, self.started = {}, {}, 0, time.perf_counter()

    def state(self) -> dict[str, Any]:
        return {
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "counts": dict(self.counts),
            "items": self.items,
        }

    def load(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.reset()
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.counts, self.items = dict(state["counts"]), state["items"]


class _MetricsCsv:
    """``metrics.csv``, appended and flushed per row; a new column rewrites the file (atomically) with
    the wider header. ``keep_until=step`` keeps the existing rows up to that step (resume)."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path, self.columns, rows = path, [], []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or [])
                rows = [row for row in reader if int(float(row["step"])) <= keep_until]
        self._rewrite(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        new = [key for key in row if key not in self.columns]
        if new:
            self._handle.close()
            with open(self.path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            self.columns += new
            self._rewrite(rows)
        self._writer.writerow(row)
        self._handle.flush()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with atomic_target(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            if self.columns:
                writer.writeheader()
            writer.writerows(rows)
        self._handle = open(self.path, "a", newline="")  # kept open for the run
        self._writer = csv.DictWriter(self._handle, fieldnames=self.columns, restval="")

    def close(self) -> None:
        self._handle.close()


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning(
            "tensorboard=true but the tensorboard package is absent (pip install 'contig[tensorboard]'); logging to metrics.csv only"
        )
        return None
    return SummaryWriter(log_dir=str(folder))


__all__ = ["EvalFn", "LossFn", "Trainer", "TrainingError"]
