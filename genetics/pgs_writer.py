"""Write PGS Catalog scoring files (format 2.0), the layout :func:`genetics.pgs_catalog.read_scoring_file` reads.

A file is the title line ``###PGS CATALOG SCORING FILE``, ``#key=value`` header lines (``format_version``,
``pgs_id``, ``pgs_name``, ``trait_reported``, ``genome_build``, ``variants_number``, ``weight_type``, then any
extra keys), one tab-separated column line and one row per variant. See
https://www.pgscatalog.org/downloads/#scoring_columns. Output is written atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.atomic import atomic_write_text

SCORING_COLUMNS = ("rsID", "chr_name", "chr_position", "effect_allele", "other_allele", "effect_weight")
TITLE = "###PGS CATALOG SCORING FILE - see https://www.pgscatalog.org/downloads/#dl_ftp_scoring for details"
FORMAT_VERSION = "2.0"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_text(name: str, value: str) -> str:
    value = str(value)
    if "\n" in value or "\r" in value:
        raise ValueError(f"header {name}={value!r} must be one line")
    return value


def format_weights(weights: np.ndarray, digits: int = 8) -> list[str]:
    """Format effect weights with ``digits`` significant digits (shortest form, deterministic).

    >>> format_weights(np.array([0.5, -1.23456789012e-3, 0.0]))
    ['0.5', '-0.0012345679', '0']
    """
    return [
        np.format_float_positional(w, precision=digits, unique=False, fractional=False, trim="-")
        for w in np.asarray(weights, dtype=np.float64)
    ]


def write_scoring_file(
    path: str | os.PathLike,
    variants: pd.DataFrame,
    pgs_id: str,
    pgs_name: str = "",
    trait_reported: str = "",
    genome_build: str = "NR",
    weight_type: str = "beta",
    extra_header: Mapping[str, str] | None = None,
) -> Path:
    """Write one scoring file.

    Args:
        path: output file (plain text; ``.txt`` is the catalog's own suffix once unzipped).
        variants: (rows,) table with ``effect_allele`` and ``effect_weight`` plus ``rsID`` and/or
            ``chr_name`` + ``chr_position``; ``other_allele`` optional. Columns are written in
            :data:`SCORING_COLUMNS` order, absent ones left out; other columns are ignored.
        pgs_id: ``#pgs_id`` (no whitespace).
        genome_build: ``GRCh37``/``GRCh38``/``NCBI36``, or ``NR`` (not reported).
        weight_type: ``#weight_type`` (``beta``, ``OR``, ``log(OR)``, ``NR``...): how to read the weights.
        extra_header: further ``#key=value`` lines (e.g. ``trait_mapped``, ``license``).

    Returns:
        the path written.

    >>> import tempfile, pathlib
    >>> from genetics.pgs_catalog import read_scoring_file
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "SYN1.txt"
    >>> v = pd.DataFrame({"rsID": ["1:10"], "chr_name": ["1"], "chr_position": [10],
    ...                   "effect_allele": ["A"], "other_allele": ["G"], "effect_weight": [0.25]})
    >>> sf = read_scoring_file(write_scoring_file(p, v, "SYN1", trait_reported="toy"))
    >>> sf.pgs_id, sf.variants["effect_weight"].tolist(), sf.header["weight_type"]
    ('SYN1', [0.25], 'beta')
    """
    if not pgs_id or any(ch.isspace() for ch in pgs_id):
        raise ValueError(f"pgs_id {pgs_id!r} is empty or contains whitespace")
    for required in ("effect_allele", "effect_weight"):
        if required not in variants.columns:
            raise ValueError(f"variants need column {required!r}; found {list(variants.columns)}")
    if "rsID" not in variants.columns and not {"chr_name", "chr_position"} <= set(variants.columns):
        raise ValueError("variants need rsID or chr_name + chr_position to be matched to genotypes")
    weights = variants["effect_weight"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{pgs_id}: effect weights must be finite")
    header = {
        "format_version": FORMAT_VERSION,
        "pgs_id": pgs_id,
        "pgs_name": pgs_name,
        "trait_reported": trait_reported,
        "genome_build": genome_build,
        "variants_number": str(len(variants)),
        "weight_type": weight_type,
    }
    for key, value in (extra_header or {}).items():
        if not _KEY.match(key) or key in header:
            raise ValueError(f"extra header key {key!r} is not a new identifier")
        header[key] = value
    lines = [TITLE, "##POLYGENIC SCORE (PGS) INFORMATION"]
    lines += [f"#{key}={_check_text(key, value)}" for key, value in header.items()]
    columns = [c for c in SCORING_COLUMNS if c in variants.columns]
    table = pd.DataFrame({c: variants[c].astype(str).to_numpy() for c in columns if c != "effect_weight"})
    table["effect_weight"] = format_weights(weights)
    table = table[columns]
    for column in columns:
        if table[column].str.contains(r"[\t\n\r]").any():
            raise ValueError(f"{pgs_id}: column {column} holds a tab or newline")
    lines.append("\t".join(columns))
    lines += ["\t".join(row) for row in table.itertuples(index=False, name=None)]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
