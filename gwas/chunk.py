"""One variant chunk of a GWAS: compute its statistics, journal them for ``--resume``, lay them out as rows.

The journal is raw arrays (``chunk_NNNNNNN.npy``: the fields' .npy records one after another), not parquet:
writing it is a memory copy,
so the final ``sumstats.parquet`` is the only place the rows are encoded. The row layout is built from a
:class:`ChunkStats` in one function whether the stats were just computed or read back from the journal,
so a resumed run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from genetics.atomic import atomic_path
from genetics.bed_decode import bytes_per_variant, missing_coordinates
from gwas.kernel import ERRCODES, ChunkResult, associate_products, block_products
from gwas.sumstats import SUMSTATS_SCHEMA

if TYPE_CHECKING:
    from gwas.device import DeviceProducts
    from gwas.runner import PreparedGwas

# String columns are handed to the parquet writer as dictionary arrays (indices into the chunk's m
# variants or P phenotypes), which it stores as parquet dictionaries without hashing every row again.
STRING_COLUMNS = [f.name for f in SUMSTATS_SCHEMA if pa.types.is_string(f.type)]
WRITE_SCHEMA = pa.schema(
    [
        f.with_type(pa.dictionary(pa.int8() if f.name == "ERRCODE" else pa.int32(), pa.string()))
        if f.name in STRING_COLUMNS
        else f
        for f in SUMSTATS_SCHEMA
    ]
)
FLOAT_COLUMNS = ("A1_FREQ", "BETA", "SE", "T_STAT", "P", "LOG10_P")
PHENOTYPE_FIELDS = ("beta", "se", "p", "log10_p")  # what the kernel gives per phenotype, T_STAT aside


@dataclass
class ChunkStats:
    """Statistics of every phenotype at the m variants of one chunk.

    Per phenotype, (P, m): ``beta``, ``se``, ``p``, ``log10_p``; T_STAT is ``beta / se``, the division the
    kernel makes (:attr:`t_stat`). Per phenotype group (phenotypes missing in the same samples), (G, m):
    ``a1_freq``, ``obs_ct`` (int64) and ``errcode`` (int8 index into ERRCODES); ``group`` (P,) is the row of
    each phenotype there. Nothing is stored twice, so the journal is a third smaller than one row per value.
    """

    group: np.ndarray  # (P,) int64
    a1_freq: np.ndarray
    obs_ct: np.ndarray
    errcode: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    p: np.ndarray
    log10_p: np.ndarray

    @property
    def t_stat(self) -> np.ndarray:
        """(P, m) T_STAT, bit-equal to the kernel's (which divides the same two numbers)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.beta / self.se

    def per_phenotype(self, name: str) -> np.ndarray:
        """(P, m) rows of a per-group field (``a1_freq``, ``obs_ct``, ``errcode``)."""
        return getattr(self, name)[self.group]

    def save(self, path: Path) -> None:
        """Write the journal file atomically (a killed run leaves only a temporary name behind).

        Plain .npy records in field order (no zip container: its CRC pass cost as much as the write).
        """
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            for f in fields(self):
                np.save(handle, getattr(self, f.name), allow_pickle=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ChunkStats:
        with open(path, "rb") as handle:
            return cls(**{f.name: np.load(handle, allow_pickle=False) for f in fields(cls)})


# A worker decodes a chunk in blocks of at most this many bytes of float64 dosages, so memory per worker
# stays bounded at biobank sample sizes whatever the chunk (row group) size.
DECODE_BUDGET_BYTES = 512 * 2**20
# With few phenotypes the block product is bound by memory traffic, not arithmetic: CPU blocks are then
# cut smaller still, to this many bytes (at least 64 variants), so that a block is decoded, multiplied and
# squared while it stays in the last-level cache instead of making three round trips to memory, and the
# statistics run once per chunk. Measured under load (N=10k, 32 MiB L3, one thread, chunks of both
# layouts interleaved in one process): P=16 chunks 7-13% faster than whole-chunk blocks.
DECODE_CACHE_BYTES = 8 * 2**20
CACHE_BLOCKS_MAX_PHENOTYPES = 64
# With more phenotypes a block (decode, product, statistics) holds about this many (variant, phenotype)
# values: the statistics' (variants, P) temporaries stay small, while BLAS still amortises packing the
# N × (P + k + 1) right-hand side over hundreds of rows. Measured as above at P=256: blocks of 512-1024
# variants 12-28% faster than 2048 (three runs).
STATISTICS_VALUES = 2**18


def padded_samples(n_samples: int) -> int:
    """Samples a decoded .bed row holds, the last byte's padding included (4 per byte)."""
    return 4 * bytes_per_variant(n_samples)


def decode_block_size(n_samples: int, chunk_size: int, n_pheno: int | None = None) -> int:
    """Variants decoded at once: the whole chunk, or a multiple of 8 fewer when N × chunk × 8 bytes exceeds
    the budget, or, for CPU products (``n_pheno`` given), the cache budget (at most
    :data:`CACHE_BLOCKS_MAX_PHENOTYPES` phenotypes) or about :data:`STATISTICS_VALUES` values (more). Never decreases as the chunk grows, so a buffer sized for a run's chunks fits
    its last one.

    Depends on N, P and the chunk size only (not on the machine), so a run's outputs are reproducible. BLAS
    may round a product row differently with the row count of its block (OpenBLAS does for odd counts),
    so statistics can differ in the last bit between block sizes, never between runs.
    """
    per_variant = 8 * padded_samples(n_samples)
    cap = max(8, DECODE_BUDGET_BYTES // per_variant // 8 * 8)
    if n_pheno is not None and n_pheno <= CACHE_BLOCKS_MAX_PHENOTYPES:
        cap = min(cap, max(64, DECODE_CACHE_BYTES // per_variant // 8 * 8))
    elif n_pheno is not None:
        cap = min(cap, max(64, STATISTICS_VALUES // n_pheno // 8 * 8))
    return min(chunk_size, cap)  # never more than a run's buffer holds, also for its shorter last chunk


def _block_results(
    prepared: PreparedGwas,
    variants: np.ndarray,
    mode: str,
    device: DeviceProducts | None,
    buffer: np.ndarray | None,
    block_size: int,
) -> list[ChunkResult]:
    """Statistics of ``variants`` for every phenotype group: products on ``device`` from raw bytes, or on the
    CPU from blocks of ``block_size`` decoded variants whose products are then joined."""
    if device is not None and hasattr(prepared.fileset, "read_raw"):  # dosage files decode on the CPU
        raw = prepared.fileset.read_raw(variants)
        missing = missing_coordinates(raw, prepared.fileset.n_samples)
        products = device.products(raw, prepared.fileset.n_samples)
        return [
            associate_products(product, sumsq, *missing, design, mode)
            for (product, sumsq), design in zip(products, prepared.designs, strict=True)
        ]
    parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in prepared.designs]
    samples, positions = [], []
    for start in range(0, variants.size, block_size):
        g0, missing_samples, missing_variants = prepared.fileset.read_zero_missing(
            variants[start : start + block_size], buffer
        )
        for design, part in zip(prepared.designs, parts, strict=True):
            part.append(block_products(g0, design))
        samples.append(missing_samples)
        positions.append(missing_variants + start)  # variant order is kept: entries stay sorted by variant
    missing = np.concatenate(samples), np.concatenate(positions)
    return [
        associate_products(
            np.concatenate([p for p, _ in part]), np.concatenate([s for _, s in part]), *missing, design, mode
        )
        for design, part in zip(prepared.designs, parts, strict=True)
    ]


def compute_chunk(
    prepared: PreparedGwas,
    variant_index: np.ndarray,
    mode: str,
    device: DeviceProducts | None = None,
    buffer: np.ndarray | None = None,
    block_size: int | None = None,
) -> ChunkStats:
    """Decode the chunk's variants block by block and run every phenotype group through the kernel.

    Args:
        variant_index: (m,) .bim rows of the chunk.
        device: products on a torch device (:class:`gwas.device.DeviceProducts`); None = numpy on the CPU.
        buffer: optional reusable CPU decode buffer of (block_size, padded samples) float64.
        block_size: variants decoded at once (default: :func:`decode_block_size`); with few phenotypes on
            the CPU their products are joined and the statistics computed once for the chunk.
    """
    m, n_pheno = variant_index.size, len(prepared.phenotype_names)
    on_device = device is not None and hasattr(prepared.fileset, "read_raw")
    block_size = block_size or decode_block_size(
        prepared.fileset.n_samples, max(m, 1), None if on_device else n_pheno
    )
    few = n_pheno <= CACHE_BLOCKS_MAX_PHENOTYPES
    step = max(m, 1) if few and not on_device else block_size  # few phenotypes: statistics once per chunk
    n_groups = len(prepared.groups)
    out = {name: np.empty((n_pheno, m)) for name in PHENOTYPE_FIELDS}
    a1_freq, obs_ct = np.empty((n_groups, m)), np.empty((n_groups, m), dtype=np.int64)
    errcode = np.empty((n_groups, m), dtype=np.int8)
    group = np.empty(n_pheno, dtype=np.int64)
    for g, phenotype_group in enumerate(prepared.groups):
        group[phenotype_group.phenotypes] = g
    for start in range(0, m, step):
        columns = slice(start, start + step)
        results = _block_results(prepared, variant_index[columns], mode, device, buffer, block_size)
        for g, (phenotype_group, result) in enumerate(zip(prepared.groups, results, strict=True)):
            rows = phenotype_group.phenotypes
            a1_freq[g, columns] = result.a1_freq
            obs_ct[g, columns] = result.obs_ct
            errcode[g, columns] = pd.Categorical(result.errcode, categories=ERRCODES).codes
            for name in PHENOTYPE_FIELDS:
                out[name][rows, columns] = getattr(result, name).T
    return ChunkStats(group=group, a1_freq=a1_freq, obs_ct=obs_ct, errcode=errcode, **out)


def _rows(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``values`` broadcast to ``shape`` (P, m), as a flat copy: several times faster than np.tile/np.repeat."""
    out = np.empty(shape, dtype=values.dtype)
    out[...] = values
    return out.reshape(-1)


def _dictionary(indices: np.ndarray, values: np.ndarray | list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(values, type=pa.string()))


def chunk_table(prepared: PreparedGwas, variant_index: np.ndarray, stats: ChunkStats) -> pa.Table:
    """Rows of one chunk in :data:`SUMSTATS_SCHEMA` order, phenotype-major then variant; string columns are
    dictionary arrays (write with ``store_schema=False`` so readers see plain strings)."""
    n_pheno, m = stats.beta.shape
    bim = prepared.fileset.bim.iloc[variant_index]

    def per_variant(column: str) -> pa.DictionaryArray:
        # distinct dictionary values: the writer's direct dictionary path is not deterministic with duplicates
        codes, values = pd.factorize(bim[column].astype(str).to_numpy())
        return _dictionary(_rows(codes.astype(np.int32), (n_pheno, m)), values)

    alt = per_variant("ALT")

    columns = {
        "phenotype": _dictionary(
            _rows(np.arange(n_pheno, dtype=np.int32)[:, None], (n_pheno, m)), prepared.phenotype_names
        ),
        "CHROM": per_variant("CHROM"),
        "POS": pa.array(_rows(bim["POS"].to_numpy(dtype=np.int64), (n_pheno, m))),
        "ID": per_variant("ID"),
        "REF": per_variant("REF"),
        "ALT": alt,
        "A1": alt,
        "A1_FREQ": pa.array(stats.per_phenotype("a1_freq").ravel()),
        "OBS_CT": pa.array(stats.per_phenotype("obs_ct").ravel()),
        **{name: pa.array(getattr(stats, name.lower()).ravel()) for name in FLOAT_COLUMNS[1:]},
        "ERRCODE": _dictionary(stats.per_phenotype("errcode").ravel(), list(ERRCODES)),
    }
    return pa.table(columns, schema=WRITE_SCHEMA)


# Parquet writer settings for the sumstats file: dictionaries for the strings only (a dictionary attempt on
# random floats is wasted work), min/max statistics only where readers filter (phenotype, position).
PARQUET_OPTIONS = {
    "use_dictionary": STRING_COLUMNS,
    "write_statistics": ["phenotype", "CHROM", "POS"],
    "store_schema": False,
}
