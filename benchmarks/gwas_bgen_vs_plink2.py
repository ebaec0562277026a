"""contig gwas --bgen against plink2 --bgen --glm on the same imputed-style file (8-bit BGEN v1.2, zlib).

Data: ``plink2 --dummy N M 0 dosage-freq=0.5 --make-pgen`` then ``--export bgen-1.2 bits=8`` (plink2
writes the last allele as REF: ``ref-last``), P standard-normal phenotypes and three covariates made here.
Both tools read the .bgen itself (dosage regression), on the same thread count, one after the other; the
table prints wall times, the ratio plink2 / contig (goal ≥ 5× at N = 10k, M = 50k, P = 16), contig's
default (plots + loci) beside compute only, and the largest |Δ LOG10_P| over all rows.

    python benchmarks/gwas_bgen_vs_plink2.py                  # N=10k M=50k P=16, 2 threads
    python benchmarks/gwas_bgen_vs_plink2.py --n 2000 --m 5000  # a check in a minute

Note: plink2's dummy dosage data leave about a quarter of the calls missing (plink2's own ``--export A``
shows 24% NA), so both tools run their complete-case (drop) path on many missing calls; imputed files have
none. Time only on an otherwise idle machine.
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

from genetics.bgen import BgenFileset


def _run(args: list[str], cwd: Path, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    os.sync()
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--m", type=int, default=50_000)
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("plink2") is None:
        raise SystemExit("plink2 is not on PATH; install it (Debian: apt-get install plink2)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plink = ["plink2", "--threads", str(args.threads), "--silent"]
        subprocess.run([*plink, "--dummy", str(args.n), str(args.m), "0", "dosage-freq=0.5", "--make-pgen",
                        "--out", "d"], cwd=folder, check=True)  # fmt: skip
        subprocess.run([*plink, "--pfile", "d", "--export", "bgen-1.2", "bits=8", "--out", "d"],
                       cwd=folder, check=True)  # fmt: skip
        psam = pd.read_csv(folder / "d.psam", sep="\t", dtype=str)
        ids = {"#IID": psam["#IID"]}  # the .sample's ID_2; both tools match on IID alone
        rng = np.random.default_rng(0)
        pheno, covar = folder / "pheno.txt", folder / "covar.txt"
        pd.DataFrame({**ids, **{f"f{j}": rng.normal(size=args.n) for j in range(args.p)}}).to_csv(
            pheno, sep="\t", index=False, float_format="%.10g"
        )
        pd.DataFrame({**ids, "age": rng.integers(40, 70, args.n), "sex": rng.integers(0, 2, args.n),
                      "pc1": rng.normal(size=args.n)}).to_csv(covar, sep="\t", index=False, float_format="%.10g")  # fmt: skip
        plink2_s = _run([*plink, "--bgen", "d.bgen", "ref-last", "--sample", "d.sample", "--pheno", str(pheno),
                         "--covar", str(covar), "--glm", "hide-covar", "--out", "p"], folder, args.threads)  # fmt: skip
        base = [sys.executable, "-m", "contig", "gwas", "--bgen", "d.bgen", "--sample", "d.sample", "--bgen-ref",
                "ref-last", "--pheno", str(pheno), "--covar", str(covar), "--threads", str(args.threads), "--quiet"]  # fmt: skip
        compute_s = _run([*base, "--no-plots", "--no-clump", "--out", "c_compute"], folder, args.threads)
        default_s = _run([*base, "--out", "c_default"], folder, args.threads)
        ours = pd.read_parquet(
            folder / "c_compute" / "sumstats.parquet", columns=["phenotype", "ID", "LOG10_P"]
        )
        delta = 0.0
        for j in range(args.p):
            theirs = pd.read_csv(folder / f"p.f{j}.glm.linear", sep="\t", usecols=["ID", "P"], na_values="NA")
            theirs = theirs.assign(LOG10_P=-np.log10(theirs.pop("P")))
            merged = theirs.merge(ours[ours["phenotype"] == f"f{j}"], on="ID", suffixes=("_plink2", ""))
            delta = max(delta, float(np.nanmax(np.abs(merged["LOG10_P"] - merged["LOG10_P_plink2"]))))
        print(f"N={args.n:,} M={args.m:,} P={args.p}, 8-bit BGEN, {args.threads} threads (seconds)")
        print(f"plink2 --glm {plink2_s:.1f}; contig compute only {compute_s:.1f} (ratio {plink2_s / compute_s:.1f}×, "
              f"goal 5×); contig default {default_s:.1f} (default / compute {default_s / compute_s:.2f})")  # fmt: skip
        print(f"max |Δ LOG10_P| vs plink2: {delta:.2e}")
        missing = float(
            np.isnan(
                BgenFileset(folder / "d.bgen", folder / "d.sample", "ref-last").read(slice(0, 200))
            ).mean()
        )
        print(f"missing calls in the first 200 variants: {missing:.1%}")


if __name__ == "__main__":
    main()
