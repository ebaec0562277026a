"""Phenotype and covariate matrices aligned to the .fam, and grouping of phenotypes by missingness.

Missing values: ``NA``, ``nan``, empty and ``-9`` (plink2's default missing phenotype code, also applied
to covariates as plink2 does) become NaN. A covariate column with any non-numeric value is categorical and
is expanded to indicator columns for every level but the first in sorted order (plink2's split).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genetics.samples import match_samples, read_sample_table
from gwas.errors import GwasInputError

MISSING_CODES = ("", "NA", "na", "NaN", "nan", "-9", "-9.0", ".")


@dataclass
class SampleMatrix:
    """A (N_fam, p) float64 matrix in .fam order (NaN where missing or absent) with column names."""

    values: np.ndarray
    names: list[str]


def _to_float(column: pd.Series, source: str, name: str) -> np.ndarray:
    try:  # fast path: every value parses (missing codes included: "NA"/"nan" → NaN, "-9" handled below)
        values = pd.to_numeric(column.where(column != "", "nan")).to_numpy(dtype=np.float64)
        values[values == -9] = np.nan
        if not np.isinf(values).any():
            return values
    except (ValueError, TypeError):
        pass
    text = column.astype(str).str.strip()
    missing = text.isin(MISSING_CODES)
    values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ~missing.to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise GwasInputError(
            f"{source}: column {name!r} has the non-numeric value {text.iloc[row]!r} (data row {row + 1}); "
            "phenotypes must be numbers with NA for missing"
        )
    if np.isinf(values).any():
        raise GwasInputError(f"{source}: column {name!r} contains infinite values; set them to NA")
    return values


def _select_columns(table: pd.DataFrame, names: list[str] | None, source: str, option: str) -> list[str]:
    available = [c for c in table.columns if c not in ("FID", "IID")]
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise GwasInputError(f"{source}: no column(s) {unknown} for {option}; available: {available[:20]}")
    return list(names)


def _aligned(fam: pd.DataFrame, table: pd.DataFrame, values: np.ndarray, source: str) -> np.ndarray:
    match = match_samples(fam, table, source)
    out = np.full((len(fam), values.shape[1]), np.nan)
    out[match.fam_index] = values[match.table_index]
    return out


def load_phenotypes(
    path: str, fam: pd.DataFrame, names: list[str] | None = None, table: pd.DataFrame | None = None
) -> SampleMatrix:
    """Read phenotype columns (all non-ID columns by default) aligned to ``fam``."""
    table = read_sample_table(path, infer_types=True) if table is None else table
    columns = _select_columns(table, names, str(path), "--pheno-name")
    if not columns:
        raise GwasInputError(f"{path}: no phenotype columns besides FID/IID")
    values = np.column_stack(
        [
            table[c].to_numpy(dtype=np.float64)
            if pd.api.types.is_numeric_dtype(table[c])
            else _to_float(table[c], str(path), c)
            for c in columns
        ]
    )
    values[values == -9] = np.nan
    if np.isinf(values).any():
        column = columns[int(np.flatnonzero(np.isinf(values).any(axis=0))[0])]
        raise GwasInputError(f"{path}: column {column!r} contains infinite values; set them to NA")
    return SampleMatrix(_aligned(fam, table, values, str(path)), columns)


def load_covariates(
    path: str,
    fam: pd.DataFrame,
    names: list[str] | None = None,
    variance_standardize: bool = False,
    table: pd.DataFrame | None = None,
) -> SampleMatrix:
    """Read covariates aligned to ``fam``; categorical columns become level indicators."""
    table = read_sample_table(path, infer_types=True) if table is None else table
    columns = _select_columns(table, names, str(path), "--covar-name")
    blocks, out_names = [], []
    for name in columns:
        column = table[name]
        if pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=np.float64)
            blocks.append(np.where(values == -9, np.nan, values)[:, None])
            out_names.append(name)
            continue
        text = column.astype(str).str.strip()
        missing = text.isin(MISSING_CODES)
        numeric = pd.to_numeric(text.where(~missing), errors="coerce")
        if not (numeric.isna() & ~missing).any():
            blocks.append(numeric.to_numpy(dtype=np.float64)[:, None])
            out_names.append(name)
            continue
        levels = sorted(text[~missing].unique())
        for level in levels[1:]:
            indicator = (text == level).astype(np.float64).to_numpy()
            indicator[missing.to_numpy()] = np.nan
            blocks.append(indicator[:, None])
            out_names.append(f"{name}={level}")
    values = np.hstack(blocks) if blocks else np.empty((len(table), 0))
    aligned = _aligned(fam, table, values, str(path))
    if variance_standardize:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(aligned, axis=0), np.nanstd(aligned, axis=0, ddof=1)
        std[~(std > 0)] = 1.0
        aligned = (aligned - mean) / std
    return SampleMatrix(aligned, out_names)


@dataclass
class PhenotypeGroup:
    """Phenotypes analysed together: same non-missing samples.

    Attributes:
        samples: (n,) .fam row indices used by every phenotype of the group.
        phenotypes: (P,) column indices into the phenotype matrix.
    """

    samples: np.ndarray
    phenotypes: np.ndarray


def group_by_missingness(
    phenotypes: np.ndarray, covariates: np.ndarray, sample_mask: np.ndarray | None = None
) -> list[PhenotypeGroup]:
    """Group phenotype columns whose usable samples (phenotype and all covariates present) coincide.

    Args:
        phenotypes: (N, P) with NaN; covariates: (N, c) with NaN; sample_mask: (N,) samples allowed.
    """
    usable = ~np.isnan(phenotypes) & ~np.isnan(covariates).any(axis=1, keepdims=True)
    if sample_mask is not None:
        usable &= sample_mask[:, None]
    groups: dict[bytes, list[int]] = {}
    for j in range(phenotypes.shape[1]):
        groups.setdefault(np.packbits(usable[:, j]).tobytes(), []).append(j)
    return [
        PhenotypeGroup(np.flatnonzero(usable[:, cols[0]]), np.asarray(cols, dtype=np.int64))
        for cols in groups.values()
    ]
