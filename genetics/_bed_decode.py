"""Decoding of PLINK 1 SNP-major .bed bytes into dosages.

Each byte holds four genotypes, lowest two bits first. Codes count the `.bim` column-5 allele (A1/ALT):
``00`` → 2, ``01`` → missing (NaN), ``10`` → 1, ``11`` → 0.
"""

from __future__ import annotations

import numpy as np

BED_MAGIC = b"\x6c\x1b"
SNP_MAJOR = b"\x01"
HEADER_BYTES = 3

_CODE_TO_DOSAGE = np.array([2.0, np.nan, 1.0, 0.0], dtype=np.float32)
# (256, 4): byte value → the four dosages it encodes, in sample order.
_BYTE_TO_DOSAGES = _CODE_TO_DOSAGE[(np.arange(256)[:, None] >> (2 * np.arange(4))[None, :]) & 3]
_DOSAGE_TO_CODE = {2: 0, 1: 2, 0: 3}


def bytes_per_variant(n_samples: int) -> int:
    """Bytes one variant occupies in a SNP-major .bed file."""
    return (n_samples + 3) // 4


def decode_variants(raw: np.ndarray, n_samples: int, samples: np.ndarray | None = None) -> np.ndarray:
    """Decode raw .bed rows into a samples × variants float32 dosage block.

    Args:
        raw: (m, bytes_per_variant) uint8, one row per variant.
        n_samples: samples in the file (the padding in the last byte is cut).
        samples: optional (n,) int indices of samples to keep, in output order.

    Returns:
        (n, m) float32 dosage of the A1 allele, NaN where missing (a transposed, Fortran-ordered view).
    """
    dosages = _BYTE_TO_DOSAGES[raw].reshape(raw.shape[0], -1)[:, :n_samples]  # (m, N)
    if samples is not None:
        dosages = dosages[:, samples]
    return dosages.T


def encode_variants(dosage: np.ndarray) -> np.ndarray:
    """Encode a samples × variants dosage block (0/1/2, NaN = missing) into .bed rows.

    Returns:
        (m, bytes_per_variant(n)) uint8.
    """
    dosage = np.asarray(dosage, dtype=np.float64)
    n, m = dosage.shape
    codes = np.full((m, 4 * bytes_per_variant(n)), 0, dtype=np.uint8)
    d = dosage.T
    missing = np.isnan(d)
    valid = np.where(missing, 0, d)
    if not np.all(np.isin(valid, (0.0, 1.0, 2.0))):
        raise ValueError("hard-call dosages must be 0, 1, 2 or NaN")
    block = np.select([missing, valid == 2, valid == 1], [1, 0, 2], default=3).astype(np.uint8)
    codes[:, :n] = block
    codes = codes.reshape(m, -1, 4)
    return (codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)).astype(
        np.uint8
    )
