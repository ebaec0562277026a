"""BGEN v1.2/v1.3 genotype files (layout 2, unphased diploid biallelic) with their ``.sample`` files.

Dosage is the expected count of the ALT allele, 0..2 float32, NaN where the file marks a sample missing
(ARCHITECTURE.md's allele contract). Which of the two stored alleles is ALT is not written in a BGEN file;
``ref`` says it with plink2's ``--bgen`` modifiers: ``ref-first`` (UK Biobank's imputed files: the first
allele is REF, ALT is the second), ``ref-last`` (plink-exported files: the last allele is REF) or
``ref-unknown`` (plink2 then takes the last allele as provisional REF, so ALT is the first, as ``ref-last``).

Probabilities are decoded with numpy and ISA-L's zlib inflate (or zstandard for v1.3): a variant's block
is one decompress call (which releases the GIL, so chunk threads decode in parallel) and, for 8-bit
probabilities, one table lookup per sample. 8-, 16- and 32-bit probabilities are read directly; other
widths are refused.
"""

from __future__ import annotations

import copy
import mmap
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.dosage_reader import DosageReader
from genetics.errors import GenotypeFormatError

REF_MODES = ("ref-first", "ref-last", "ref-unknown")
HARDCALL_THRESHOLD = 0.1  # plink2's default --hard-call-threshold
DOSAGE_UNIT = 16384  # plink2 stores dosages in steps of 1/16384
BGEN_MAGIC = (b"bgen", b"\x00\x00\x00\x00")
_COMPRESSION = {0: "none", 1: "zlib", 2: "zstd"}


def _decompressor(kind: str):
    if kind == "zlib":  # ISA-L's inflate: 2.3x zlib's on 8-bit BGEN blocks, and it releases the GIL too
        from isal import isal_zlib

        return lambda data, size: isal_zlib.decompress(data, isal_zlib.MAX_WBITS, size)
    if kind == "zstd":
        import zstandard

        context = zstandard.ZstdDecompressor()
        return lambda data, size: context.decompress(data, max_output_size=size)
    return lambda data, size: data


def read_sample_file(path: str | os.PathLike, n_samples: int | None = None) -> pd.DataFrame:
    """Read an Oxford ``.sample`` file (two header lines) into columns FID IID PAT MAT SEX PHENO.

    ``ID_1`` becomes FID (``0`` when the file has only one ID per sample) and ``ID_2`` IID; a sex column
    (type ``D`` named ``sex``) is read as plink's 1/2/0 code. Sample IDs (FID, IID) must be unique.
    """
    path = Path(path)
    if not path.is_file():
        raise GenotypeFormatError(f"{path}: file not found; --sample expects the .sample file of the BGEN")
    try:
        table = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise GenotypeFormatError(f"{path}: cannot parse as an Oxford .sample file ({error})") from None
    if len(table.columns) < 3 or [c.upper() for c in table.columns[:2]] != ["ID_1", "ID_2"] or not len(table):
        raise GenotypeFormatError(
            f"{path}: not an Oxford .sample file (first line must start 'ID_1 ID_2 missing', second the types)"
        )
    types, table = table.iloc[0], table.iloc[1:].reset_index(drop=True)
    if n_samples is not None and len(table) != n_samples:
        raise GenotypeFormatError(
            f"{path}: {len(table)} samples but the BGEN file has {n_samples}; use the .sample file written "
            "with this BGEN file"
        )
    sex_columns = [c for c in table.columns[3:] if c.lower() == "sex" and types[c] == "D"]
    sex = (
        pd.to_numeric(table[sex_columns[0]], errors="coerce")
        if sex_columns
        else pd.Series(0, index=table.index)
    )
    fam = pd.DataFrame(
        {
            # ID_1 "0" means no family ID: FID = IID then, as read_psam does for a .psam without FID
            "FID": table.iloc[:, 0].astype(str).where(table.iloc[:, 0] != "0", table.iloc[:, 1]),
            "IID": table.iloc[:, 1].astype(str),
            "PAT": "0",
            "MAT": "0",
            "SEX": sex.where(sex.isin([1, 2]), 0).astype("int64"),
            "PHENO": "-9",
        }
    )
    keys = fam["FID"] + "\t" + fam["IID"]
    duplicated = keys[keys.duplicated()]
    if len(duplicated):
        raise GenotypeFormatError(
            f"{path}: duplicated sample ID {duplicated.iloc[0].replace(chr(9), ' ')!r} "
            f"({len(duplicated)} duplicate(s)); every sample must appear once: remove or rename duplicates"
        )
    return fam


def _dosage(aa: np.ndarray, ab: np.ndarray, bits: int, alt_first: bool) -> np.ndarray:
    """ALT dosage (n,) float32 from the stored P(first/first) ``aa`` and P(first/second) ``ab`` (n,).

    P(second/second) = 1 − both. The expected count of the first allele is rounded to plink2's dosage
    unit 1/16384 exactly as plink2 --bgen imports it (halves up, with plink2's 1/256-unit slack: equal on
    every one of the 32896 8-bit probability pairs), so results equal plink2's on the same file; the
    rounding (<= 3.1e-5) is far below 8-bit precision.
    """
    aa, ab = np.asarray(aa, dtype=np.float64), np.asarray(ab, dtype=np.float64)
    first = np.floor((2.0 * aa + ab) * (DOSAGE_UNIT / (2**bits - 1)) + (0.5 + 1 / 256))
    units = first if alt_first else 2 * DOSAGE_UNIT - first
    return (units * (1.0 / DOSAGE_UNIT)).astype(np.float32)


_TABLES: dict[bool, np.ndarray] = {}


def _dosage_table_8bit(alt_first: bool) -> np.ndarray:
    """(65536,) float32: :func:`_dosage` of every little-endian byte pair ``aa + 256 × ab``."""
    if alt_first not in _TABLES:
        pairs = np.arange(65536)
        _TABLES[alt_first] = _dosage(pairs & 0xFF, pairs >> 8, 8, alt_first)
    return _TABLES[alt_first]


class BgenFileset(DosageReader):
    """A BGEN v1.2/v1.3 file with its ``.sample`` file, behind the reader interface of ``PlinkFileset``.

    Attributes:
        bim: variants, columns CHROM ID CM POS ALT REF (ID is the rsid column, else the SNP id).
        fam: samples, columns FID IID PAT MAT SEX PHENO (from the ``.sample`` file, or the BGEN's own IDs).
        offsets: (variants,) byte offset of each variant's probability block.
    """

    def __init__(
        self, path: str | os.PathLike, sample: str | os.PathLike | None, ref: str, hardcalls: bool = False
    ):
        if ref not in REF_MODES:
            raise GenotypeFormatError(
                f"{path}: unknown BGEN allele order {ref!r}; say which allele is REF with one of {REF_MODES} "
                "(UK Biobank imputed files are ref-first, plink-exported ones ref-last)"
            )
        self.hardcalls = hardcalls
        self.path = self.bed_path = Path(path)
        self.bim_path = self.path  # the variant table lives in the .bgen itself
        self.ref = ref
        if not self.path.is_file():
            raise GenotypeFormatError(f"{self.path}: file not found; --bgen expects a .bgen file")
        self.prefix = self.path.with_suffix("")
        with open(self.path, "rb") as handle:
            self._layout(handle)
            embedded = self._embedded_samples(handle)
            self.bim, self.offsets = self._scan_variants(handle)
        if sample is not None:
            self.fam_path = Path(sample)
            self.fam = read_sample_file(self.fam_path, self._n_samples)
        elif embedded is not None:
            self.fam_path = self.path
            iids = pd.Series(embedded, dtype=str)
            self.fam = pd.DataFrame(
                {"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "SEX": 0, "PHENO": "-9"}
            )
            if iids.duplicated().any():
                raise GenotypeFormatError(
                    f"{self.path}: duplicated sample ID {iids[iids.duplicated()].iloc[0]!r} in the embedded "
                    "sample identifiers; pass a .sample file with unique IDs"
                )
        else:
            raise GenotypeFormatError(
                f"{self.path}: the file stores no sample identifiers; pass its .sample file with --sample"
            )
        self._map: mmap.mmap | None = None

    def __getstate__(self) -> dict:
        """Pickle without the open memory map (workers of a distributed run reopen the file)."""
        state = dict(self.__dict__)
        state["_map"] = None
        return state

    def with_hardcalls(self) -> BgenFileset:
        """The same file read as plink2's hard calls: the nearest integer where the dosage is within
        ``HARDCALL_THRESHOLD`` of it, else missing (plink2's --hard-call-threshold on import)."""
        view = copy.copy(self)
        view.hardcalls, view._map = True, None
        return view

    def _layout(self, handle) -> None:
        start, header_length, n_variants, n_samples = struct.unpack("<4I", handle.read(16))
        magic = handle.read(4)
        if magic not in BGEN_MAGIC:
            raise GenotypeFormatError(f"{self.path}: not a BGEN file (magic {magic!r} instead of b'bgen')")
        handle.seek(4 + header_length - 4)
        (flags,) = struct.unpack("<I", handle.read(4))
        compression, layout = flags & 3, (flags >> 2) & 15
        if layout != 2 or compression not in _COMPRESSION:
            raise GenotypeFormatError(
                f"{self.path}: BGEN layout {layout} with compression {compression} is not supported; "
                "convert it to BGEN v1.2 (layout 2) with plink2 --export bgen-1.2 or qctool"
            )
        self._start, self._n_samples, self._n_header_variants = start + 4, n_samples, n_variants
        self._has_ids, self._header_length = bool(flags >> 31), header_length
        self._compression = _COMPRESSION[compression]

    def _embedded_samples(self, handle) -> list[str] | None:
        if not self._has_ids:
            return None
        handle.seek(4 + self._header_length)
        _, n = struct.unpack("<2I", handle.read(8))
        names = []
        for _ in range(n):
            (length,) = struct.unpack("<H", handle.read(2))
            names.append(handle.read(length).decode())
        return names

    def _scan_variants(self, handle) -> tuple[pd.DataFrame, np.ndarray]:
        """Walk the variant headers once: identifiers, alleles and the offset of every probability block."""
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            m = self._n_header_variants
            snp, rsid, chrom, alleles = [None] * m, [None] * m, [None] * m, [None] * m
            pos, offsets = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
            at, size = self._start, len(buf)
            unpack_h, unpack_i = struct.Struct("<H").unpack_from, struct.Struct("<I").unpack_from
            for j in range(m):
                if at + 2 > size:
                    raise GenotypeFormatError(
                        f"{self.path}: ends after {j} of the {m} variants its header announces; the file is "
                        "truncated: copy or export it again"
                    )
                fields = []
                for _ in range(3):
                    (length,) = unpack_h(buf, at)
                    fields.append(buf[at + 2 : at + 2 + length].decode())
                    at += 2 + length
                snp[j], rsid[j], chrom[j] = fields
                pos[j], n_alleles = unpack_i(buf, at)[0], unpack_h(buf, at + 4)[0]
                at += 6
                names = []
                for _ in range(n_alleles):
                    (length,) = unpack_i(buf, at)
                    names.append(buf[at + 4 : at + 4 + length].decode())
                    at += 4 + length
                if n_alleles != 2:
                    raise GenotypeFormatError(
                        f"{self.path}: variant {rsid[j] or snp[j]!r} has {n_alleles} alleles; split "
                        "multi-allelic variants first (plink2 --make-pgen multiallelics=- or bcftools norm -m-)"
                    )
                alleles[j] = names
                offsets[j] = at
                at += 4 + unpack_i(buf, at)[0]
        first = [a[0] for a in alleles]
        last = [a[1] for a in alleles]
        alt, ref = (last, first) if self.ref == "ref-first" else (first, last)
        bim = pd.DataFrame(
            {
                "CHROM": chrom,
                "ID": [r or s for r, s in zip(rsid, snp, strict=True)],
                "CM": 0.0,
                "POS": pos,
                "ALT": alt,
                "REF": ref,
            }
        )
        for column in ("CHROM", "ID", "ALT", "REF"):
            bim[column] = bim[column].astype("string[pyarrow]")
        return bim, offsets

    def _buffer(self) -> mmap.mmap:
        if self._map is None:  # a race maps the file twice, harmlessly
            with open(self.path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def _decode_into(self, variants: np.ndarray, out: np.ndarray) -> None:
        """ALT dosages of ``variants`` into rows of ``out`` ((m, ≥N) float, variant-major), NaN = missing."""
        buf, n = self._buffer(), self._n_samples
        inflate = _decompressor(self._compression)
        alt_first = self.ref != "ref-first"
        for row, j in enumerate(variants):
            at = int(self.offsets[j])
            (length,) = struct.unpack_from("<I", buf, at)
            if self._compression == "none":
                block = buf[at + 4 : at + 4 + length]
            else:
                (full,) = struct.unpack_from("<I", buf, at + 4)
                block = inflate(buf[at + 8 : at + 4 + length], full)
            out[row, :n] = self._block_dosage(block, j, alt_first)

    def _block_dosage(self, block: bytes, j: int, alt_first: bool) -> np.ndarray:
        n = self._n_samples
        n_block, n_alleles, low, high = struct.unpack_from("<IHBB", block, 0)
        ploidy = np.frombuffer(block, dtype=np.uint8, count=n, offset=8)
        phased, bits = block[8 + n], block[9 + n]
        if n_block != n or n_alleles != 2 or low != 2 or high != 2 or phased:
            raise GenotypeFormatError(
                f"{self.path}: variant {self.bim['ID'].iloc[j]!r} is not unphased diploid biallelic "
                f"(samples {n_block}, alleles {n_alleles}, ploidy {low}-{high}, phased {phased}); "
                "only unphased diploid dosages are supported"
            )
        dtype = {8: "<u1", 16: "<u2", 32: "<u4"}.get(bits)
        if dtype is None:
            raise GenotypeFormatError(
                f"{self.path}: {bits}-bit probabilities are not supported; re-export with bits=8 or bits=16"
            )
        if bits == 8:  # one table lookup per sample: the (P(AA), P(AB)) byte pair indexes every dosage
            pairs = np.frombuffer(block, dtype="<u2", count=n, offset=10 + n)
            dosage = _dosage_table_8bit(alt_first)[pairs]
        else:
            stored = np.frombuffer(block, dtype=dtype, count=2 * n, offset=10 + n).reshape(n, 2)
            dosage = _dosage(stored[:, 0], stored[:, 1], bits, alt_first)
        if self.hardcalls:
            calls = np.rint(dosage)
            dosage = np.where(np.abs(dosage - calls) <= HARDCALL_THRESHOLD, calls, np.float32(np.nan))
        if ploidy.max(initial=0) & 0x80:
            dosage[(ploidy & 0x80).astype(bool)] = np.nan
        return dosage
