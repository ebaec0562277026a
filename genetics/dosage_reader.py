"""What the genotype readers share.

:class:`GenotypeFileset` (every reader: .bed, .pgen, BGEN): sample and variant counts from ``fam`` and
``bim``, and chunked streaming through the reader's ``read``. :class:`DosageReader` (.pgen, BGEN): a
subclass provides ``_decode_into(variants, out)``, which fills ``out`` (m, N) with the ALT dosage of each
variant (NaN = missing); reading and the GWAS runner's missing-as-zero read follow from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd


class GenotypeFileset:
    """Base of every genotype reader: ``fam`` (samples × FID IID …) and ``bim`` (variants × CHROM ID …)
    tables, and a ``read(variants, samples) -> (n, m)`` method."""

    fam: pd.DataFrame
    bim: pd.DataFrame

    @property
    def n_samples(self) -> int:
        return len(self.fam)

    @property
    def n_variants(self) -> int:
        return len(self.bim)

    def read(
        self, variants: slice | np.ndarray | None = None, samples: np.ndarray | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def iter_chunks(
        self, chunk_size: int = 4096, variants: np.ndarray | None = None, samples: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (variant_indices (m,), block (n, m)) over ``variants`` in chunks of ``chunk_size``."""
        if variants is None:
            variants = np.arange(self.n_variants)
        variants = np.asarray(variants, dtype=np.int64)
        for start in range(0, variants.size, chunk_size):
            index = variants[start : start + chunk_size]
            yield index, self.read(index, samples)


class DosageReader(GenotypeFileset):
    """Base of :class:`genetics.pgen.PgenFileset` and :class:`genetics.bgen.BgenFileset`."""

    def _decode_into(self, variants: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` (m, N) with the dosages of ``variants`` (m,), NaN = missing."""
        raise NotImplementedError

    def read(
        self, variants: slice | np.ndarray | None = None, samples: np.ndarray | None = None
    ) -> np.ndarray:
        """Read a dosage block.

        Args:
            variants: slice or (m,) int indices into the variant rows (default: all).
            samples: (n,) int indices into the sample rows, in the wanted order (default: all).

        Returns:
            (n, m) float32 samples × variants expected ALT count, NaN = missing.
        """
        if variants is None:
            variants = slice(0, self.n_variants)
        if isinstance(variants, slice):
            variants = np.arange(self.n_variants)[variants]
        variants = np.asarray(variants, dtype=np.int64)
        out = np.empty((variants.size, self.n_samples), dtype=np.float32)
        self._decode_into(variants, out)
        block = out.T
        return block if samples is None else block[np.asarray(samples, dtype=np.int64)]

    def read_zero_missing(
        self, variants: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All samples of ``variants`` as float64 with missing = 0, plus the missing coordinates.

        Args:
            out: optional reusable C-ordered float64 buffer of at least m × N values.

        Returns:
            (dosage (N, m) float64 view, missing_samples (e,), missing_variants (e,) positions in the chunk).
        """
        variants = np.asarray(variants, dtype=np.int64)
        m, n = variants.size, self.n_samples
        target = np.empty((m, n)) if out is None else out.reshape(-1)[: m * n].reshape(m, n)
        self._decode_into(variants, target)
        missing = np.isnan(target)
        if not missing.any():  # imputed files rarely miss a call: skip the slower coordinate search
            empty = np.zeros(0, dtype=np.int64)
            return target.T, empty, empty
        missing_variants, missing_samples = np.nonzero(missing)
        target[missing_variants, missing_samples] = 0.0
        return target.T, missing_samples, missing_variants


__all__ = ["DosageReader", "GenotypeFileset"]
