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
# Same table with missing decoded as 0, for blocks whose missing entries are reported separately.
BYTE_TO_DOSAGES_ZERO = np.nan_to_num(_BYTE_TO_DOSAGES).astype(np.float64)
# (256,) whether a byte holds at least one missing call, and (256, 4) which of its four slots do.
_BYTE_MISSING_SLOTS = ((np.arange(256)[:, None] >> (2 * np.arange(4))[None, :]) & 3) == 1
_BYTE_HAS_MISSING = _BYTE_MISSING_SLOTS.any(axis=1)


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
    # mode="clip" skips numpy's bounds check (a uint8 index is always in range): ~3x faster than [raw]
    dosages = np.take(_BYTE_TO_DOSAGES, raw, axis=0, mode="clip").reshape(raw.shape[0], -1)[:, :n_samples]
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


def missing_coordinates(raw: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Where raw .bed rows hold missing calls, found from the bytes alone (only bytes holding one are
    expanded, so no samples × variants mask is built).

    Returns:
        (missing_samples (e,), missing_variants (e,)) with sample indices < n_samples.
    """
    variant_at, byte_at = np.nonzero(np.take(_BYTE_HAS_MISSING, raw, mode="clip"))
    slots = _BYTE_MISSING_SLOTS[raw[variant_at, byte_at]]  # (e_bytes, 4)
    entry, slot = np.nonzero(slots)
    samples = byte_at[entry] * 4 + slot
    keep = samples < n_samples  # the last byte's padding is not a sample
    return samples[keep], variant_at[entry][keep]


def decode_variants_zero_missing(
    raw: np.ndarray, n_samples: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every sample of raw .bed rows into float64 with missing calls as 0, plus where they are.

    Args:
        raw: (m, B) uint8 rows, B = bytes_per_variant(n_samples).
        out: optional reusable (m_max, 4B) float64 C-ordered buffer with m_max >= m.

    Returns:
        (dosage (n_samples, m) float64 view with missing = 0, missing_samples (e,), missing_variants (e,)).
    """
    m, n_bytes = raw.shape
    if out is None:
        out = np.empty((m, 4 * n_bytes))
    target = out[:m].reshape(m, n_bytes, 4)
    np.take(BYTE_TO_DOSAGES_ZERO, raw, axis=0, out=target, mode="clip")  # uint8 index: always in range
    return (out[:m, :n_samples].T, *missing_coordinates(raw, n_samples))
