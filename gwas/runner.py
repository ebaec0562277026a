"""The chunked GWAS runner: IDs, phenotype groups, variant chunks, per-chunk files, resume, final outputs.

Memory is O(N × chunk + P × chunk); one float64 LOG10_P per (phenotype, variant) is kept in a
memory-mapped file (on disk, not in memory) for the summary, loci and plots. Each finished chunk is written atomically to
``OUT/chunks/``; ``resume=True`` skips chunks already there when the run's fingerprint matches, so an
interrupted run restarted with the same arguments gives byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from genetics._atomic import atomic_path, atomic_write_text
from genetics.plink import PlinkFileset
from gwas.errors import GwasInputError
from gwas.kernel import ERRCODES, GroupDesign, associate_block, covariate_basis, residualize
from gwas.phenotypes import PhenotypeGroup, group_by_missingness, load_covariates, load_phenotypes
from gwas.sumstats import SUMSTATS_SCHEMA


@dataclass
class GwasOptions:
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


def resolve_device(device: str) -> str | None:
    """Map the ``--device`` choice to the kernel's product device (None = numpy on the CPU)."""
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
    options: GwasOptions | None = None,
    variants: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
) -> PreparedGwas:
    """Align phenotypes/covariates to the .fam, drop unusable phenotypes with a warning, build groups."""
    options = options or GwasOptions()
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


def _chunk_table(
    prepared: PreparedGwas,
    variant_index: np.ndarray,
    block: tuple[np.ndarray, np.ndarray, np.ndarray],
    mode: str,
    device: str | None = None,
) -> pa.Table:
    """Run every phenotype group on one decoded block (dosage with missing = 0, missing coordinates);
    rows ordered phenotype-major, then variant."""
    m = variant_index.size
    n_pheno = len(prepared.phenotype_names)
    stats = {c: np.empty((n_pheno, m)) for c in ("A1_FREQ", "BETA", "SE", "T_STAT", "P", "LOG10_P")}
    obs_ct = np.empty((n_pheno, m), dtype=np.int64)
    errcode = np.empty((n_pheno, m), dtype=np.int32)  # index into ERRCODES
    for group, design in zip(prepared.groups, prepared.designs, strict=True):
        result = associate_block(*block, design, mode, device)
        columns = group.phenotypes
        stats["A1_FREQ"][columns] = result.a1_freq[None, :]
        obs_ct[columns] = result.obs_ct[None, :]
        errcode[columns] = pd.Categorical(result.errcode, categories=ERRCODES).codes[None, :]
        for name, values in (
            ("BETA", result.beta),
            ("SE", result.se),
            ("T_STAT", result.t_stat),
            ("P", result.p),
            ("LOG10_P", result.log10_p),
        ):
            stats[name][columns] = values.T
    bim = prepared.fileset.bim.iloc[variant_index]
    tile = pa.array(np.tile(np.arange(m, dtype=np.int32), n_pheno))

    def repeat(values: pd.Series) -> pa.Array:
        return pa.DictionaryArray.from_arrays(tile, pa.array(values.astype(str).to_numpy())).cast(pa.string())

    phenotype = pa.DictionaryArray.from_arrays(
        pa.array(np.repeat(np.arange(n_pheno, dtype=np.int32), m)), pa.array(prepared.phenotype_names)
    ).cast(pa.string())
    columns = {
        "phenotype": phenotype,
        "CHROM": repeat(bim["CHROM"]),
        "POS": pa.array(np.tile(bim["POS"].to_numpy(dtype=np.int64), n_pheno)),
        "ID": repeat(bim["ID"]),
        "REF": repeat(bim["REF"]),
        "ALT": repeat(bim["ALT"]),
        "A1": repeat(bim["ALT"]),
        "A1_FREQ": pa.array(stats["A1_FREQ"].ravel()),
        "OBS_CT": pa.array(obs_ct.ravel()),
        **{c: pa.array(stats[c].ravel()) for c in ("BETA", "SE", "T_STAT", "P", "LOG10_P")},
        "ERRCODE": pa.DictionaryArray.from_arrays(pa.array(errcode.ravel()), pa.array(ERRCODES)).cast(
            pa.string()
        ),
    }
    return pa.table(columns, schema=SUMSTATS_SCHEMA)


class _Assembler:
    """Writes finished chunks in order on one background thread: the chunk file (the resume journal),
    then its rows appended to the final parquet file and its LOG10_P to the memory map.

    File writing releases the GIL, so it overlaps the next chunk's computation. At most two chunks wait.
    """

    def __init__(self, target: Path, log10_p: np.ndarray, starts: list[int]):
        self._writer = pq.ParquetWriter(target, SUMSTATS_SCHEMA)
        self._log10_p, self._starts = log10_p, starts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gwas-writer")
        self._pending: list[Future] = []
        self._next = 0

    def add(self, path: Path, table: pa.Table | None = None) -> None:
        """Queue chunk ``path``: ``table`` freshly computed, or None to reuse the file already there."""
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        index, self._next = self._next, self._next + 1
        self._pending.append(self._pool.submit(self._write, index, path, table))

    def _write(self, index: int, path: Path, table: pa.Table | None) -> None:
        if table is None:
            table = pq.read_table(path, schema=SUMSTATS_SCHEMA)
        else:
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
        self._writer.write_table(table)
        values = table.column("LOG10_P").to_numpy()
        n_pheno = self._log10_p.shape[0]
        start = self._starts[index]
        self._log10_p[:, start : start + values.size // n_pheno] = values.reshape(n_pheno, -1)

    def close(self) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def _write_chunk(
    prepared: PreparedGwas,
    index: np.ndarray,
    path: Path,
    mode: str,
    device: str | None,
    buffer: np.ndarray | None = None,
) -> int:
    """Compute one chunk and write it atomically; idempotent, so a retried or repeated chunk is harmless."""
    block = prepared.fileset.read_zero_missing(index, buffer)
    with atomic_path(path) as tmp:
        pq.write_table(_chunk_table(prepared, index, block, mode, device), tmp)
    return int(index.size)


def _run_distributed(
    prepared: PreparedGwas,
    chunks: dict[int, np.ndarray],
    paths: list[Path],
    options: GwasOptions,
    device: str | None,
    bar: tqdm,
) -> None:
    """Run the chunks on a Dask distributed cluster; workers must see the same files (shared filesystem)."""
    from distributed import Client, as_completed

    with Client(options.scheduler) as client:
        shared = client.scatter(prepared, broadcast=True)
        futures = [
            client.submit(
                _write_chunk, shared, index, paths[i], options.missing_genotype, device, key=f"gwas-chunk-{i}"
            )
            for i, index in chunks.items()
        ]
        for future in as_completed(futures):
            bar.update(future.result())


def _fingerprint(fileset: PlinkFileset, prepared: PreparedGwas, options: GwasOptions) -> str:
    digest = hashlib.sha256()
    for path in (fileset.bed_path, fileset.bim_path, fileset.fam_path):
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    relevant = {
        k: v
        for k, v in asdict(options).items()
        if k not in ("resume", "progress", "threads", "device", "scheduler")
    }
    digest.update(json.dumps(relevant, sort_keys=True, default=str).encode())
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


def run_chunks(prepared: PreparedGwas, out: str | os.PathLike, options: GwasOptions) -> GwasRun:
    """Stream variant chunks through the kernel, write chunk files, then ``OUT/sumstats.parquet``."""
    start = time.perf_counter()
    out = Path(out)
    chunk_dir = out / "chunks"
    fingerprint = _fingerprint(prepared.fileset, prepared, options)
    manifest = chunk_dir / "manifest.json"
    if chunk_dir.exists():
        previous = json.loads(manifest.read_text()).get("fingerprint") if manifest.exists() else None
        if not options.resume or previous != fingerprint:
            shutil.rmtree(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    for partial in [*chunk_dir.glob(".*.tmp"), *out.glob(".sumstats.parquet.*.tmp")]:
        partial.unlink()  # left by a killed run: never renamed, so never trusted
    atomic_write_text(manifest, json.dumps({"fingerprint": fingerprint}))
    variants = prepared.variants
    starts = range(0, variants.size, options.chunk_size)
    paths = [chunk_dir / f"chunk_{i:07d}.parquet" for i in range(len(starts))]
    todo = [i for i, path in enumerate(paths) if not path.exists()]
    bar = tqdm(
        total=variants.size,
        unit="variant",
        unit_scale=True,
        disable=not options.progress,
        desc="gwas",
        initial=(len(paths) - len(todo)) * options.chunk_size if todo else variants.size,
    )
    chunks = {i: variants[starts[i] : starts[i] + options.chunk_size] for i in todo}
    device = resolve_device(options.device)
    sumstats = out / "sumstats.parquet"
    log10_p = np.lib.format.open_memmap(
        chunk_dir / "log10p.npy",
        mode="w+",
        dtype=np.float64,
        shape=(len(prepared.phenotype_names), variants.size),
    )
    with atomic_path(sumstats) as tmp:
        assembler = _Assembler(tmp, log10_p, list(starts))
        try:
            if options.scheduler:
                _run_distributed(prepared, chunks, paths, options, device, bar)
                for path in paths:
                    assembler.add(path)
            else:
                buffer = np.empty((options.chunk_size, 4 * ((prepared.fileset.n_samples + 3) // 4)))
                with threadpool_limits(options.threads):
                    for i, path in enumerate(paths):
                        if i not in chunks:
                            assembler.add(path)
                            continue
                        block = prepared.fileset.read_zero_missing(chunks[i], buffer)
                        table = _chunk_table(prepared, chunks[i], block, options.missing_genotype, device)
                        assembler.add(path, table)
                        bar.update(chunks[i].size)
        finally:
            assembler.close()
    bar.close()
    log10_p.flush()
    seconds = time.perf_counter() - start
    return GwasRun(out, sumstats, prepared.phenotype_names, variants, log10_p, prepared.skipped, seconds)
