"""plink2 filesets (.pgen/.pvar/.psam): dosages through pgenlib, behind the reader interface of ``PlinkFileset``.

Dosage counts ALT (the allele plink2 --glm reports as A1; ARCHITECTURE.md's contract), 0..2 float32 in
plink2's 1/16384 steps, NaN = missing. Hard calls (for QC, as plink2 applies its filters) are the ones the
.pgen stores: a dosage further than plink2's hard-call threshold from an integer is a missing hard call.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.dosage_reader import DosageReader
from genetics.errors import GenotypeFormatError

PGEN_MAGIC = b"\x6c\x1b"
_MISSING = -9


def _header_line(path: Path) -> tuple[int, str | None]:
    """(lines before the data, the '#'-header line or None) of a .pvar/.psam file."""
    skipped = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("##"):
                skipped += 1
                continue
            if line.startswith("#"):
                return skipped + 1, line[1:].strip()
            return skipped, None
    return skipped, None


def read_pvar(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .pvar (or headerless .bim-style) file into columns CHROM ID CM POS ALT REF.

    Multi-allelic rows (ALT with a comma) are refused: split them first, as plink2 --glm would test each
    ALT on its own.
    """
    path = Path(path)
    skip, header = _header_line(path)
    if header is None:  # plink2 accepts a .bim as .pvar
        names = ["CHROM", "ID", "CM", "POS", "ALT", "REF"]
    else:
        names = header.split()
        missing = {"CHROM", "POS", "ID", "REF", "ALT"} - set(names)
        if missing:
            raise GenotypeFormatError(
                f"{path}: header line lacks {sorted(missing)}; expected #CHROM POS ID REF ALT"
            )
    try:
        table = pd.read_csv(
            path, sep="\t" if header else r"\s+", skiprows=skip, header=None, names=names, dtype=str,
            keep_default_na=False, engine="c",
        )  # fmt: skip
    except pd.errors.ParserError as error:
        raise GenotypeFormatError(f"{path}: cannot parse ({error}); expected {len(names)} columns") from None
    pos = pd.to_numeric(table["POS"], errors="coerce")
    if pos.isna().any():
        line = skip + int(np.flatnonzero(pos.isna().to_numpy())[0]) + 1
        raise GenotypeFormatError(f"{path}: line {line}: POS is not a number")
    multi = table["ALT"].str.contains(",", regex=False)
    if multi.any():
        first = table["ID"][multi].iloc[0]
        raise GenotypeFormatError(
            f"{path}: variant {first!r} is multi-allelic ({int(multi.sum())} such rows); split it into "
            "biallelic rows first: plink2 --pfile ... --make-pgen multiallelics=- (or bcftools norm -m-)"
        )
    cm = pd.to_numeric(table["CM"], errors="coerce").fillna(0.0) if "CM" in table else 0.0
    bim = pd.DataFrame(
        {"CHROM": table["CHROM"], "ID": table["ID"], "CM": cm, "POS": pos.astype("int64"),
         "ALT": table["ALT"], "REF": table["REF"]}
    )  # fmt: skip
    for column in ("CHROM", "ID", "ALT", "REF"):
        bim[column] = bim[column].astype("string[pyarrow]")
    return bim


def read_psam(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .psam (or headerless .fam-style) file into columns FID IID PAT MAT SEX PHENO.

    A .psam without FID gets FID = IID (plink2 writes FID = IID when it exports a .fam). Sample IDs must be
    unique.
    """
    path = Path(path)
    skip, header = _header_line(path)
    names = ["FID", "IID", "PAT", "MAT", "SEX", "PHENO"] if header is None else header.split()
    if "IID" not in names:
        raise GenotypeFormatError(f"{path}: header line lacks IID; expected #FID IID ... or #IID ...")
    try:
        table = pd.read_csv(
            path, sep=r"\s+", skiprows=skip, header=None, names=names, dtype=str, keep_default_na=False
        )
    except pd.errors.ParserError as error:
        raise GenotypeFormatError(f"{path}: cannot parse ({error}); expected {len(names)} columns") from None
    sex = pd.to_numeric(table["SEX"], errors="coerce") if "SEX" in table else pd.Series(0, index=table.index)
    pheno = next((table[c] for c in names if c not in ("FID", "IID", "PAT", "MAT", "SEX", "SID")), None)
    fam = pd.DataFrame(
        {
            "FID": table["FID"] if "FID" in table else table["IID"],
            "IID": table["IID"],
            "PAT": table["PAT"] if "PAT" in table else "0",
            "MAT": table["MAT"] if "MAT" in table else "0",
            "SEX": sex.where(sex.isin([1, 2]), 0).astype("int64"),
            "PHENO": pheno if pheno is not None else "-9",
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


class PgenFileset(DosageReader):
    """A validated plink2 fileset ``PREFIX.pgen/.pvar/.psam``, read through pgenlib.

    Attributes:
        bim: variants, columns CHROM ID CM POS ALT REF (from the .pvar).
        fam: samples, columns FID IID PAT MAT SEX PHENO (from the .psam).
        bed_path, bim_path, fam_path: the .pgen, .pvar and .psam (the interface's genotype, variant and
            sample files).
    """

    def __init__(self, prefix: str | os.PathLike, hardcalls: bool = False):
        prefix = Path(prefix)
        if prefix.suffix in (".pgen", ".pvar", ".psam"):
            prefix = prefix.with_suffix("")
        self.prefix = prefix
        self.bed_path, self.bim_path, self.fam_path = (
            Path(f"{prefix}{s}") for s in (".pgen", ".pvar", ".psam")
        )
        for path in (self.bed_path, self.bim_path, self.fam_path):
            if not path.is_file():
                raise GenotypeFormatError(
                    f"{path}: file not found; --pfile expects PREFIX of PREFIX.pgen/.pvar/.psam"
                )
        with open(self.bed_path, "rb") as handle:
            magic = handle.read(3)
        if magic[:2] != PGEN_MAGIC or magic[2] not in (0x01, 0x02, 0x10, 0x11):
            raise GenotypeFormatError(
                f"{self.bed_path}: not a .pgen file (magic bytes {magic.hex()}); write it with plink2 --make-pgen"
            )
        self.bim = read_pvar(self.bim_path)
        self.fam = read_psam(self.fam_path)
        self.hardcalls = hardcalls
        self._local = threading.local()
        reader = self._reader()  # checks that the three files belong together
        if reader.get_variant_ct() != self.n_variants:
            raise GenotypeFormatError(
                f"{self.bed_path}: holds {reader.get_variant_ct()} variants but {self.bim_path.name} lists "
                f"{self.n_variants}; the files do not belong together"
            )

    def __getstate__(self) -> dict:
        """Pickle without open readers (workers of a distributed run reopen the files)."""
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def with_hardcalls(self) -> PgenFileset:
        """The same fileset read as plink2's hard calls (0/1/2, NaN = missing), as QC filters count them."""
        view = PgenFileset.__new__(PgenFileset)
        view.__setstate__({**self.__getstate__(), "hardcalls": True})
        return view

    def _reader(self):
        """One pgenlib reader per thread (a reader keeps decoding state)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            import pgenlib

            try:
                reader = pgenlib.PgenReader(bytes(self.bed_path), raw_sample_ct=self.n_samples)
            except RuntimeError as error:
                raise GenotypeFormatError(
                    f"{self.bed_path}: cannot be read with {self.n_samples} samples from {self.fam_path.name} "
                    f"({str(error).strip()}); the files do not belong together or the .pgen is damaged"
                ) from None
            self._local.reader = reader
        return reader

    def _decode_into(self, variants: np.ndarray, out: np.ndarray) -> None:
        """Dosages (or hard calls) of ``variants`` into a C-ordered (m, N) float array, NaN = missing."""
        index = np.ascontiguousarray(variants, dtype=np.uint32)
        if self.hardcalls:
            calls = np.empty(out.shape, dtype=np.int8)
            self._reader().read_list(index, calls, 1)
            out[...] = calls
        else:
            self._reader().read_dosages_list(index, out, 1)
        out[out == _MISSING] = np.nan
