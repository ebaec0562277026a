"""PLINK 1 binary filesets (.bed/.bim/.fam): validated metadata and streamed dosage blocks.

Dosage counts the `.bim` column-5 allele, which plink2 calls ALT and reports as A1 (see ARCHITECTURE.md).
Blocks are samples × variants float32 with NaN for missing calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.atomic import atomic_path
from genetics.bed_decode import (
    BED_MAGIC,
    HEADER_BYTES,
    SNP_MAJOR,
    bytes_per_variant,
    decode_variants,
    decode_variants_zero_missing,
    encode_variants,
)
from genetics.dosage_reader import GenotypeFileset
from genetics.errors import PlinkFormatError


@dataclass(frozen=True)
class _Column:
    name: str
    dtype: str  # "str", "int", "float"


# One table defines each text format's columns and types (schema-driven IO).
BIM_SCHEMA = (
    _Column("CHROM", "str"),
    _Column("ID", "str"),
    _Column("CM", "float"),
    _Column("POS", "int"),
    _Column("ALT", "str"),  # column 5: the counted allele (A1)
    _Column("REF", "str"),  # column 6
)
FAM_SCHEMA = (
    _Column("FID", "str"),
    _Column("IID", "str"),
    _Column("PAT", "str"),
    _Column("MAT", "str"),
    _Column("SEX", "int"),
    _Column("PHENO", "str"),
)

BACKENDS = ("numpy", "pandas-plink")


def _read_whitespace_table(path: Path, schema: tuple[_Column, ...]) -> pd.DataFrame:
    """Read a headerless whitespace-separated file, checking every line has exactly len(schema) fields."""
    n_fields = len(schema)
    try:
        table = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            dtype=str,
            keep_default_na=False,
            engine="c",
            names=list(range(n_fields + 1)),
        )
    except pd.errors.EmptyDataError:
        table = pd.DataFrame(columns=list(range(n_fields + 1)))
    except pd.errors.ParserError as error:
        raise PlinkFormatError(
            f"{path}: cannot parse ({error}); expected {n_fields} fields per line"
        ) from None
    too_many = table[n_fields].notna() & (table[n_fields] != "")
    too_few = table[n_fields - 1].isna() | (table[n_fields - 1] == "")
    bad = np.flatnonzero((too_many | too_few).to_numpy())
    if bad.size:
        line = int(bad[0]) + 1
        raise PlinkFormatError(
            f"{path}: line {line} does not have {n_fields} whitespace-separated fields "
            f"({bad.size} bad line(s) in all); fix or regenerate the file with plink --make-bed"
        )
    table = table.drop(columns=[n_fields])
    table.columns = [c.name for c in schema]
    for column in schema:
        if column.dtype == "str":
            continue
        converted = pd.to_numeric(table[column.name], errors="coerce")
        bad_values = converted.isna() & ~table[column.name].isin(["nan", "NA"])
        if bad_values.any():
            line = int(np.flatnonzero(bad_values.to_numpy())[0]) + 1
            raise PlinkFormatError(
                f"{path}: line {line}, column {column.name} is not a number: "
                f"{table[column.name].iloc[line - 1]!r}"
            )
        table[column.name] = converted.astype("int64" if column.dtype == "int" else "float64")
    return table


def read_bim(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .bim file into columns CHROM ID CM POS ALT REF (ALT = column 5, the counted allele).

    The text columns are Arrow strings (``string[pyarrow]``): ~40 bytes per variant instead of ~255
    with Python string objects, which matters at biobank scale; they behave as ordinary strings.
    """
    table = _read_whitespace_table(Path(path), BIM_SCHEMA)
    for column in ("CHROM", "ID", "ALT", "REF"):
        table[column] = table[column].astype("string[pyarrow]")
    return table


def read_fam(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .fam file into columns FID IID PAT MAT SEX PHENO; IIDs must be unique."""
    path = Path(path)
    fam = _read_whitespace_table(path, FAM_SCHEMA)
    keys = fam["FID"] + "\t" + fam["IID"]
    duplicated = keys[keys.duplicated()]
    if len(duplicated):
        first = duplicated.iloc[0].replace("\t", " ")
        raise PlinkFormatError(
            f"{path}: duplicated sample FID IID {first!r} ({len(duplicated)} duplicate(s)); "
            "every sample must appear once: remove or rename duplicates"
        )
    return fam


class PlinkFileset(GenotypeFileset):
    """A validated PLINK 1 fileset ``PREFIX.bed/.bim/.fam``.

    Attributes:
        bim: variants table, columns CHROM ID CM POS ALT REF.
        fam: samples table, columns FID IID PAT MAT SEX PHENO.

    >>> import numpy as np, pandas as pd, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> g = np.array([[0, 1], [2, np.nan], [1, 0]], dtype=np.float32)  # 3 samples × 2 variants
    >>> write_plink(d / "toy", g)
    >>> PlinkFileset(d / "toy").read().tolist()
    [[0.0, 1.0], [2.0, nan], [1.0, 0.0]]
    """

    def __init__(self, prefix: str | os.PathLike, backend: str = "numpy"):
        prefix = Path(prefix)
        if prefix.suffix in (".bed", ".bim", ".fam"):
            prefix = prefix.with_suffix("")
        self.prefix = prefix
        self.bed_path = Path(f"{prefix}.bed")
        self.bim_path = Path(f"{prefix}.bim")
        self.fam_path = Path(f"{prefix}.fam")
        for path in (self.bed_path, self.bim_path, self.fam_path):
            if not path.is_file():
                raise PlinkFormatError(
                    f"{path}: file not found; --bfile expects PREFIX of PREFIX.bed/.bim/.fam"
                )
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.bim = read_bim(self.bim_path)
        self.fam = read_fam(self.fam_path)
        self._check_bed()
        self._bed: np.memmap | None = None
        self._pandas_plink = None

    def __getstate__(self) -> dict:
        """Pickle without the open memory map (workers of a distributed run reopen the files)."""
        state = dict(self.__dict__)
        state["_bed"] = None
        state["_pandas_plink"] = None
        return state

    def with_hardcalls(self) -> PlinkFileset:
        """The fileset as hard calls, as QC filters count them: a .bed holds nothing else."""
        return self

    def _check_bed(self) -> None:
        with open(self.bed_path, "rb") as handle:
            header = handle.read(HEADER_BYTES)
        if header[:2] != BED_MAGIC:
            raise PlinkFormatError(
                f"{self.bed_path}: not a PLINK 1 .bed file (magic bytes {header[:2].hex()} instead of 6c1b); "
                "convert it with plink2 --make-bed"
            )
        if header[2:3] != SNP_MAJOR:
            raise PlinkFormatError(
                f"{self.bed_path}: sample-major .bed (mode byte {header[2:3].hex()}) is not supported; "
                "rewrite it as variant-major with plink --make-bed"
            )
        expected = HEADER_BYTES + self.n_variants * bytes_per_variant(self.n_samples)
        actual = self.bed_path.stat().st_size
        if actual != expected:
            raise PlinkFormatError(
                f"{self.bed_path}: size {actual} bytes does not match {self.n_variants} variants in "
                f"{self.bim_path.name} × {self.n_samples} samples in {self.fam_path.name} "
                f"(expected {expected}); the three files do not belong together or the .bed is truncated"
            )

    def _memmap(self) -> np.memmap:
        if self._bed is None:
            self._bed = np.memmap(
                self.bed_path,
                dtype=np.uint8,
                mode="r",
                offset=HEADER_BYTES,
                shape=(self.n_variants, bytes_per_variant(self.n_samples)),
            )
        return self._bed

    def _raw_rows(self, variants: np.ndarray) -> np.ndarray:
        """(m, bytes_per_variant) raw .bed rows; one slice read when the indices are consecutive."""
        bed = self._memmap()
        if variants.size and np.all(np.diff(variants) == 1):
            return np.asarray(bed[variants[0] : variants[-1] + 1])
        return bed[variants]

    def _read_pandas_plink(self, variants: np.ndarray, samples: np.ndarray | None) -> np.ndarray:
        if self._pandas_plink is None:
            from pandas_plink import read_plink1_bin

            # pandas-plink calls .bim column 5 "a0"; ref="a0" makes it count that allele.
            self._pandas_plink = read_plink1_bin(
                str(self.bed_path), str(self.bim_path), str(self.fam_path), ref="a0", verbose=False
            )
        block = self._pandas_plink[:, variants]
        if samples is not None:
            block = block[samples, :]
        return np.asarray(block.values, dtype=np.float32)

    def read(
        self,
        variants: slice | np.ndarray | None = None,
        samples: np.ndarray | None = None,
    ) -> np.ndarray:
        """Read a dosage block.

        Args:
            variants: slice or (m,) int indices into the .bim rows (default: all).
            samples: (n,) int indices into the .fam rows, in the wanted order (default: all).

        Returns:
            (n, m) float32 samples × variants dosage of ALT (A1), NaN = missing.
        """
        if variants is None:
            variants = slice(0, self.n_variants)
        if isinstance(variants, slice):
            variants = np.arange(self.n_variants)[variants]
        variants = np.asarray(variants, dtype=np.int64)
        if samples is not None:
            samples = np.asarray(samples, dtype=np.int64)
        if self.backend == "pandas-plink":
            return self._read_pandas_plink(variants, samples)
        return decode_variants(self._raw_rows(variants), self.n_samples, samples)

    def read_raw(self, variants: np.ndarray) -> np.ndarray:
        """(m, bytes_per_variant) uint8 .bed rows of ``variants``, undecoded (for decoding elsewhere)."""
        return self._raw_rows(np.asarray(variants, dtype=np.int64))

    def read_zero_missing(
        self, variants: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read all samples of ``variants`` as float64 with missing = 0, plus the missing coordinates.

        The fast path of the GWAS runner (numpy decoder only); see ``decode_variants_zero_missing``.

        Returns:
            (dosage (N, m) float64, missing_samples (e,), missing_variants (e,) positions within the chunk).
        """
        raw = self._raw_rows(np.asarray(variants, dtype=np.int64))
        return decode_variants_zero_missing(raw, self.n_samples, out)


def write_plink(
    prefix: str | os.PathLike,
    dosage: np.ndarray,
    bim: pd.DataFrame | None = None,
    fam: pd.DataFrame | None = None,
) -> None:
    """Write a samples × variants hard-call dosage matrix (0/1/2 of ALT, NaN = missing) as PLINK 1 files.

    Missing ``bim``/``fam`` tables get placeholder IDs (``1:POS`` variants on chromosome 1; ``s{i}`` samples).
    Each file is written atomically.
    """
    prefix = Path(prefix)
    n, m = dosage.shape
    if bim is None:
        bim = pd.DataFrame(
            {
                "CHROM": ["1"] * m,
                "ID": [f"1:{i + 1}" for i in range(m)],
                "CM": 0.0,
                "POS": np.arange(1, m + 1),
                "ALT": "A",
                "REF": "G",
            }
        )
    if fam is None:
        iids = [f"s{i}" for i in range(n)]
        fam = pd.DataFrame({"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "SEX": 0, "PHENO": "-9"})
    if len(bim) != m or len(fam) != n:
        raise ValueError(f"dosage is {n} × {m} but bim has {len(bim)} rows and fam {len(fam)}")
    with atomic_path(f"{prefix}.bed") as tmp:
        with open(tmp, "wb") as handle:
            handle.write(BED_MAGIC + SNP_MAJOR)
            for start in range(0, m, 8192):
                handle.write(encode_variants(dosage[:, start : start + 8192]).tobytes())
    with atomic_path(f"{prefix}.bim") as tmp:
        bim[[c.name for c in BIM_SCHEMA]].to_csv(tmp, sep="\t", header=False, index=False)
    with atomic_path(f"{prefix}.fam") as tmp:
        fam[[c.name for c in FAM_SCHEMA]].to_csv(tmp, sep=" ", header=False, index=False)
