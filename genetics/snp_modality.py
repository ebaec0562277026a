"""The SNP modality: selected hard-call genotypes stored compactly on disk, decoded on demand.

A built matrix is a directory holding

- ``genotypes.npy``: (n, m) int8 samples × variants dosage of ALT (A1), 0/1/2, ``-1`` = missing,
  memory-mapped and never loaded whole;
- ``stats.npz``: the training-set statistics (fill value, mean, std per variant; plain numpy, no pickle);
- ``samples.tsv``: FID and IID of each row, written last: its presence marks a complete build.

Statistics come from the training samples only and are applied to everybody, so a later cohort is
embedded with the training statistics (pass ``stats=SnpStats.load(...)`` to :meth:`SnpMatrix.build`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.atomic import atomic_path
from genetics.errors import GeneticsError, PlinkFormatError, SampleMismatchError
from genetics.plink import PlinkFileset

FILL_RULES = ("mean", "mode")
MISSING_CODE = -1
GENOTYPES_FILE = "genotypes.npy"
STATS_FILE = "stats.npz"
SAMPLES_FILE = "samples.tsv"
_STATS_VERSION = 1


@dataclass(frozen=True, eq=False)
class SnpStats:
    """Per-variant statistics fitted on training samples; every array is (m,).

    Attributes:
        variant_id, alt, ref: .bim ID and alleles (dosage counts ``alt``).
        fill: value a missing call becomes (training mean or mode of the observed calls).
        mean, std: mean and population std (ddof=0) of the observed training calls; std is 1 where the
            training calls are monomorphic, so such a variant standardises to a constant.
        n_obs: observed (non-missing) training calls.
        fill_rule: "mean" or "mode" (ties go to the smaller dosage).
        standardize: whether decoded rows are ``(x - mean) / std``.
        n_train: number of training samples.
    """

    variant_id: np.ndarray
    alt: np.ndarray
    ref: np.ndarray
    fill: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_obs: np.ndarray
    fill_rule: str
    standardize: bool
    n_train: int

    @property
    def n_variants(self) -> int:
        return int(self.variant_id.size)

    @classmethod
    def from_counts(
        cls,
        counts: np.ndarray,
        bim: pd.DataFrame,
        fill_rule: str,
        standardize: bool,
        n_train: int,
    ) -> SnpStats:
        """Statistics from (3, m) counts of dosage 0/1/2 among training calls; ``bim``: the m variants."""
        counts = counts.astype(np.float64)
        n_obs = counts.sum(axis=0)
        empty = np.flatnonzero(n_obs == 0)
        if empty.size:
            raise GeneticsError(
                f"variant {bim['ID'].iloc[empty[0]]!r} has no called genotype among the {n_train} training "
                f"samples ({empty.size} such variant(s)); drop them with a call-rate QC filter first"
            )
        mean = (counts[1] + 2.0 * counts[2]) / n_obs
        var = np.maximum((counts[1] + 4.0 * counts[2]) / n_obs - mean**2, 0.0)
        std = np.sqrt(var)
        std[std < 1e-8] = 1.0
        fill = mean if fill_rule == "mean" else np.argmax(counts, axis=0).astype(np.float64)
        return cls(
            variant_id=bim["ID"].to_numpy(dtype=str),
            alt=bim["ALT"].to_numpy(dtype=str),
            ref=bim["REF"].to_numpy(dtype=str),
            fill=fill.astype(np.float32),
            mean=mean.astype(np.float32),
            std=std.astype(np.float32),
            n_obs=n_obs.astype(np.int64),
            fill_rule=fill_rule,
            standardize=bool(standardize),
            n_train=int(n_train),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics atomically as an ``.npz`` of plain arrays (loadable without pickle)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                version=np.int64(_STATS_VERSION),
                variant_id=self.variant_id,
                alt=self.alt,
                ref=self.ref,
                fill=self.fill,
                mean=self.mean,
                std=self.std,
                n_obs=self.n_obs,
                fill_rule=np.str_(self.fill_rule),
                standardize=np.bool_(self.standardize),
                n_train=np.int64(self.n_train),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> SnpStats:
        """Read statistics written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise GeneticsError(
                f"{path}: SNP statistics file not found; build the SNP matrix on training data first"
            )
        with np.load(path, allow_pickle=False) as data:
            if int(data["version"]) != _STATS_VERSION:
                raise GeneticsError(
                    f"{path}: statistics format version {int(data['version'])} is not supported"
                )
            return cls(
                variant_id=data["variant_id"],
                alt=data["alt"],
                ref=data["ref"],
                fill=data["fill"],
                mean=data["mean"],
                std=data["std"],
                n_obs=data["n_obs"],
                fill_rule=str(data["fill_rule"]),
                standardize=bool(data["standardize"]),
                n_train=int(data["n_train"]),
            )


def _unique_indices(values: np.ndarray | Sequence[int], upper: int, what: str) -> np.ndarray:
    index = np.asarray(values, dtype=np.int64).reshape(-1)
    if index.size == 0:
        raise GeneticsError(f"no {what} selected; pass at least one index")
    if index.min() < 0 or index.max() >= upper:
        raise GeneticsError(
            f"{what} index out of range [0, {upper}): {index[(index < 0) | (index >= upper)][0]}"
        )
    if np.unique(index).size != index.size:
        raise GeneticsError(f"{what} indices contain duplicates; each may appear once")
    return index


def _variants_by_id(fileset: PlinkFileset, ids: Sequence[str]) -> np.ndarray:
    """.bim rows of ``ids`` in the order given; unknown or ambiguous IDs raise."""
    bim_ids = fileset.bim["ID"].astype(str)
    wanted = pd.Index([str(i) for i in ids])
    if wanted.has_duplicates:
        raise GeneticsError(f"variant ID list names {wanted[wanted.duplicated()][0]!r} more than once")
    ambiguous = bim_ids[bim_ids.duplicated(keep=False) & bim_ids.isin(wanted)]
    if len(ambiguous):
        raise PlinkFormatError(
            f"{fileset.bim_path}: variant ID {ambiguous.iloc[0]!r} appears on several lines; make IDs unique "
            "(plink2 --set-all-var-ids) before selecting by ID"
        )
    position = pd.Index(bim_ids[~bim_ids.duplicated(keep=False)])
    index = position.get_indexer(wanted)
    missing = wanted[index < 0]
    if len(missing):
        raise GeneticsError(
            f"{len(missing)} requested variant ID(s) are not in {fileset.bim_path} "
            f"(first: {list(missing[:3])})"
        )
    return np.flatnonzero(~bim_ids.duplicated(keep=False).to_numpy())[index]


def _select_variants(
    fileset: PlinkFileset, variants: np.ndarray | None, variant_ids: Sequence[str] | None
) -> np.ndarray:
    """Indices given, IDs given, or both (intersection, in the order of ``variants``)."""
    if variants is None and variant_ids is None:
        return np.arange(fileset.n_variants, dtype=np.int64)
    if variant_ids is None:
        return _unique_indices(variants, fileset.n_variants, "variant")
    by_id = _variants_by_id(fileset, variant_ids)
    if variants is None:
        return by_id
    index = _unique_indices(variants, fileset.n_variants, "variant")
    index = index[np.isin(index, by_id)]
    if index.size == 0:
        raise GeneticsError("the variant indices and the variant ID list have no variant in common")
    return index


def _check_alleles(fileset: PlinkFileset, index: np.ndarray, stats: SnpStats) -> None:
    bim = fileset.bim.iloc[index]
    bad = np.flatnonzero(
        (bim["ALT"].to_numpy(dtype=str) != stats.alt) | (bim["REF"].to_numpy(dtype=str) != stats.ref)
    )
    if bad.size:
        i = bad[0]
        raise GeneticsError(
            f"{fileset.bim_path}: variant {str(stats.variant_id[i])!r} has ALT/REF "
            f"{bim['ALT'].iloc[i]}/{bim['REF'].iloc[i]} "
            f"but the training statistics counted {stats.alt[i]}/{stats.ref[i]} ({bad.size} mismatch(es)); "
            "harmonise alleles (plink2 --ref-allele) before embedding"
        )


class SnpMatrix:
    """An opened SNP matrix directory: (n, m) int8 genotypes on disk plus training statistics.

    ``rows(idx)`` decodes only the requested rows into (b, m) float32 (filled, optionally standardised).
    Pickling keeps the path only, so DataLoader workers reopen the memory map instead of copying it.

    >>> import numpy as np, tempfile, pathlib
    >>> from genetics.plink import write_plink
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_plink(d / "toy", np.array([[0, 2], [np.nan, 1], [2, 1]], dtype=np.float32))
    >>> snp = SnpMatrix.build(PlinkFileset(d / "toy"), d / "snp", train_samples=[0, 1, 2])
    >>> snp.codes.dtype, snp.rows([1]).tolist()  # missing call → training mean (0 + 2) / 2
    (dtype('int8'), [[1.0, 1.0]])
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        samples_path = self.directory / SAMPLES_FILE
        if not samples_path.is_file():
            raise GeneticsError(
                f"{self.directory}: not a complete SNP matrix ({SAMPLES_FILE} missing); "
                "rebuild it with SnpMatrix.build"
            )
        self.stats = SnpStats.load(self.directory / STATS_FILE)
        samples = pd.read_csv(samples_path, sep="\t", dtype=str, keep_default_na=False)
        self.fid = samples["FID"].to_numpy(dtype=str)
        self.iid = samples["IID"].to_numpy(dtype=str)
        self._codes: np.ndarray | None = None
        codes = self.codes
        if codes.dtype != np.int8 or codes.shape != (self.iid.size, self.stats.n_variants):
            raise GeneticsError(
                f"{self.directory / GENOTYPES_FILE}: {codes.dtype} {codes.shape} does not match "
                f"{self.iid.size} samples × {self.stats.n_variants} variants; rebuild the SNP matrix"
            )
        self._iid_index: pd.Index | None = None

    @property
    def codes(self) -> np.ndarray:
        """(n, m) int8 memory map, -1 = missing."""
        if self._codes is None:
            self._codes = np.load(self.directory / GENOTYPES_FILE, mmap_mode="r")
        return self._codes

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_codes": None}

    def __len__(self) -> int:
        return int(self.iid.size)

    @property
    def num_features(self) -> int:
        """m, the width of a decoded row."""
        return self.stats.n_variants

    @property
    def variant_ids(self) -> np.ndarray:
        return self.stats.variant_id

    def index_of(self, iids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(b,) int64 row of each IID, -1 where the matrix does not hold that person."""
        if self._iid_index is None:
            index = pd.Index(self.iid)
            if index.has_duplicates:
                raise SampleMismatchError(
                    f"{self.directory / SAMPLES_FILE}: IID {index[index.duplicated()][0]!r} appears in "
                    "several families; IID lookup needs unique IIDs"
                )
            self._iid_index = index
        return self._iid_index.get_indexer(pd.Index(np.asarray(iids, dtype=str))).astype(np.int64)

    def rows(self, person_indices: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        """Decode rows ``person_indices`` (positions in this matrix) into (b, m) float32, no NaN."""
        if isinstance(person_indices, slice):
            person_indices = np.arange(len(self))[person_indices]
        index = np.asarray(person_indices, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range [0, {len(self)}) in {self.directory}")
        codes = self.codes[index]  # fancy indexing reads b rows only: (b, m) int8
        x = codes.astype(np.float32)
        np.copyto(x, np.broadcast_to(self.stats.fill, x.shape), where=codes < 0)
        if self.stats.standardize:
            x -= self.stats.mean
            x /= self.stats.std
        return x

    @classmethod
    def build(
        cls,
        fileset: PlinkFileset,
        out_dir: str | os.PathLike,
        *,
        train_samples: np.ndarray | Sequence[int] | None = None,
        variants: np.ndarray | Sequence[int] | None = None,
        variant_ids: Sequence[str] | None = None,
        samples: np.ndarray | Sequence[int] | None = None,
        stats: SnpStats | None = None,
        fill: str = "mean",
        standardize: bool = False,
        memory_bytes: int = 1 << 30,
    ) -> SnpMatrix:
        """Stream the selected genotypes into ``out_dir`` and fit (or reuse) statistics.

        Args:
            fileset: the genotypes.
            out_dir: directory to write (created; a previous build there is replaced).
            train_samples: .fam row indices whose calls define the statistics; a subset of ``samples``.
                Required unless ``stats`` is given.
            variants: .bim row indices (e.g. kept by QC / LD pruning); default all.
            variant_ids: .bim IDs; with ``variants`` too, their intersection in ``variants`` order.
            samples: .fam row indices to store, in row order (default all).
            stats: statistics fitted earlier; selects variants by ``stats.variant_id``; not refitted.
            fill: "mean" or "mode" of the training calls, for missing calls.
            standardize: decode rows as ``(x - mean) / std`` with training mean and std.
            memory_bytes: working-memory budget; bigger means fewer, wider column slabs written to disk.
        """
        if fill not in FILL_RULES:
            raise ValueError(f"unknown fill rule {fill!r}; choose one of {FILL_RULES}")
        sample_index = (
            np.arange(fileset.n_samples, dtype=np.int64)
            if samples is None
            else _unique_indices(samples, fileset.n_samples, "sample")
        )
        if stats is not None:
            if variants is not None or variant_ids is not None or train_samples is not None:
                raise ValueError(
                    "with stats= the variants and training statistics are fixed; omit variants, "
                    "variant_ids and train_samples"
                )
            variant_index = _variants_by_id(fileset, list(stats.variant_id))
            _check_alleles(fileset, variant_index, stats)
            train_rows = None
        else:
            if train_samples is None:
                raise ValueError("train_samples is required: statistics are fitted on training samples only")
            variant_index = _select_variants(fileset, variants, variant_ids)
            train = _unique_indices(train_samples, fileset.n_samples, "training sample")
            train_rows = pd.Index(sample_index).get_indexer(train)
            if (train_rows < 0).any():
                raise SampleMismatchError(
                    f"training sample {fileset.fam['IID'].iloc[train[train_rows < 0][0]]!r} is not among the "
                    "stored samples; train_samples must be a subset of samples"
                )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / SAMPLES_FILE).unlink(missing_ok=True)  # the completion marker goes first, comes back last
        counts = _write_genotypes(
            fileset, out_dir / GENOTYPES_FILE, variant_index, sample_index, train_rows, memory_bytes
        )
        if stats is None:
            bim = fileset.bim.iloc[variant_index]
            stats = SnpStats.from_counts(counts, bim, fill, standardize, len(train_rows))
        stats.save(out_dir / STATS_FILE)
        fam = fileset.fam.iloc[sample_index]
        with atomic_path(out_dir / SAMPLES_FILE) as tmp:
            fam[["FID", "IID"]].to_csv(tmp, sep="\t", index=False)
        return cls(out_dir)


def _write_genotypes(
    fileset: PlinkFileset,
    path: Path,
    variant_index: np.ndarray,
    sample_index: np.ndarray,
    train_rows: np.ndarray | None,
    memory_bytes: int,
) -> np.ndarray:
    """Write (n, m) int8 codes to ``path`` atomically, slab by slab; return (3, m) training 0/1/2 counts."""
    n, m = sample_index.size, variant_index.size
    slab = int(np.clip(memory_bytes // (2 * n), 1, m))  # int8 (n, slab) buffer
    read = int(np.clip(memory_bytes // (16 * fileset.n_samples), 1, slab))  # float32 decode of all samples
    counts = np.zeros((3, m), dtype=np.int64)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int8, shape=(n, m))
        for start in range(0, m, slab):
            stop = min(start + slab, m)
            buffer = np.empty((n, stop - start), dtype=np.int8)
            for sub in range(start, stop, read):
                block = fileset.read(variant_index[sub : min(sub + read, stop)], sample_index)  # (n, k)
                codes = np.where(np.isnan(block), MISSING_CODE, block).astype(np.int8)
                buffer[:, sub - start : sub - start + codes.shape[1]] = codes
                if train_rows is not None:
                    train = codes[train_rows]
                    for dosage in range(3):
                        counts[dosage, sub : sub + codes.shape[1]] = (train == dosage).sum(axis=0)
            out[:, start:stop] = buffer
        out.flush()
        del out
    return counts
