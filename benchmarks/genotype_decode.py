"""Decode rate of the three genotype formats on the same dummy data: .bed, .pgen (dosages) and 8-bit BGEN.

Usage: python benchmarks/genotype_decode.py [--n 10000] [--m 5000] [--chunk 2048] [--threads 1]
Needs plink2 on PATH: ``plink2 --dummy N M dosage-freq=0.5 --make-pgen``, then ``--make-bed`` (hard calls)
and ``--export bgen-1.2 bits=8`` of the same fileset. Prints genotypes (samples × variants) decoded per
second through each reader's ``read_zero_missing`` (the GWAS runner's path) on ``--threads`` chunk threads,
and each rate relative to .bed. The .bed holds plink2's hard calls of the same data: a dosage further than
0.1 from an integer is a missing call there (about a quarter of them), which the .bed reader's missing-call
bookkeeping pays for; timings are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from genetics.bgen import BgenFileset
from genetics.pgen import PgenFileset
from genetics.plink import PlinkFileset


def _rate(reader, chunk: int, threads: int) -> float:
    """Genotypes per second decoding every variant in chunks of ``chunk`` on ``threads`` threads."""
    starts = range(0, reader.n_variants, chunk)

    def decode(start: int) -> float:
        variants = np.arange(start, min(start + chunk, reader.n_variants))
        dosage, _, _ = reader.read_zero_missing(variants)
        return float(dosage[0, 0])

    begin = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(decode, starts))
    return reader.n_samples * reader.n_variants / (time.perf_counter() - begin)


def _plink2(args: list[str], folder: Path) -> None:
    subprocess.run(["plink2", *args, "--threads", "1", "--silent"], cwd=folder, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--m", type=int, default=5_000)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("plink2") is None:
        raise SystemExit("plink2 is not on PATH; install it (Debian: apt-get install plink2)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _plink2(
            ["--dummy", str(args.n), str(args.m), "0.01", "dosage-freq=0.5", "--make-pgen", "--out", "d"],
            folder,
        )
        _plink2(["--pfile", "d", "--make-bed", "--out", "d"], folder)
        _plink2(["--pfile", "d", "--export", "bgen-1.2", "bits=8", "--out", "d"], folder)
        readers = {
            ".bed": PlinkFileset(folder / "d"),
            ".pgen": PgenFileset(folder / "d"),
            ".bgen (8-bit zlib)": BgenFileset(folder / "d.bgen", folder / "d.sample", "ref-last"),
        }
        rates = {name: _rate(reader, args.chunk, args.threads) for name, reader in readers.items()}
    print(f"N={args.n} M={args.m} chunk={args.chunk} threads={args.threads}")
    print(f"{'format':<20}{'genotypes/s':>16}{'vs .bed':>10}")
    for name, rate in rates.items():
        print(f"{name:<20}{rate:>16,.0f}{rate / rates['.bed']:>9.2f}x")


if __name__ == "__main__":
    main()
