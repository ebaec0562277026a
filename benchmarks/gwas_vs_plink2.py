"""contig gwas against plink2 --glm, side by side on the same data and thread count.

Data come from ``plink2 --dummy`` (hard calls, optional missing calls), with P standard-normal
phenotypes and 3 covariates made here. Each setting runs plink2 and then contig as separate processes;
the table reports wall times, their ratio, the largest |Δ LOG10_P| over rows both report (plink2 prints 6
significant digits, so Δ is bounded below by its rounding), and contig's peak RSS.

A setting is ``missing:P:mode``. plink2 has only complete-case regression (``drop``), so a ``mean`` setting
runs contig alone and is compared with contig's own 0%-missing time at the same P (the goal: within 2×).

Usage:
  python benchmarks/gwas_vs_plink2.py                       # the settings of the goal table
  python benchmarks/gwas_vs_plink2.py --n 2000 --m 5000 --settings 0:16:drop,0.01:16:drop
  python benchmarks/gwas_vs_plink2.py --skip-plink2 --settings 0.01:256:drop   # contig only
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

OUT = "contig-out"  # not "contig": a folder of that name in the working directory would shadow the package


def _run(args: list[str], cwd: Path, threads: int) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MB of that process)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    os.sync()  # flush the previous run's output first, so its write-back does not land in this timing
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def _make_data(folder: Path, n: int, m: int, missing: float, n_pheno: int, seed: int = 0) -> Path:
    prefix = folder / f"dummy_{missing}"
    if not Path(f"{prefix}.bed").exists():
        args = ["plink2", "--dummy", str(n), str(m), str(missing), "acgt", "--make-bed", "--out", str(prefix)]
        subprocess.run(args, check=True, capture_output=True)
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    rng = np.random.default_rng(seed)
    ids = {"#FID": fam[0], "IID": fam[1]}
    pheno = pd.DataFrame({**ids, **{f"f{j}": rng.normal(size=n) for j in range(n_pheno)}})
    pheno.to_csv(folder / f"pheno_{n_pheno}.txt", sep="\t", index=False, float_format="%.10g")
    covariate_rng = np.random.default_rng(seed + 1)  # the same covariates whatever P is
    covar = pd.DataFrame({**ids, **{f"c{j}": covariate_rng.normal(size=n) for j in range(3)}})
    covar.to_csv(folder / "covar.txt", sep="\t", index=False, float_format="%.10g")
    return prefix


def _print_rounding(p: np.ndarray) -> np.ndarray:
    """|Δ log10 P| that rounding P to plink2's 6 significant digits can cause by itself, per value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        half_unit = 0.5 * 10.0 ** (np.floor(np.log10(p)) - 5)
        return np.log10(1.0 + half_unit / p)


def _max_delta(folder: Path, n_pheno: int) -> tuple[float, float]:
    """(max |Δ LOG10_P|, max excess of |Δ| over what plink2's printed rounding explains) over all rows."""
    ours = pd.read_parquet(folder / OUT / "sumstats.parquet", columns=["phenotype", "ID", "LOG10_P"])
    worst = excess = 0.0
    for j in range(n_pheno):
        theirs = pd.read_csv(
            folder / f"plink2.f{j}.glm.linear", sep="\t", usecols=["ID", "P"], na_values="NA"
        )
        mine = ours[ours["phenotype"] == f"f{j}"]
        both = theirs.merge(mine, on="ID")
        p = both["P"].to_numpy()
        delta = np.abs(-np.log10(p) - both["LOG10_P"].to_numpy())
        worst = max(worst, float(np.nanmax(delta)))
        excess = max(excess, float(np.nanmax(delta - _print_rounding(p))))
    return worst, excess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--m", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--settings",
        default="0:16:drop,0:256:drop,0.01:16:drop,0.01:256:mean",
        help="missing:P:mode,... (mode drop or mean)",
    )
    parser.add_argument("--skip-plink2", action="store_true")
    parser.add_argument("--workdir", default=None, help="keep data here (default: a temporary folder)")
    args = parser.parse_args()
    if shutil.which("plink2") is None:
        sys.exit("plink2 is needed to make the data (Debian package plink2)")
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="contig-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for setting in args.settings.split(","):
        missing_text, p_text, mode = setting.split(":")
        missing, n_pheno = float(missing_text), int(p_text)
        prefix = _make_data(folder, args.n, args.m, missing, n_pheno)
        pheno, covar = folder / f"pheno_{n_pheno}.txt", folder / "covar.txt"
        plink_s = float("nan")
        if not args.skip_plink2 and mode == "drop":
            plink_s, _ = _run(
                ["plink2", "--bfile", str(prefix), "--pheno", str(pheno), "--covar", str(covar),
                 "--glm", "hide-covar", "omit-ref", "cols=+a1freq", "--threads", str(args.threads),
                 "--out", str(folder / "plink2")],
                folder, args.threads,
            )  # fmt: skip
        contig_s, rss = _run(
            [sys.executable, "-m", "contig", "gwas", "--bfile", str(prefix), "--pheno", str(pheno),
             "--covar", str(covar), "--missing-genotype", mode, "--threads", str(args.threads),
             "--no-clump", "--no-plots", "--quiet", "--out", str(folder / OUT)],
            folder, args.threads,
        )  # fmt: skip
        delta, excess = _max_delta(folder, n_pheno) if np.isfinite(plink_s) else (float("nan"),) * 2
        rows.append((missing, n_pheno, mode, plink_s, contig_s, rss, delta, excess))
        print(f"done: {setting}", file=sys.stderr)
    print(f"\nN={args.n} M={args.m} threads={args.threads} covariates=3")
    print(
        f"{'setting':<32}{'plink2 s':>10}{'contig s':>10}{'ratio':>8}{'max|ΔLOG10_P|':>15}"
        f"{'beyond print':>14}{'RSS MB':>9}"
    )
    for missing, n_pheno, mode, plink_s, contig_s, rss, delta, excess in rows:
        name = f"{missing:.0%} missing, P={n_pheno}, {mode}"
        print(
            f"{name:<32}{plink_s:>10.1f}{contig_s:>10.1f}{plink_s / contig_s:>7.1f}x{delta:>15.2e}"
            f"{excess:>14.2e}{rss:>9.0f}"
        )
    print("beyond print: the largest |Δ LOG10_P| left after subtracting what rounding P to plink2's 6")
    print("printed significant digits can cause on that row (≤ 0: equal to the last printed digit)")
    complete = {n_pheno: contig_s for missing, n_pheno, mode, _, contig_s, *_ in rows if missing == 0}
    for missing, n_pheno, mode, _, contig_s, *_ in rows:
        if mode == "mean" and n_pheno in complete:
            print(
                f"mean mode at {missing:.0%} missing, P={n_pheno}: {contig_s / complete[n_pheno]:.2f}x the 0% time"
            )


if __name__ == "__main__":
    main()
