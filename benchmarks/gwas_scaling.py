"""How ``contig gwas`` time and peak memory grow as samples (N), variants (M) and phenotypes (P) double.

From a base setting, each of N, M and P is doubled ``--doublings`` times on its own (the others held at
the base). Data come from ``plink2 --dummy`` (hard calls with ``--missing`` missing calls) with P
standard-normal phenotypes and 3 covariates; every run is a separate ``python -m contig gwas`` process
(``--no-clump --no-plots``), so times include start-up (imports, reading the inputs), measured on its
own in the first row (M = 256). Columns: wall and CPU seconds (user + system, all threads; steadier
than wall time on a shared machine), CPU seconds beyond start-up per N × M × P relative to the base,
and the process's peak RSS. Streaming chunks keeps memory O(N × chunk + N × P), independent of M.

Usage:
  python benchmarks/gwas_scaling.py                          # ~5 minutes on 2 cores
  python benchmarks/gwas_scaling.py --n 2000 --m 5000 --p 8 --doublings 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _run(args: list[str], threads: int) -> tuple[float, float, float]:
    """Run a command; return (wall seconds, CPU seconds, peak RSS in MB) of that process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    start = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _inputs(folder: Path, n: int, m: int, p: int, missing: float) -> tuple[Path, Path, Path]:
    """plink2 --dummy genotypes (N × M) plus P phenotypes and 3 covariates, cached in FOLDER."""
    prefix = folder / f"g_{n}_{m}"
    if not Path(f"{prefix}.bed").exists():
        args = ["plink2", "--dummy", str(n), str(m), str(missing), "acgt", "--make-bed", "--out", str(prefix)]
        subprocess.run(args, check=True, capture_output=True)
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    ids = {"#FID": fam[0], "IID": fam[1]}
    pheno, covar = folder / f"pheno_{n}_{p}.txt", folder / f"covar_{n}.txt"
    if not pheno.exists():
        rng = np.random.default_rng(p)
        table = pd.DataFrame({**ids, **{f"f{j}": rng.normal(size=n) for j in range(p)}})
        table.to_csv(pheno, sep="\t", index=False, float_format="%.8g")
    if not covar.exists():
        rng = np.random.default_rng(1)
        table = pd.DataFrame({**ids, **{f"c{j}": rng.normal(size=n) for j in range(3)}})
        table.to_csv(covar, sep="\t", index=False, float_format="%.8g")
    return prefix, pheno, covar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8_000, help="base samples")
    parser.add_argument("--m", type=int, default=32_768, help="base variants")
    parser.add_argument("--p", type=int, default=16, help="base phenotypes")
    parser.add_argument("--doublings", type=int, default=2)
    parser.add_argument("--missing", type=float, default=0.01, help="missing call rate")
    parser.add_argument("--mode", default="drop", choices=["drop", "mean"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="keep data here (default: a temporary folder)")
    args = parser.parse_args()
    if shutil.which("plink2") is None:
        sys.exit("plink2 is needed to make the data (Debian package plink2)")
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="contig-scaling-"))
    folder.mkdir(parents=True, exist_ok=True)
    settings = [("start-up", args.n, 256, args.p), ("base", args.n, args.m, args.p)]
    for k in range(1, args.doublings + 1):
        settings += [
            (f"N ×{2**k}", args.n * 2**k, args.m, args.p),
            (f"M ×{2**k}", args.n, args.m * 2**k, args.p),
            (f"P ×{2**k}", args.n, args.m, args.p * 2**k),
        ]
    rows = []
    for name, n, m, p in settings:
        prefix, pheno, covar = _inputs(folder, n, m, p, args.missing)
        out = folder / "out"
        shutil.rmtree(out, ignore_errors=True)
        wall, cpu, rss = _run(
            [sys.executable, "-m", "contig", "gwas", "--bfile", str(prefix), "--pheno", str(pheno),
             "--covar", str(covar), "--missing-genotype", args.mode, "--threads", str(args.threads),
             "--no-clump", "--no-plots", "--quiet", "--out", str(out)],
            args.threads,
        )  # fmt: skip
        rows.append((name, n, m, p, wall, cpu, rss))
        print(f"done: {name} ({wall:.1f} s)", file=sys.stderr)
    startup = rows[0][5]
    base = rows[1]
    base_rate = (base[5] - startup) / (base[1] * base[2] * base[3])
    print(f"\ncontig gwas, {args.missing:.0%} missing calls, --missing-genotype {args.mode}, "
          f"3 covariates, {args.threads} threads")  # fmt: skip
    header = f"{'setting':<10}{'N':>7}{'M':>8}{'P':>5}{'wall s':>8}{'CPU s':>8}{'CPU/NMP':>9}{'RSS MB':>8}"
    print(header)
    for name, n, m, p, wall, cpu, rss in rows:
        rate = (cpu - startup) / (n * m * p) / base_rate if name != "start-up" else float("nan")
        print(f"{name:<10}{n:>7}{m:>8}{p:>5}{wall:>8.1f}{cpu:>8.1f}{rate:>9.2f}{rss:>8.0f}")


if __name__ == "__main__":
    main()
