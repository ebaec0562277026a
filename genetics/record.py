"""The per-person genetic record: every genetic modality of a person, batched for a model.

Contract (relied on by ``contig``'s dataset and model):

- Modality names are ``"snp"``, ``"pgs"`` and ``"burden"``, always in that order; a record holds the
  subset it was given (``record.modalities``).
- ``record.batch(iids)`` returns ``{modality: (B, F_modality) float32, "mask": (B, M) bool}`` with
  ``M = len(record.modalities)``; mask column j belongs to ``record.modalities[j]``.
- A person lacking a modality (absent from that table or SNP matrix) gets a row of zeros and mask False.
  Values are never NaN: absence is expressed by leaving the person out of the table, and a NaN (or
  infinity) in the table for a person who is present raises :class:`RecordError` naming modality,
  IID and column. Fill such values upstream (or drop the person from that table).
- ``record.item(iid)`` gives the same dict for one person, (F_modality,) and (M,); a list of items is
  batched by :func:`collate_genetic` (usable as a DataLoader ``collate_fn``), equal to ``batch``.
- Tensors are on the CPU unless ``device`` is given; the trainer moves them.

>>> import pandas as pd
>>> pgs = pd.DataFrame({"IID": ["a", "b"], "PGS1": [0.5, -1.0]})
>>> record = GeneticRecord(pgs=pgs)
>>> out = record.batch(["b", "z"])
>>> out["pgs"].tolist(), out["mask"].tolist()
([[-1.0], [0.0]], [[True], [False]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from genetics.errors import GeneticsError, SampleMismatchError
from genetics.snp_modality import SnpMatrix

MODALITIES = ("snp", "pgs", "burden")
MASK_KEY = "mask"
ID_COLUMNS = ("FID", "IID")


class RecordError(GeneticsError):
    """A modality table has a missing, non-finite or non-numeric value for a person who is present."""


class ModalitySource(Protocol):
    """What the record needs from a modality: IID lookup and row decoding."""

    @property
    def num_features(self) -> int: ...

    def index_of(self, iids: Sequence[str] | np.ndarray) -> np.ndarray: ...

    def rows(self, person_indices: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class ScoreTable:
    """One modality's per-person scores: (n, F) float32 values (dense or scipy CSR) keyed by unique IID."""

    modality: str
    iid: np.ndarray
    columns: tuple[str, ...]
    values: np.ndarray | sp.csr_matrix

    def __post_init__(self) -> None:
        n, f = self.values.shape
        if self.iid.size != n or len(self.columns) != f:
            raise ValueError(
                f"{self.modality}: {self.iid.size} IIDs and {len(self.columns)} columns for {n} × {f}"
            )
        if f == 0:
            raise RecordError(f"{self.modality} table has no score columns besides the ID columns")
        index = pd.Index(self.iid)
        if index.has_duplicates:
            raise SampleMismatchError(
                f"{self.modality} table: IID {str(index[index.duplicated()][0])!r} appears on several rows; "
                "keep one row per person"
            )
        object.__setattr__(self, "_index", index)
        data = self.values.data if sp.issparse(self.values) else self.values
        if not np.isfinite(data).all():
            dense = self.values.toarray() if sp.issparse(self.values) else self.values
            bad = np.argwhere(~np.isfinite(dense))
            row, col = bad[0]
            raise RecordError(
                f"{self.modality} table: IID {str(self.iid[row])!r}, column {str(self.columns[col])!r} is "
                f"{dense[row, col]} ({len(bad)} non-finite value(s) in all); a person present in a table "
                "must have every value: fill them upstream, or drop the person (the modality is then absent)"
            )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame | pl.DataFrame,
        modality: str,
        columns: Sequence[str] | None = None,
    ) -> ScoreTable:
        """Table from a pandas or polars frame with an ``IID`` column; ``columns`` default: not FID/IID."""
        names = [str(c) for c in frame.columns]
        if "IID" not in names:
            raise RecordError(f"{modality} table has no IID column (columns: {names[:6]})")
        columns = [c for c in names if c not in ID_COLUMNS] if columns is None else [str(c) for c in columns]
        absent = [c for c in columns if c not in names]
        if absent:
            raise RecordError(f"{modality} table has no column(s) {absent[:3]}")
        if isinstance(frame, pl.DataFrame):
            iid = frame.get_column("IID").cast(pl.String).to_numpy().astype(str)
            numeric = [frame.schema[c].is_numeric() or frame.schema[c] == pl.Boolean for c in columns]
            to_values = lambda: frame.select(columns).cast(pl.Float64).to_numpy()  # noqa: E731
        else:
            iid = frame["IID"].astype(str).to_numpy(dtype=str)
            numeric = [
                pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
                for c in columns
            ]
            to_values = lambda: frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)  # noqa: E731
        if not all(numeric):
            bad = columns[numeric.index(False)]
            raise RecordError(f"{modality} table: column {bad!r} is not numeric; convert or drop it")
        values = to_values() if columns else np.zeros((len(iid), 0))
        with np.errstate(over="ignore"):
            values = values.astype(np.float32)  # overflow → inf, reported below
        return cls(modality, iid, tuple(columns), values)

    @property
    def num_features(self) -> int:
        return len(self.columns)

    def index_of(self, iids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(b,) int64 row of each IID, -1 where absent."""
        return self._index.get_indexer(pd.Index(np.asarray(iids, dtype=str))).astype(np.int64)

    def rows(self, person_indices: np.ndarray) -> np.ndarray:
        """(b, F) float32 rows."""
        block = self.values[np.asarray(person_indices, dtype=np.int64)]
        return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float32)


class GeneticRecord:
    """All genetic modalities of a cohort, looked up by IID (see the module docstring for the contract)."""

    def __init__(
        self,
        snp: SnpMatrix | None = None,
        pgs: pd.DataFrame | pl.DataFrame | ScoreTable | None = None,
        burden: pd.DataFrame | pl.DataFrame | ScoreTable | None = None,
    ):
        given = {"snp": snp, "pgs": pgs, "burden": burden}
        self._sources: dict[str, ModalitySource] = {}
        for name in MODALITIES:
            source = given[name]
            if source is None:
                continue
            if isinstance(source, pd.DataFrame | pl.DataFrame):
                source = ScoreTable.from_frame(source, name)
            self._sources[name] = source
        if not self._sources:
            raise ValueError(f"a genetic record needs at least one modality of {MODALITIES}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities held, in canonical order; the mask columns follow it."""
        return tuple(self._sources)

    @property
    def num_features(self) -> dict[str, int]:
        """F per modality: the ``in_features`` of its encoder."""
        return {name: source.num_features for name, source in self._sources.items()}

    def feature_names(self, modality: str) -> list[str]:
        """Names of a modality's input columns: variant IDs (SNP), score or burden column names."""
        source = self._sources[modality]
        names = source.variant_ids if isinstance(source, SnpMatrix) else source.columns
        return [str(n) for n in names]

    def availability(self, iids: Sequence[str] | np.ndarray) -> pd.DataFrame:
        """IID plus one bool column per modality: which people have which modality (for reports)."""
        iids = np.asarray(iids, dtype=str)
        table = {name: source.index_of(iids) >= 0 for name, source in self._sources.items()}
        return pd.DataFrame({"IID": iids, **table})

    def batch(
        self, iids: Sequence[str] | np.ndarray, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """``{modality: (B, F) float32, "mask": (B, M) bool}`` for ``iids`` (absent → zeros, False)."""
        iids = np.asarray(iids, dtype=str).reshape(-1)
        mask = np.zeros((iids.size, len(self._sources)), dtype=bool)
        out: dict[str, torch.Tensor] = {}
        for j, (name, source) in enumerate(self._sources.items()):
            position = source.index_of(iids)
            present = position >= 0
            values = np.zeros((iids.size, source.num_features), dtype=np.float32)
            if present.any():
                values[present] = source.rows(position[present])
            if not np.isfinite(values).all():
                row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
                raise RecordError(
                    f"{name}: non-finite value decoded for IID {str(iids[row])!r}; rebuild that modality"
                )
            mask[:, j] = present
            out[name] = torch.from_numpy(values)
        out[MASK_KEY] = torch.from_numpy(mask)
        if device is not None:
            out = {key: value.to(device) for key, value in out.items()}
        return out

    def item(self, iid: str) -> dict[str, torch.Tensor]:
        """One person: ``{modality: (F,) float32, "mask": (M,) bool}``."""
        return {key: value[0] for key, value in self.batch([iid]).items()}


def collate_genetic(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack ``record.item`` dicts into ``{modality: (B, F), "mask": (B, M)}``; keys and shapes must agree."""
    if not items:
        raise ValueError("cannot collate an empty list of genetic records")
    keys = list(items[0])
    for i, item in enumerate(items):
        if list(item) != keys:
            raise ValueError(f"record {i} has keys {list(item)} but record 0 has {keys}")
    return {key: torch.stack([item[key] for item in items]) for key in keys}


class GeneticRecordDataset(Dataset):
    """Map-style dataset over ``iids`` yielding ``record.item(iid)``; batch with ``collate_genetic``."""

    def __init__(self, record: GeneticRecord, iids: Sequence[str] | np.ndarray):
        self.record = record
        self.iids = np.asarray(iids, dtype=str)

    def __len__(self) -> int:
        return int(self.iids.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.record.item(str(self.iids[index]))
