"""``contig benchmark`` configuration: data, tasks, methods (encoder sources), protocols, fractions, seeds.

Loaded from YAML with ``imaging.training.config.load_config`` and ``key=value`` overrides
(``fractions=[0.1,1.0] seeds=[0]``); the resolved configuration is saved beside the results.

.. code-block:: yaml

    data: biobank                      # folder with downstream/labels.parquet (contig simulate)
    out: runs/benchmark
    tasks:
      - {name: dr_grade, target: grade, kind: ordinal}
      - {name: any_dr, target: grade, kind: binary, threshold: 0}   # grade > 0 → 1
    methods:
      - {name: random, source: "random:resnet18"}
      - {name: contig, source: "features:embed/features.parquet"}
      - {name: mine, source: "timm:convnext_atto", weights: my_weights.pth}
    protocols: [linear, knn, finetune]
    fractions: [0.01, 0.05, 0.1, 0.25, 1.0]
    seeds: [0, 1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from contig.benchmark.encoders import parse_source
from contig.benchmark.harness import DEFAULT_FRACTIONS, PROTOCOLS
from contig.benchmark.probes import KINDS
from imaging.training.config import ConfigError


@dataclass
class TaskSpec:
    """One downstream task: a label column and how to treat it.

    ``threshold`` turns the column into a binary target (value > threshold → 1), e.g. ``grade > 0``.
    ``num_classes`` fixes K for multiclass/ordinal (default: 1 + the largest label).
    """

    target: str = "grade"
    kind: Literal["binary", "multiclass", "ordinal", "regression"] = "ordinal"
    name: str = ""  # default: the target column
    threshold: float | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.target
        if self.threshold is not None and self.kind != "binary":
            raise ConfigError(
                f"task {self.name!r}: threshold applies to kind binary only (kind is {self.kind})"
            )


@dataclass
class MethodSpec:
    """One encoder to compare: ``source`` as in ``contig.benchmark.encoders`` (``random:resnet18``,
    ``timm:<model>``, ``ssl:<run>``, ``contig:<run>``, ``features:<parquet>``); ``weights`` a local file
    for ``timm:`` sources."""

    source: str = "random:resnet18"
    name: str = ""  # default: the source
    weights: str | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.source
        try:
            parse_source(self.source)
        except ValueError as error:
            raise ConfigError(str(error)) from None


@dataclass
class BenchmarkConfig:
    """Everything ``run_benchmark`` needs. Images are used for encoder methods only.

    Probe settings: ``probe_c`` None → C by inner CV (see ``linear_probe``). Random encoders are
    initialised with ``init_seed``; the ``seeds`` vary label subsets, probes, fine-tuning and bootstrap.
    """

    data: str = ""
    out: str = "runs/benchmark"
    tasks: list[TaskSpec] = field(default_factory=lambda: [TaskSpec()])
    methods: list[MethodSpec] = field(default_factory=lambda: [MethodSpec()])
    protocols: list[Literal["linear", "knn", "finetune"]] = field(default_factory=lambda: ["linear"])
    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train_splits: list[str] = field(default_factory=lambda: ["train", "val"])
    test_split: str = "test"
    n_boot: int = 1000
    alpha: float = 0.05
    probe_c: float | None = None
    knn_k: int = 20
    image_size: int | None = None
    init_seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = 64  # images per forward pass when encoding
    finetune_steps: int = 1000  # a cap: runs stop early on the loss of finetune_val_split
    finetune_val_split: str | None = "val"  # None: no validation, every run trains finetune_steps steps
    finetune_eval_every: int = 10
    finetune_patience: int = 5
    finetune_lr: float = 1e-4
    finetune_batch_size: int = 16
    plot: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not self.tasks or not self.methods or not self.protocols or not self.fractions or not self.seeds:
            problems.append("tasks, methods, protocols, fractions and seeds must each be non-empty")
        problems += [
            f"fraction {f} is not in (0, 1]; write 1% as 0.01" for f in self.fractions if not 0 < f <= 1
        ]
        problems += [
            f"unknown protocol {p!r}; use {', '.join(PROTOCOLS)}"
            for p in self.protocols
            if p not in PROTOCOLS
        ]
        problems += [f"task {t.name!r}: unknown kind {t.kind!r}" for t in self.tasks if t.kind not in KINDS]
        for label, names in (
            ("method", [m.name for m in self.methods]),
            ("task", [t.name for t in self.tasks]),
        ):
            if len(set(names)) != len(names):
                problems.append(f"{label} names must be unique, got {names}")
        if self.n_boot < 1 or not 0 < self.alpha < 1:
            problems.append(f"need n_boot >= 1 and 0 < alpha < 1 (got {self.n_boot}, {self.alpha})")
        sizes = (self.finetune_steps, self.batch_size, self.finetune_batch_size, self.knn_k)
        sizes += (self.finetune_eval_every, self.finetune_patience)
        if min(sizes) < 1:
            problems.append(
                "finetune_steps, batch_size, finetune_batch_size, knn_k, finetune_eval_every and "
                "finetune_patience must be >= 1"
            )
        if self.finetune_val_split is not None and self.finetune_val_split not in self.train_splits:
            problems.append(
                f"finetune_val_split {self.finetune_val_split!r} is not one of train_splits {self.train_splits}; "
                "add it there or set finetune_val_split=null"
            )
        if problems:
            raise ConfigError("invalid benchmark config: " + "; ".join(problems))
