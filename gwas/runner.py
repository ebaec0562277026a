"""The chunked GWAS runner: IDs, phenotype groups, variant chunks, parallel workers, journal, resume, outputs.

Chunks are computed on worker threads (one core each) and appended in variant order to
``OUT/sumstats.parquet`` by one writer thread. Memory is O(workers × (decode block × N + chunk × P)); one
float64 LOG10_P per (phenotype, variant) is kept in a memory-mapped file for the summary, loci and plots.
Each finished chunk's statistics are journalled atomically to ``OUT/chunks/``; ``resume=True`` skips
journalled chunks when the run's fingerprint matches, so an interrupted run restarted with the same
arguments gives byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from gwas.device import DeviceProducts

from genetics.atomic import atomic_path, atomic_write_text
from genetics.plink import PlinkFileset
from gwas.chunk import (
    CACHE_BLOCKS_MAX_PHENOTYPES,
    PARQUET_OPTIONS,
    WRITE_SCHEMA,
    ChunkStats,
    chunk_table,
    compute_chunk,
    decode_block_size,
    padded_samples,
)
from gwas.errors import GwasInputError
from gwas.kernel import GroupDesign, covariate_basis, residualize
from gwas.phenotypes import PhenotypeGroup, group_by_missingness, load_covariates, load_phenotypes


@dataclass
class GwasConfig:
    """Options of one GWAS run (library form of the ``contig gwas`` flags)."""

    pheno_names: list[str] | None = None
    covar_names: list[str] | None = None
    missing_genotype: str = "drop"
    chunk_size: int = 2048
    threads: int | None = None
    covar_variance_standardize: bool = False
    resume: bool = False
    progress: bool = True
    device: str = "cpu"  # "cpu" (numpy), "cuda", or "auto" (cuda when torch sees a GPU)
    scheduler: str | None = None  # Dask distributed scheduler address; None runs in this process


def product_device(device: str) -> str | None:
    """Map the ``--device`` choice to the device of the block products (None = numpy on the CPU)."""
    if device == "cpu":
        return None
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GwasInputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return device


@dataclass
class PreparedGwas:
    """Everything the chunk loop needs, computed once."""

    fileset: PlinkFileset
    phenotype_names: list[str]
    groups: list[PhenotypeGroup]
    bases: list[np.ndarray]  # per group (n_g, k)
    residuals: list[np.ndarray]  # per group (n_g, P_g)
    variants: np.ndarray  # (M,) .bim rows tested
    designs: list[GroupDesign]  # per group, embedded in all .fam rows
    n_samples_used: int  # samples in at least one group
    skipped: dict[str, str] = field(default_factory=dict)  # phenotype -> reason
    # device name -> DeviceProducts, made on first use in this process (each Dask worker makes its own)
    device_products: dict = field(default_factory=dict, repr=False, compare=False)

    def products_on(self, device: str | None) -> DeviceProducts | None:
        """The groups' device copies for ``device`` (None: CPU path), made once and shared by threads."""
        if device is None:
            return None
        with _DEVICE_LOCK:
            if device not in self.device_products:
                from gwas.device import DeviceProducts

                self.device_products[device] = DeviceProducts(device, self.designs)
            return self.device_products[device]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "device_products": {}}  # device tensors never travel


_DEVICE_LOCK = threading.Lock()


# A phenotype whose residual sum of squares after the covariates is below this fraction of its centred
# sum of squares is a linear combination of them; its t statistics would be rounding noise.
_EXPLAINED_TOL = 1e-10


def _sum_sq(values: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->j", values, values)


def _raw_group_values(
    values: np.ndarray, columns: list[int], groups: list[PhenotypeGroup]
) -> list[np.ndarray]:
    return [values[np.ix_(g.samples, np.asarray(columns)[g.phenotypes])] for g in groups]


def _residualized_groups(
    values: np.ndarray,
    columns: list[int],
    cov_values: np.ndarray,
    cov_names: list[str],
    sample_mask: np.ndarray | None,
) -> tuple[list[PhenotypeGroup], list[np.ndarray], list[np.ndarray]]:
    """Group phenotype ``columns`` by missingness; per group the covariate basis and residualized values."""
    groups = group_by_missingness(values[:, columns], cov_values, sample_mask)
    bases = [covariate_basis(cov_values[g.samples], cov_names) for g in groups]
    raw = _raw_group_values(values, columns, groups)
    return groups, bases, [residualize(q, y) for q, y in zip(bases, raw, strict=True)]


def prepare(
    fileset: PlinkFileset,
    pheno: str | os.PathLike | pd.DataFrame,
    covar: str | os.PathLike | pd.DataFrame | None = None,
    options: GwasConfig | None = None,
    variants: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
) -> PreparedGwas:
    """Align phenotypes/covariates to the .fam, drop unusable phenotypes with a warning, build groups."""
    options = options or GwasConfig()
    fam = fileset.fam
    if isinstance(pheno, pd.DataFrame):
        phen = load_phenotypes("phenotype table", fam, options.pheno_names, table=pheno)
    else:
        phen = load_phenotypes(str(pheno), fam, options.pheno_names)
    if covar is None:
        cov_values, cov_names = np.empty((len(fam), 0)), []
    else:
        source = "covariate table" if isinstance(covar, pd.DataFrame) else str(covar)
        table = covar if isinstance(covar, pd.DataFrame) else None
        cov = load_covariates(source, fam, options.covar_names, options.covar_variance_standardize, table)
        cov_values, cov_names = cov.values, cov.names
    skipped: dict[str, str] = {}
    usable_cov = ~np.isnan(cov_values).any(axis=1)
    if sample_mask is not None:
        usable_cov &= sample_mask
    keep_columns = []
    for j, name in enumerate(phen.names):
        values = phen.values[usable_cov, j]
        values = values[~np.isnan(values)]
        if values.size == 0:
            skipped[name] = "no sample has this phenotype and all covariates"
        elif np.ptp(values) == 0:
            skipped[name] = f"constant phenotype (all {values.size} values equal {values[0]:g})"
        else:
            keep_columns.append(j)
    for name, reason in skipped.items():
        warnings.warn(f"phenotype {name!r} skipped: {reason}", stacklevel=2)
    if not keep_columns:
        raise GwasInputError(f"no phenotype can be analysed: {skipped}")
    groups, bases, residuals = _residualized_groups(
        phen.values, keep_columns, cov_values, cov_names, sample_mask
    )
    explained = [
        int(np.asarray(keep_columns)[g.phenotypes][c])
        for g, y_raw, y in zip(
            groups, _raw_group_values(phen.values, keep_columns, groups), residuals, strict=True
        )
        for c in np.flatnonzero(_sum_sq(y) <= _EXPLAINED_TOL * _sum_sq(y_raw - y_raw.mean(axis=0)))
    ]
    if explained:
        for j in explained:
            skipped[phen.names[j]] = "explained exactly by the covariates (residual variance ~ 0)"
            warnings.warn(f"phenotype {phen.names[j]!r} skipped: {skipped[phen.names[j]]}", stacklevel=2)
        keep_columns = [j for j in keep_columns if j not in explained]
        if not keep_columns:
            raise GwasInputError(f"no phenotype can be analysed: {skipped}")
        groups, bases, residuals = _residualized_groups(
            phen.values, keep_columns, cov_values, cov_names, sample_mask
        )
    names = [phen.names[j] for j in keep_columns]
    designs = [
        GroupDesign.build(fileset.n_samples, g.samples, q, y)
        for g, q, y in zip(groups, bases, residuals, strict=True)
    ]
    n_used = int(np.unique(np.concatenate([g.samples for g in groups])).size)
    if variants is None:
        variants = np.arange(fileset.n_variants)
    return PreparedGwas(
        fileset, names, groups, bases, residuals, np.asarray(variants), designs, n_used, skipped
    )


class _Assembler:
    """Appends finished chunks, in order, to the final parquet file and the LOG10_P map on one background
    thread (parquet encoding releases the GIL, so it overlaps the chunk computations). At most two wait."""

    def __init__(self, target: Path, prepared: PreparedGwas, log10_p: np.ndarray, chunks: list[np.ndarray]):
        self._writer = pq.ParquetWriter(target, WRITE_SCHEMA, **PARQUET_OPTIONS)
        self._prepared, self._log10_p, self._chunks = prepared, log10_p, chunks
        self._starts = np.concatenate([[0], np.cumsum([c.size for c in chunks])])
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gwas-writer")
        self._pending: deque[Future] = deque()

    def add(self, index: int, stats: ChunkStats | Path) -> None:
        """Queue chunk ``index``: its statistics, or the journal file to read them from."""
        while len(self._pending) >= 2:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, index, stats))

    def _write(self, index: int, stats: ChunkStats | Path) -> None:
        if not isinstance(stats, ChunkStats):
            stats = ChunkStats.load(stats)
        table = chunk_table(self._prepared, self._chunks[index], stats)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))  # one row group per chunk
        self._log10_p[:, self._starts[index] : self._starts[index + 1]] = stats.log10_p

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def _journal_chunk(
    prepared: PreparedGwas,
    index: np.ndarray,
    path: Path,
    mode: str,
    device: str | None,
    buffers: SimpleQueue | None = None,
) -> ChunkStats:
    """Compute one chunk and journal it; idempotent, so a retried or repeated chunk is harmless.

    ``buffers`` lends a decode buffer per call (one per worker thread); without it one is allocated.
    """
    buffer = buffers.get() if buffers is not None else None
    try:
        stats = compute_chunk(prepared, index, mode, prepared.products_on(device), buffer)
    finally:
        if buffers is not None:
            buffers.put(buffer)
    stats.save(path)
    return stats


def _journal_size(
    prepared: PreparedGwas, index: np.ndarray, path: Path, mode: str, device: str | None
) -> int:
    """Dask task: journal one chunk on a worker; return its variant count (the stats stay on disk)."""
    _journal_chunk(prepared, index, path, mode, device)
    return int(index.size)


def _run_distributed(
    prepared: PreparedGwas,
    chunks: list[np.ndarray],
    todo: list[int],
    paths: list[Path],
    options: GwasConfig,
    device: str | None,
    bar: tqdm,
) -> None:
    """Run the chunks on a Dask distributed cluster; workers must see the same files (shared filesystem)."""
    from distributed import Client, as_completed

    with Client(options.scheduler) as client:
        shared = client.scatter(prepared, broadcast=True)
        futures = [
            client.submit(
                _journal_size,
                shared,
                chunks[i],
                paths[i],
                options.missing_genotype,
                device,
                key=f"gwas-chunk-{i}",
            )
            for i in todo
        ]
        for future in as_completed(futures):
            bar.update(future.result())


def _run_local(
    prepared: PreparedGwas,
    chunks: list[np.ndarray],
    todo: set[int],
    paths: list[Path],
    options: GwasConfig,
    device: str | None,
    assembler: _Assembler,
    bar: tqdm,
) -> None:
    """Compute chunks on ``workers`` threads, each with single-threaded BLAS, and assemble them in order.

    Whole chunks in parallel beat one chunk on multi-threaded BLAS: decoding, the missing-call corrections,
    p-values and row layout are single-threaded numpy, and idle BLAS threads spin between products.
    """
    workers = _affordable_workers(prepared, options, device)
    padded = padded_samples(prepared.fileset.n_samples)
    n_pheno = len(prepared.phenotype_names)
    block = 0 if device else decode_block_size(prepared.fileset.n_samples, options.chunk_size, n_pheno)
    buffers: SimpleQueue = SimpleQueue()
    for _ in range(workers):
        buffers.put(np.empty((block, padded)) if block else None)
    mode = options.missing_genotype
    upcoming = iter(range(len(chunks)))
    in_flight: deque[tuple[int, Future | None]] = deque()  # in variant order; None = already journalled

    def submit_while_idle() -> None:
        # a job starts only when a worker is free (none waits in the pool's queue, so after a failure no
        # further chunk starts), and at most 2 × workers results wait for the writer
        while True:
            jobs = [job for _, job in in_flight if job is not None]
            if sum(not job.done() for job in jobs) >= workers or len(jobs) >= 2 * workers:
                return
            i = next(upcoming, None)
            if i is None:
                return
            if i in todo:
                job = pool.submit(_journal_chunk, prepared, chunks[i], paths[i], mode, device, buffers)
                in_flight.append((i, job))
            else:
                in_flight.append((i, None))

    with threadpool_limits(1), ThreadPoolExecutor(workers, thread_name_prefix="gwas-chunk") as pool:
        submit_while_idle()
        while in_flight:
            i, job = in_flight[0]
            if job is not None and not job.done():
                running = [j for _, j in in_flight if j is not None and not j.done()]
                wait(running, return_when=FIRST_COMPLETED)
                if not job.done():  # a later chunk finished first: keep its worker busy
                    submit_while_idle()
                continue
            in_flight.popleft()
            assembler.add(i, paths[i] if job is None else job.result())  # a failed chunk raises here
            bar.update(0 if job is None else chunks[i].size)
            submit_while_idle()


def _affordable_workers(prepared: PreparedGwas, options: GwasConfig, device: str | None) -> int:
    """``--threads`` workers, fewer (with a warning) where their buffers would not fit in half of the
    memory they use: host memory for CPU decoding, the GPU's free memory for device decoding."""
    n_pheno, padded = len(prepared.phenotype_names), padded_samples(prepared.fileset.n_samples)
    statistics = 8 * 16 * options.chunk_size * n_pheno  # ~16 (m, P) float64 arrays per chunk
    n_cpu = n_pheno if device is None else None
    decoded = 8 * decode_block_size(prepared.fileset.n_samples, options.chunk_size, n_cpu) * padded
    if device is None:
        per_worker, memory, where = decoded + statistics, memory_limit_bytes(), "this machine's memory"
    else:  # on the device: the decoded block, its square and the index codes; statistics on the host
        per_worker, where = 3 * decoded, f"the free memory of {device}"
        memory = _device_free_bytes(device)
    workers = worker_count(options.threads)
    fit = max(1, int(0.5 * memory // per_worker))
    if workers > fit:
        warnings.warn(
            f"{workers} chunk workers would need {workers * per_worker / 2**30:.1f} GiB of buffers; running "
            f"{fit} so they fit in half of {where} (a smaller --chunk-size lets more of them work; results "
            "do not depend on either)",
            stacklevel=3,
        )
    return min(workers, fit)


def _device_free_bytes(device: str) -> int:
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    return memory_limit_bytes()  # torch on the CPU (tests)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contig")
    except PackageNotFoundError:
        return "unknown"


def memory_limit_bytes() -> int:
    """Physical memory, or the cgroup (container) limit where one is set and lower."""
    limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def worker_count(threads: int | None) -> int:
    """Chunk worker threads for ``--threads`` (default: the CPUs this process may use)."""
    if threads:
        return max(1, int(threads))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fingerprint(
    fileset: PlinkFileset, prepared: PreparedGwas, options: GwasConfig, device: str | None
) -> str:
    """What a journal entry depends on: inputs, options, the product device (devices round differently in
    the last bit) and the contig version (the algorithms may change between versions)."""
    digest = hashlib.sha256()
    digest.update(f"contig {_version()}; products on {device or 'numpy cpu'}".encode())
    for path in (fileset.bed_path, fileset.bim_path, fileset.fam_path):
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    # how the reader reads the same files: BGEN's allele order (--bgen-ref) flips every dosage
    digest.update(f"{type(fileset).__name__} ref={getattr(fileset, 'ref', '')}".encode())
    relevant = {
        k: v
        for k, v in asdict(options).items()
        if k not in ("resume", "progress", "threads", "device", "scheduler")
    }
    digest.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    digest.update(b"journal: npy ChunkStats v2 (fields per group, no T_STAT)")  # no other layout is reused
    # statistics round differently in the last bit with the decode block (BLAS) and the statistics call
    n_pheno = len(prepared.phenotype_names)
    blocks = decode_block_size(fileset.n_samples, options.chunk_size, None if device else n_pheno)
    digest.update(
        f"blocks of {blocks} variants; statistics per chunk up to P={CACHE_BLOCKS_MAX_PHENOTYPES}".encode()
    )
    digest.update(prepared.variants.tobytes())
    for q, y in zip(prepared.bases, prepared.residuals, strict=True):
        digest.update(np.ascontiguousarray(q).tobytes())
        digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


@dataclass
class GwasRun:
    """Where a finished run's outputs are and what it did."""

    out: Path
    sumstats: Path
    phenotype_names: list[str]
    variants: np.ndarray
    log10_p: np.ndarray  # (P, M) float64 memory map of LOG10_P
    skipped: dict[str, str]
    seconds: float


def run_chunks(prepared: PreparedGwas, out: str | os.PathLike, options: GwasConfig) -> GwasRun:
    """Stream variant chunks through the kernel, journal each in ``OUT/chunks/``, then write
    ``OUT/sumstats.parquet`` (one row group per chunk) and the LOG10_P map."""
    start = time.perf_counter()
    out = Path(out)
    chunk_dir = out / "chunks"
    device = product_device(options.device)
    fingerprint = _fingerprint(prepared.fileset, prepared, options, device)
    manifest = chunk_dir / "manifest.json"
    if chunk_dir.exists():
        previous = json.loads(manifest.read_text()).get("fingerprint") if manifest.exists() else None
        if options.resume and previous is not None and previous != fingerprint:
            raise GwasInputError(
                f"{chunk_dir}: journalled by a run with other inputs or options; --resume continues only the "
                "same command (run without --resume to start over)"
            )
        if not options.resume or previous != fingerprint:
            shutil.rmtree(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    for partial in [*chunk_dir.glob(".*.tmp"), *out.glob(".sumstats.parquet.*.tmp")]:
        partial.unlink()  # left by a killed run: never renamed, so never trusted
    atomic_write_text(manifest, json.dumps({"fingerprint": fingerprint}))
    variants = prepared.variants
    chunks = [variants[s : s + options.chunk_size] for s in range(0, variants.size, options.chunk_size)]
    paths = [chunk_dir / f"chunk_{i:07d}.npy" for i in range(len(chunks))]
    todo = [i for i, path in enumerate(paths) if not path.exists()]
    bar = tqdm(
        total=variants.size,
        unit="variant",
        unit_scale=True,
        disable=not options.progress,
        desc="gwas",
        initial=int(variants.size - sum(chunks[i].size for i in todo)),
    )
    sumstats = out / "sumstats.parquet"
    log10_p = np.lib.format.open_memmap(
        chunk_dir / "log10p.npy",
        mode="w+",
        dtype=np.float64,
        shape=(len(prepared.phenotype_names), variants.size),
    )
    with atomic_path(sumstats) as tmp:
        assembler = _Assembler(tmp, prepared, log10_p, chunks)
        try:
            if options.scheduler:
                _run_distributed(prepared, chunks, todo, paths, options, device, bar)
                for i, path in enumerate(paths):
                    assembler.add(i, path)
            else:
                _run_local(prepared, chunks, set(todo), paths, options, device, assembler, bar)
        finally:
            assembler.close()
    bar.close()
    seconds = time.perf_counter() - start
    return GwasRun(out, sumstats, prepared.phenotype_names, variants, log10_p, prepared.skipped, seconds)
