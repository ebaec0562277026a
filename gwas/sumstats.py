"""Summary-statistics schema and writers: parquet (canonical), plink2 ``.glm.linear``, GWAS-SSF TSV.

The canonical table is long format, one row per (phenotype, variant), with plink2's column names
(see ARCHITECTURE.md). LOG10_P = −log10 P stays finite when P underflows to 0.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from genetics.atomic import atomic_path

# Every row has every column (a statistic that cannot be computed is NaN, with its ERRCODE), so the fields are
# required: the parquet writer then encodes no definition levels (16% of its time at P = 256).
SUMSTATS_SCHEMA = pa.schema(
    [
        pa.field(name, kind, nullable=False)
        for name, kind in [
            ("phenotype", pa.string()),
            ("CHROM", pa.string()),
            ("POS", pa.int64()),
            ("ID", pa.string()),
            ("REF", pa.string()),
            ("ALT", pa.string()),
            ("A1", pa.string()),
            ("A1_FREQ", pa.float64()),
            ("OBS_CT", pa.int64()),
            ("BETA", pa.float64()),
            ("SE", pa.float64()),
            ("T_STAT", pa.float64()),
            ("P", pa.float64()),
            ("LOG10_P", pa.float64()),
            ("ERRCODE", pa.string()),
        ]
    ]
)
SUMSTATS_COLUMNS = SUMSTATS_SCHEMA.names

PLINK2_HEADER = "#CHROM\tPOS\tID\tREF\tALT\tA1\tA1_FREQ\tTEST\tOBS_CT\tBETA\tSE\tT_STAT\tP\tERRCODE"
GWAS_SSF_COLUMNS = (
    "chromosome",
    "base_pair_location",
    "effect_allele",
    "other_allele",
    "beta",
    "standard_error",
    "effect_allele_frequency",
    "p_value",
    "neg_log_10_p_value",
    "variant_id",
    "n",
)


def _format_g(values: np.ndarray) -> list[str]:
    """plink2-style number printing: 6 significant digits, NA for missing."""
    return ["NA" if not np.isfinite(v) else f"{v:.6g}" for v in values]


def write_plink2_glm(frame: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write one phenotype's rows as a plink2 ``.glm.linear`` file (``hide-covar cols=+a1freq`` layout)."""
    columns = [
        frame["CHROM"].astype(str),
        frame["POS"].astype(str),
        frame["ID"],
        frame["REF"],
        frame["ALT"],
        frame["A1"],
        pd.Series(_format_g(frame["A1_FREQ"].to_numpy()), index=frame.index),
        pd.Series("ADD", index=frame.index),
        frame["OBS_CT"].astype(str),
        *(pd.Series(_format_g(frame[c].to_numpy()), index=frame.index) for c in ("BETA", "SE", "T_STAT")),
        pd.Series(_p_strings(frame), index=frame.index),
        frame["ERRCODE"],
    ]
    lines = pd.concat(columns, axis=1).astype(str).agg("\t".join, axis=1)
    with atomic_path(target) as tmp:
        with open(tmp, "w") as handle:
            handle.write(PLINK2_HEADER + "\n")
            handle.writelines(line + "\n" for line in lines)


def _p_strings(frame: pd.DataFrame) -> list[str]:
    """P as text; underflowed P is written from LOG10_P (e.g. ``1.5e-350``) rather than 0."""
    out = []
    for p, lp in zip(frame["P"].to_numpy(), frame["LOG10_P"].to_numpy(), strict=True):
        if not np.isfinite(lp):
            out.append("NA")
        elif p > 0:
            out.append(f"{p:.6g}")
        else:
            exponent = np.floor(-lp)
            out.append(f"{10 ** (-lp - exponent):.5g}e{int(exponent)}")
    return out


def write_gwas_ssf(frame: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write one phenotype's rows as a GWAS-SSF tab-separated file (GWAS Catalog summary-statistics format)."""
    table = pd.DataFrame(
        {
            "chromosome": frame["CHROM"].astype(str),
            "base_pair_location": frame["POS"],
            "effect_allele": frame["A1"],
            "other_allele": frame["REF"].where(frame["A1"] != frame["REF"], frame["ALT"]),
            "beta": frame["BETA"],
            "standard_error": frame["SE"],
            "effect_allele_frequency": frame["A1_FREQ"],
            "p_value": _p_strings(frame),
            "neg_log_10_p_value": frame["LOG10_P"],
            "variant_id": frame["ID"],
            "n": frame["OBS_CT"],
        }
    )[list(GWAS_SSF_COLUMNS)]
    with atomic_path(target) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")
