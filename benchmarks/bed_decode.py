"""Decode rate of the two .bed readers behind PlinkFileset: the numpy lookup table and pandas-plink.

Usage: python benchmarks/bed_decode.py [--n 10000] [--m 20000] [--chunk 2048]
Prints genotypes decoded per second for each backend, and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from genetics.plink import PlinkFileset, write_plink


def _rate(fileset: PlinkFileset, chunk: int) -> float:
    start = time.perf_counter()
    total = 0.0
    for _, block in fileset.iter_chunks(chunk_size=chunk):
        total += float(block[0, 0]) if block.size else 0.0
    return fileset.n_samples * fileset.n_variants / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--m", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder) / "bench"
        g = rng.integers(0, 3, size=(args.n, args.m)).astype(np.float32)
        g[rng.random(g.shape) < 0.01] = np.nan
        write_plink(prefix, g)
        del g
        rates = {b: _rate(PlinkFileset(prefix, backend=b), args.chunk) for b in ("numpy", "pandas-plink")}
    print(f"N={args.n} M={args.m} chunk={args.chunk}")
    print(f"{'backend':<14}{'genotypes/s':>16}")
    for backend, rate in rates.items():
        print(f"{backend:<14}{rate:>16,.0f}")
    print(f"numpy / pandas-plink: {rates['numpy'] / rates['pandas-plink']:.1f}x")


if __name__ == "__main__":
    main()
