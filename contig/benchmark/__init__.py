"""Downstream evaluation harness: label-fraction curves with linear probes, k-NN and fine-tuning.

In-memory API (``harness``): ``benchmark_features``, ``benchmark_finetune``; building blocks
``label_fraction_subset``, ``linear_probe``, ``knn_probe``, ``finetune_classifier``, ``finetune_encoder`` (early
stopping on validation tensors), ``score_predictions``.
Files in, files out (``runner``): ``run_benchmark(BenchmarkConfig)`` → ``results.parquet`` + one PNG per task;
``contig benchmark --config FILE`` on the command line. Metrics live in ``imaging.metrics``.
"""

from contig.benchmark.config import BenchmarkConfig, MethodSpec, TaskSpec
from contig.benchmark.encoders import encode, load_encoder
from contig.benchmark.errors import BenchmarkError
from contig.benchmark.finetune import FinetuneResult, finetune_classifier, finetune_encoder
from contig.benchmark.harness import COLUMNS, FINETUNE_COLUMNS, benchmark_features, benchmark_finetune
from contig.benchmark.plots import plot_task
from contig.benchmark.probes import knn_probe, linear_probe, score_predictions
from contig.benchmark.runner import run_benchmark
from contig.benchmark.subsets import label_fraction_subset

__all__ = [
    "COLUMNS",
    "FINETUNE_COLUMNS",
    "BenchmarkConfig",
    "BenchmarkError",
    "FinetuneResult",
    "MethodSpec",
    "TaskSpec",
    "benchmark_features",
    "benchmark_finetune",
    "encode",
    "finetune_classifier",
    "finetune_encoder",
    "knn_probe",
    "label_fraction_subset",
    "linear_probe",
    "load_encoder",
    "plot_task",
    "run_benchmark",
    "score_predictions",
]
