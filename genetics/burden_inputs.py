"""Inputs of gene burden scores in regenie's layouts: annotations, mask definitions, set lists, AAF bins.

- annotation file (regenie ``--anno-file``): ``ID GENE ANNOT [WEIGHT]`` per line, whitespace separated;
  one row per (variant, gene); WEIGHT is an optional non-negative per-row weight (all rows or none).
- mask file (regenie ``--mask-def``): ``NAME ANNOT1,ANNOT2,...`` per line.
- set list (regenie ``--set-list``): ``GENE CHROM POS VAR1,VAR2,...`` per line.

Blank lines and lines starting with ``#`` are skipped everywhere; an annotation or set-list first line whose
first field is ``ID`` / ``GENE`` / ``SET`` (any case) is taken as a header. Bad lines raise
:class:`BurdenInputError` naming the file and the line.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.errors import GeneticsError

SINGLETON = "singleton"  # label of regenie's singleton bin (variants with exactly one ALT allele observed)


class BurdenInputError(GeneticsError):
    """An annotation, mask, set-list file or burden option is malformed or matches nothing."""


class BurdenInputWarning(UserWarning):
    """Part of the burden input was ignored (counts in the message); the rest is still used."""


def warn(message: str) -> None:
    """Issue a :class:`BurdenInputWarning` pointing at the caller of the public function."""
    warnings.warn(message, BurdenInputWarning, stacklevel=3)


def _records(path: Path, header_names: tuple[str, ...] = ()) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, whitespace-split fields) for every data line of ``path``."""
    if not path.is_file():
        raise BurdenInputError(f"{path}: file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise BurdenInputError(f"{path}: not a text file ({error})") from None
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if first and fields[0].upper() in header_names:
            first = False
            continue
        first = False
        yield number, fields


@dataclass(frozen=True)
class AnnotationTable:
    """Parsed annotation file.

    Attributes:
        table: columns ID GENE ANNOT WEIGHT (float64, 1.0 without a weight column) LINE (1-based), one row
            per (ID, GENE), in file order.
        has_weights: whether the file has a 4th (weight) column.
        path: where it was read from.
    """

    table: pd.DataFrame
    has_weights: bool
    path: Path

    @property
    def annotations(self) -> set[str]:
        return set(self.table["ANNOT"].unique())


def read_annotations(path: str | os.PathLike) -> AnnotationTable:
    """Read ``ID GENE ANNOT [WEIGHT]`` rows (regenie ``--anno-file``).

    Exact repeats of an (ID, GENE) row are dropped with a warning; an (ID, GENE) pair given two different
    annotations or weights is an error, as is a line with the wrong number of fields or a bad weight.
    """
    path = Path(path)
    ids: list[str] = []
    genes: list[str] = []
    annots: list[str] = []
    weights: list[float] = []
    lines: list[int] = []
    n_fields = 0
    for number, fields in _records(path, header_names=("ID", "SNP", "VARIANT")):
        if n_fields == 0:
            n_fields = len(fields)
            if n_fields not in (3, 4):
                raise BurdenInputError(
                    f"{path}: line {number} has {n_fields} fields; expected 'ID GENE ANNOT' or "
                    "'ID GENE ANNOT WEIGHT' (whitespace separated)"
                )
        elif len(fields) != n_fields:
            raise BurdenInputError(
                f"{path}: line {number} has {len(fields)} fields but earlier lines have {n_fields}; "
                "every line must be 'ID GENE ANNOT' (or every line 'ID GENE ANNOT WEIGHT')"
            )
        weight = 1.0
        if n_fields == 4:
            try:
                weight = float(fields[3])
            except ValueError:
                weight = math.nan
            if not (math.isfinite(weight) and weight >= 0):
                raise BurdenInputError(
                    f"{path}: line {number}: weight {fields[3]!r} is not a finite non-negative number "
                    "(the 4th column must be a weight; regenie's region column is not supported)"
                )
        ids.append(fields[0])
        genes.append(fields[1])
        annots.append(fields[2])
        weights.append(weight)
        lines.append(number)
    if not ids:
        raise BurdenInputError(f"{path}: no annotation rows; expected lines 'ID GENE ANNOT'")
    table = pd.DataFrame({"ID": ids, "GENE": genes, "ANNOT": annots, "WEIGHT": weights, "LINE": lines})
    table["WEIGHT"] = table["WEIGHT"].astype(np.float64)
    table = _drop_duplicate_pairs(table, path)
    return AnnotationTable(table=table, has_weights=n_fields == 4, path=path)


def _drop_duplicate_pairs(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    pair_dup = table.duplicated(["ID", "GENE"], keep=False)
    if not pair_dup.any():
        return table
    exact = table.duplicated(["ID", "GENE", "ANNOT", "WEIGHT"], keep="first")
    conflicting = table[pair_dup].drop_duplicates(["ID", "GENE", "ANNOT", "WEIGHT"])
    conflicting = conflicting[conflicting.duplicated(["ID", "GENE"], keep=False)]
    if len(conflicting):
        first, second = conflicting.iloc[0], conflicting.iloc[1]
        n_pairs = conflicting[["ID", "GENE"]].drop_duplicates().shape[0]
        raise BurdenInputError(
            f"{path}: variant {first['ID']!r} in gene {first['GENE']!r} is annotated twice differently "
            f"(line {first['LINE']}: {first['ANNOT']} {first['WEIGHT']:g}; line {second['LINE']}: "
            f"{second['ANNOT']} {second['WEIGHT']:g}); {n_pairs} such (ID, GENE) pair(s) in all; "
            "keep one annotation per variant and gene (e.g. the most severe consequence)"
        )
    line = int(table.loc[exact, "LINE"].iloc[0])
    warn(f"{path}: {int(exact.sum())} duplicated (ID, GENE) row(s) dropped (first repeat at line {line})")
    return table[~exact].reset_index(drop=True)


@dataclass(frozen=True)
class Mask:
    """One mask definition: ``name`` collects variants whose annotation is in ``annotations``.

    ``source`` and ``line`` say where it was defined (for error messages); empty/0 when built in code.
    """

    name: str
    annotations: tuple[str, ...]
    line: int = 0
    source: str = ""


def read_masks(path: str | os.PathLike) -> list[Mask]:
    """Read mask definitions ``NAME ANNOT1,ANNOT2,...`` (regenie ``--mask-def``), in file order."""
    path = Path(path)
    masks: list[Mask] = []
    seen: dict[str, int] = {}
    for number, fields in _records(path):
        # "M2 pLoF, missense" splits into three fields: the annotation list is everything after the name.
        annotations = tuple(a for a in ",".join(fields[1:]).split(",") if a)
        if not annotations:
            raise BurdenInputError(
                f"{path}: line {number}: mask {fields[0]!r} lists no annotations; "
                "expected 'NAME ANNOT1,ANNOT2' e.g. 'Mask2 pLoF,missense'"
            )
        if fields[0] in seen:
            raise BurdenInputError(
                f"{path}: line {number}: mask name {fields[0]!r} already defined on line {seen[fields[0]]}; "
                "mask names must be unique"
            )
        seen[fields[0]] = number
        masks.append(Mask(fields[0], tuple(dict.fromkeys(annotations)), number, str(path)))
    if not masks:
        raise BurdenInputError(f"{path}: no mask definitions; expected lines like 'Mask1 pLoF'")
    return masks


def check_masks(
    masks: Sequence[Mask], annotations: AnnotationTable, mask_path: str | os.PathLike = ""
) -> None:
    """Raise if a mask names an annotation that no row of the annotation file carries (a typo, usually)."""
    known = annotations.annotations
    for mask in masks:
        unknown = [a for a in mask.annotations if a not in known]
        if unknown:
            where = f"{mask.source}: line {mask.line}: " if mask.source else ""
            raise BurdenInputError(
                f"{where}mask {mask.name!r} uses annotation(s) {unknown} that do not occur in "
                f"{annotations.path}; annotations there: {sorted(known)[:20]}"
            )


def read_set_list(path: str | os.PathLike) -> pd.DataFrame:
    """Read a regenie set list ``GENE CHROM POS VAR1,VAR2,...``.

    Returns:
        one row per (gene, variant): columns GENE CHROM POS ID LINE, in file order.
    """
    path = Path(path)
    rows: list[tuple[str, str, int, str, int]] = []
    seen: dict[str, int] = {}
    for number, fields in _records(path, header_names=("GENE", "SET")):
        if len(fields) < 4:
            raise BurdenInputError(
                f"{path}: line {number} has {len(fields)} fields; expected 'GENE CHROM POS VAR1,VAR2,...'"
            )
        gene, chrom, pos = fields[:3]
        try:
            position = int(pos)
        except ValueError:
            raise BurdenInputError(f"{path}: line {number}: position {pos!r} is not an integer") from None
        if gene in seen:
            raise BurdenInputError(
                f"{path}: line {number}: set {gene!r} already listed on line {seen[gene]}; list each set once"
            )
        seen[gene] = number
        variants = [v for v in ",".join(fields[3:]).split(",") if v]
        rows.extend((gene, chrom, position, v, number) for v in dict.fromkeys(variants))
    if not rows:
        raise BurdenInputError(f"{path}: no sets; expected lines 'GENE CHROM POS VAR1,VAR2,...'")
    return pd.DataFrame(rows, columns=["GENE", "CHROM", "POS", "ID", "LINE"])


def parse_aaf_bins(bins: str | float | Sequence[str | float]) -> tuple[float, ...]:
    """Parse AAF upper bounds like regenie ``--aaf-bins 0.01,0.001`` (``all`` = 1): sorted, unique, in (0, 1].

    >>> parse_aaf_bins("0.01,0.001")
    (0.001, 0.01)
    """
    items = (
        bins.split(",") if isinstance(bins, str) else [bins] if isinstance(bins, int | float) else list(bins)
    )
    values = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            value = 1.0 if text.lower() == "all" else float(text)
        except ValueError:
            raise BurdenInputError(
                f"AAF bin {text!r} is not a number; give e.g. --aaf-bins 0.01,0.001"
            ) from None
        if not (0.0 < value <= 1.0):
            raise BurdenInputError(f"AAF bin {text!r} is outside (0, 1]; give e.g. --aaf-bins 0.01,0.001")
        values.append(value)
    if not values:
        raise BurdenInputError("no AAF bins given; give e.g. --aaf-bins 0.01,0.001")
    return tuple(sorted(set(values)))


def aaf_label(cutoff: float) -> str:
    """Label of an AAF bin in column IDs, like regenie: ``0.01``, ``0.001``; 1 is ``all``."""
    return "all" if cutoff >= 1.0 else f"{cutoff:g}"
