"""PGS Catalog scoring files (format 2.0), plain or gzipped.

A file is ``#key=value`` header lines (plus ``###``/``##`` title and section lines), one tab-separated
column line, then one row per (variant, effect allele). See
https://www.pgscatalog.org/downloads/#scoring_columns.

Decisions (documented here because callers rely on them):

- **Genome build.** ``#genome_build`` (and ``#HmPOS_build`` of harmonized files) is normalised to
  ``GRCh37``/``GRCh38``/``NCBI36`` (``hg19``/``hg38``/``hg18`` accepted). ``NR`` or an absent key means
  "not reported" (``None``, no error: many catalog files say NR). Any other value is an error, because
  positions in a build we cannot name cannot be trusted.
- **Duplicated variants.** Two rows with the same variant (rsID, else ``chr:pos``) and the same effect
  allele are an error; the same variant with different effect alleles (multi-allelic sites) is allowed.
- **Non-additive rows** (``is_interaction``, ``is_haplotype``, ``is_diplotype``, ``is_dominant``,
  ``is_recessive`` true, or ``dosage_*_weight`` columns) are an error: an additive score would be wrong.
- ``#variants_number`` must equal the number of rows (a mismatch usually means a truncated download).
- ``effect_weight`` is used as is, whatever ``#weight_type`` says.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.errors import GeneticsError


class ScoreFileError(GeneticsError):
    """A polygenic scoring file is malformed, or none of its variants can be scored."""


BUILD_ALIASES = {
    "GRCH37": "GRCh37",
    "HG19": "GRCh37",
    "GRCH38": "GRCh38",
    "HG38": "GRCh38",
    "NCBI36": "NCBI36",
    "HG18": "NCBI36",
}
NOT_REPORTED = {"", "NR", "NA", "NONE"}

# Standardised columns of ScoringFile.variants (besides the file's own columns, kept as strings).
STRING_COLUMNS = (
    "rsID",
    "chr_name",
    "effect_allele",
    "other_allele",
    "hm_rsID",
    "hm_chr",
    "hm_inferOtherAllele",
)
POSITION_COLUMNS = ("chr_position", "hm_pos")
NON_ADDITIVE_FLAGS = ("is_interaction", "is_haplotype", "is_diplotype", "is_dominant", "is_recessive")
NON_ADDITIVE_WEIGHTS = ("dosage_0_weight", "dosage_1_weight", "dosage_2_weight")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = {"TRUE", "T", "1", "YES"}


@dataclass(frozen=True)
class ScoringFile:
    """One parsed scoring file.

    Attributes:
        path: the file read.
        pgs_id: ``#pgs_id`` or, when absent, the file name without ``.txt``/``.gz``.
        genome_build: normalised ``#genome_build`` (``None`` = not reported).
        header: every ``#key=value`` pair, values as strings.
        columns: the file's own column names, in file order.
        variants: (rows,) table with ``line`` (1-based file line), ``rsID chr_name chr_position
            effect_allele other_allele effect_weight`` (float64), positions as nullable Int64, alleles
            upper-case, absent string columns as ``""``; other file columns kept as strings.
    """

    path: Path
    pgs_id: str
    genome_build: str | None
    header: dict[str, str] = field(repr=False)
    columns: tuple[str, ...] = field(repr=False)
    variants: pd.DataFrame = field(repr=False)

    @property
    def harmonized(self) -> bool:
        """True when the file carries harmonized positions (``hm_chr`` and ``hm_pos``)."""
        return "hm_chr" in self.columns and "hm_pos" in self.columns

    @property
    def position_build(self) -> str | None:
        """Build of the positions used for matching: ``#HmPOS_build`` if harmonized, else ``genome_build``."""
        if self.harmonized:
            return _normalise_build(self.header.get("HmPOS_build"), self.path, "HmPOS_build")
        return self.genome_build


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _normalise_build(value: str | None, path: Path, key: str) -> str | None:
    if value is None or value.strip().upper() in NOT_REPORTED:
        return None
    build = BUILD_ALIASES.get(value.strip().upper())
    if build is None:
        raise ScoreFileError(
            f"{path}: unknown #{key}={value!r}; expected one of GRCh37, GRCh38, NCBI36 (or hg19, hg38, hg18, "
            "NR): fix the header or download the file for a named build"
        )
    return build


def _default_pgs_id(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".txt", ".tsv"):
        name = name.removesuffix(suffix)
    return name


def _read_lines(path: Path) -> tuple[dict[str, str], list[str], int, list[str], np.ndarray]:
    """Split a file into (header, columns, column line number, data lines, their 1-based line numbers)."""
    try:
        with _open_text(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ScoreFileError(
            f"{path}: file not found; pass a PGS Catalog scoring file (.txt or .txt.gz)"
        ) from None
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ScoreFileError(f"{path}: cannot read ({error}); the file is corrupt or not text") from None
    lines = text.splitlines()
    header: dict[str, str] = {}
    index = 0
    while index < len(lines) and lines[index].startswith("#"):
        line = lines[index]
        if not line.startswith("##"):
            key, sep, value = line[1:].partition("=")
            if not sep or not _KEY.match(key.strip()):
                raise ScoreFileError(
                    f"{path}: line {index + 1}: malformed header line {line[:60]!r}; expected '#key=value' "
                    "(PGS Catalog format 2.0): re-download the file or fix the line"
                )
            header[key.strip()] = value.strip()
        index += 1
    if index == len(lines) or not lines[index].strip():
        raise ScoreFileError(
            f"{path}: line {index + 1}: expected the tab-separated column line after the header"
        )
    columns = [c.strip() for c in lines[index].split("\t")]
    column_line = index + 1
    data = lines[index + 1 :]
    numbers = np.arange(column_line + 1, column_line + 1 + len(data))
    keep = np.array([bool(line.strip()) for line in data], dtype=bool)
    data = [line for line, k in zip(data, keep, strict=True) if k]
    return header, columns, column_line, data, numbers[keep]


def _check_columns(path: Path, columns: list[str], column_line: int) -> None:
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise ScoreFileError(f"{path}: line {column_line}: duplicated column(s) {duplicated}")
    has_id = "rsID" in columns or "hm_rsID" in columns
    has_pos = ("chr_name" in columns and "chr_position" in columns) or (
        "hm_chr" in columns and "hm_pos" in columns
    )
    missing = [c for c in ("effect_allele", "effect_weight") if c not in columns]
    if not (has_id or has_pos):
        missing.append("rsID (or chr_name + chr_position)")
    if missing:
        raise ScoreFileError(
            f"{path}: line {column_line}: missing required column(s) {', '.join(missing)}; found {columns}. "
            "A PGS Catalog scoring file needs rsID or chr_name/chr_position, effect_allele and effect_weight"
        )
    weights = [c for c in NON_ADDITIVE_WEIGHTS if c in columns]
    if weights:
        raise ScoreFileError(
            f"{path}: line {column_line}: columns {weights} define a non-additive score, which is not supported"
        )


def _check_field_counts(path: Path, data: list[str], numbers: np.ndarray, n_columns: int) -> None:
    counts = pd.Series(data, dtype=object).str.count("\t").to_numpy() + 1 if data else np.zeros(0, int)
    bad = np.flatnonzero(counts != n_columns)
    if bad.size:
        first = int(bad[0])
        raise ScoreFileError(
            f"{path}: line {numbers[first]}: {counts[first]} tab-separated fields, expected {n_columns} "
            f"({bad.size} bad line(s) in all); the file must be tab-separated with one value per column"
        )


def _first_bad(path: Path, table: pd.DataFrame, bad: np.ndarray, column: str, what: str) -> ScoreFileError:
    row = int(np.flatnonzero(bad)[0])
    return ScoreFileError(
        f"{path}: line {table['line'].iloc[row]}: {column} {table[column].iloc[row]!r} is not {what} "
        f"({int(bad.sum())} such row(s)); fix the file"
    )


def _parse_table(path: Path, columns: list[str], data: list[str], numbers: np.ndarray) -> pd.DataFrame:
    if data:
        table = pd.read_csv(
            io.StringIO("\n".join(data)),
            sep="\t",
            header=None,
            names=columns,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
        )
    else:
        table = pd.DataFrame({c: pd.Series(dtype=str) for c in columns})
    table = table.apply(lambda s: s.str.strip())
    table.insert(0, "line", numbers.astype(np.int64))
    for name in STRING_COLUMNS:
        if name not in table.columns:
            table[name] = ""
    for name in ("effect_allele", "other_allele"):
        table[name] = table[name].str.upper()
    if (table["effect_allele"] == "").any():
        raise _first_bad(path, table, (table["effect_allele"] == "").to_numpy(), "effect_allele", "an allele")
    weight = pd.to_numeric(table["effect_weight"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(weight)
    if bad.any():
        raise _first_bad(path, table, bad, "effect_weight", "a finite number")
    table["effect_weight"] = weight
    for name in POSITION_COLUMNS:
        if name not in table.columns:
            table[name] = pd.array([pd.NA] * len(table), dtype="Int64")
            continue
        raw = table[name]
        position = pd.to_numeric(raw, errors="coerce")
        bad = (raw != "") & (position.isna() | (position % 1 != 0) | (position < 0))
        if bad.any():
            raise _first_bad(path, table, bad.to_numpy(), name, "a non-negative integer position")
        table[name] = position.astype("Int64")
    for name in NON_ADDITIVE_FLAGS:
        if name in table.columns:
            flagged = table[name].str.upper().isin(_TRUE).to_numpy()
            if flagged.any():
                row = int(np.flatnonzero(flagged)[0])
                raise ScoreFileError(
                    f"{path}: line {table['line'].iloc[row]}: {name} is true ({int(flagged.sum())} row(s)); "
                    "non-additive effects cannot be scored as a weighted allele count"
                )
    return table


_NO_ID = ("", ".")  # PGS Catalog harmonised files write "." where no rsID is known


def variant_ids(table: pd.DataFrame) -> pd.Series:
    """Per row: ``rsID``, else ``hm_rsID``; ``""`` where neither names the variant (empty or ``.``)."""
    given, harmonised = (table[c].where(~table[c].isin(_NO_ID), "") for c in ("rsID", "hm_rsID"))
    return given.where(given != "", harmonised)


def _variant_keys(table: pd.DataFrame) -> pd.Series:
    """Per row: rsID (hm_rsID when empty), else ``chr:pos``, else ``hm_chr:hm_pos``; joined with the effect allele."""
    rsid = variant_ids(table)
    pos = table["chr_name"] + ":" + table["chr_position"].astype(str)
    hm_pos = table["hm_chr"] + ":" + table["hm_pos"].astype(str)
    use_pos = table["chr_position"].notna() & (table["chr_name"] != "")
    use_hm = table["hm_pos"].notna() & (table["hm_chr"] != "")
    unidentified = "line" + table["line"].astype(str)  # no ID and no position: never a duplicate
    key = rsid.where(rsid != "", pos.where(use_pos, hm_pos.where(use_hm, unidentified)))
    return key + " " + table["effect_allele"]


def _check_duplicates(path: Path, table: pd.DataFrame) -> None:
    keys = _variant_keys(table)
    duplicated = keys.duplicated(keep=False).to_numpy()
    if duplicated.any():
        first = keys[duplicated].iloc[0]
        lines = table.loc[keys == first, "line"].tolist()
        variant, allele = first.rsplit(" ", 1)
        raise ScoreFileError(
            f"{path}: lines {', '.join(map(str, lines[:5]))}: variant {variant} with effect allele {allele} is "
            f"duplicated ({int(keys.duplicated().sum())} duplicate row(s)); keep one row per variant and allele"
        )


def read_scoring_file(path: str | os.PathLike) -> ScoringFile:
    """Read a PGS Catalog scoring file (format 2.0, plain or gzipped) and validate it.

    Raises:
        ScoreFileError: naming the file and line, for a malformed header, missing required columns, ragged
            rows, non-numeric weights or positions, duplicated variants, non-additive rows, an unknown
            genome build or a ``#variants_number`` that disagrees with the rows.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "PGS000001.txt"
    >>> _ = p.write_text("#pgs_id=PGS000001\\n#genome_build=GRCh37\\n"
    ...                  "rsID\\teffect_allele\\tother_allele\\teffect_weight\\nrs1\\tA\\tG\\t0.5\\n")
    >>> sf = read_scoring_file(p)
    >>> sf.pgs_id, sf.genome_build, sf.variants["effect_weight"].tolist()
    ('PGS000001', 'GRCh37', [0.5])
    """
    path = Path(path)
    header, columns, column_line, data, numbers = _read_lines(path)
    version = header.get("format_version")
    if version is not None and not version.startswith("2."):
        raise ScoreFileError(
            f"{path}: #format_version={version} is not supported; download the format 2.0 file from the PGS Catalog"
        )
    genome_build = _normalise_build(header.get("genome_build"), path, "genome_build")
    _check_columns(path, columns, column_line)
    _check_field_counts(path, data, numbers, len(columns))
    table = _parse_table(path, columns, data, numbers)
    expected = header.get("variants_number")
    if expected is not None and expected.strip() not in ("", "NR"):
        if not expected.strip().isdigit() or int(expected) != len(table):
            why = (
                "the file is probably truncated: download it again"
                if expected.strip().isdigit() and int(expected) > len(table)
                else "rows were added to it or the header belongs to another file: download it again, or "
                "correct #variants_number if you edited the rows on purpose"
            )
            raise ScoreFileError(
                f"{path}: header #variants_number={expected} but the file has {len(table)} variant rows; {why}"
            )
    _check_duplicates(path, table)
    pgs_id = header.get("pgs_id") or _default_pgs_id(path)
    if not pgs_id or any(ch.isspace() for ch in pgs_id):
        raise ScoreFileError(f"{path}: pgs_id {pgs_id!r} is empty or contains whitespace; set #pgs_id=NAME")
    sf = ScoringFile(path, pgs_id, genome_build, header, tuple(columns), table)
    if sf.harmonized:
        _ = sf.position_build  # validate #HmPOS_build early
    return sf
