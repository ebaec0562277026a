"""Where the time of a contig GWAS goes: every stage of every chunk timed in one process, one thread.

Runs the stages of ``contig gwas`` one after another on one thread (no overlap, so each stage is timed
alone) over the data sets of ``benchmarks/gwas_vs_plink2.py`` and prints seconds per stage and its share:
decode (.bed bytes → float64 block + missing calls), the block product g0ᵀ·[y | Q | 1] (BLAS), Σ g², the
missing-call corrections and statistics, p-values, the parquet rows, the resume journal, then plots and
loci of the whole run. Shares measured this way hold also on a busy machine, where wall times do not.

Usage:
  python benchmarks/gwas_breakdown.py --small
  python benchmarks/gwas_breakdown.py --settings scalar:0.01:16:drop,scalar:0:256:drop
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gwas_vs_plink2 import DATASETS, _make_data  # noqa: E402

from genetics.plink import PlinkFileset  # noqa: E402
from gwas import chunk, kernel, pipeline  # noqa: E402
from gwas.runner import GwasConfig, GwasRun, prepare  # noqa: E402
from gwas.summary import summarize  # noqa: E402


class _Clock:
    """Accumulates seconds per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, name: str, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[name] += time.perf_counter() - start
        return result


def _breakdown(prefix: Path, pheno: Path, covar: Path, mode: str, chunk_size: int, out: Path) -> _Clock:
    clock = _Clock()
    fileset = PlinkFileset(prefix)
    prepared = clock.time("prepare (phenotypes, covariates)", prepare, fileset, pheno, covar, GwasConfig())
    pvalues = kernel.t_test_pvalues
    n_pheno, m_total = len(prepared.phenotype_names), fileset.n_variants
    log10_p = np.empty((n_pheno, m_total))
    block = chunk.decode_block_size(fileset.n_samples, chunk_size, n_pheno)  # as the runner decodes
    buffer = np.empty((block, chunk.padded_samples(fileset.n_samples)))
    sink = pq.ParquetWriter(io.BytesIO(), chunk.WRITE_SCHEMA, **chunk.PARQUET_OPTIONS)
    try:
        for start in range(0, m_total, chunk_size):
            index = np.arange(start, min(start + chunk_size, m_total))
            parts: list[list] = [[] for _ in prepared.designs]
            samples, variants = [], []
            for first in range(0, index.size, block):  # the stages of chunk._block_results, one by one
                g0, block_samples, block_variants = clock.time(
                    "decode + missing calls", fileset.read_zero_missing, index[first : first + block], buffer
                )
                samples.append(block_samples)
                variants.append(block_variants + first)
                for design, part in zip(prepared.designs, parts, strict=True):
                    product = clock.time("product g0ᵀ·[y|Q|1] (BLAS)", np.matmul, g0.T, design.rhs)
                    sumsq = clock.time("Σ g² (einsum)", np.einsum, "ij,ij->j", g0, g0)
                    part.append((product, sumsq))
            kernel.t_test_pvalues = lambda *a: clock.time("p-values", pvalues, *a)  # timed inside _finish
            for design, part in zip(prepared.designs, parts, strict=True):
                product = np.concatenate([p for p, _ in part])
                sumsq = np.concatenate([q for _, q in part])
                clock.time(
                    "corrections + statistics",
                    kernel.associate_products, product, sumsq, np.concatenate(samples),
                    np.concatenate(variants), design, mode,
                )  # fmt: skip
            kernel.t_test_pvalues = pvalues
            stats = chunk.compute_chunk(
                prepared, index, mode, buffer=buffer
            )  # the rows, as the runner has them
            table = clock.time("parquet rows (layout)", chunk.chunk_table, prepared, index, stats)
            clock.time("parquet encode", sink.write_table, table, row_group_size=table.num_rows)
            clock.time("journal (resume)", stats.save, out / "journal.npy")
            log10_p[:, index] = stats.log10_p
    finally:
        kernel.t_test_pvalues = pvalues
        sink.close()
    clock.seconds["corrections + statistics"] -= clock.seconds["p-values"]
    run = GwasRun(out, out, prepared.phenotype_names, np.arange(m_total), log10_p, {}, 0.0)
    summary = summarize(prepared.phenotype_names, [fileset.n_samples] * n_pheno, log10_p, float(n_pheno), {})
    clock.time("loci (clumping)", pipeline.find_loci, run, fileset, pipeline.ClumpConfig())
    clock.time("plots (Manhattan + QQ)", pipeline.plot_run, run, fileset, summary, out, 8)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="samples (default 10000; 2000 with --small)")
    parser.add_argument("--m", type=int, default=None, help="variants (default 50000; 5000 with --small)")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument(
        "--settings", default="scalar:0:256:drop,scalar:0.01:16:drop", help="dataset:missing:P:mode,..."
    )
    parser.add_argument("--workdir", default=None, help="keep data here (default: a temporary folder)")
    args = parser.parse_args()
    n = args.n or (2_000 if args.small else 10_000)
    m = args.m or (5_000 if args.small else 50_000)
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="contig-breakdown-"))
    folder.mkdir(parents=True, exist_ok=True)
    for setting in args.settings.split(","):
        dataset, missing_text, p_text, mode = setting.split(":")
        if dataset not in DATASETS:
            sys.exit(f"unknown data set {dataset!r}; choose from {DATASETS}")
        data = _make_data(folder, dataset, n, m, float(missing_text), int(p_text))
        out = folder / "breakdown-out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        with threadpool_limits(1):
            clock = _breakdown(*data, mode, args.chunk_size, out)
        total = sum(clock.seconds.values())
        compute = total - clock.seconds["loci (clumping)"] - clock.seconds["plots (Manhattan + QQ)"]
        print(
            f"\n{setting}  N={n} M={m}, one thread: {total:.2f} s in all, {compute:.2f} s before loci and plots"
        )
        for name, seconds in sorted(clock.seconds.items(), key=lambda item: -item[1]):
            print(f"  {name:<34}{seconds:>8.2f} s{100 * seconds / total:>7.1f}%")


if __name__ == "__main__":
    main()
