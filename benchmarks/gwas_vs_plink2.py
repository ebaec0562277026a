"""contig gwas against plink2 --glm, side by side on the same data and thread count, on two data sets.

Data come from ``plink2 --dummy`` (hard calls, optional missing calls) in two flavours, so that a ratio is
not one data set's:

* ``acgt``: ``--dummy N M MISSING acgt``, 3 standard-normal covariates c0 c1 c2;
* ``scalar``: ``--dummy N M MISSING scalar-pheno``, integer covariates age (40-69), sex (0/1), pc1 (-5..5).

Both get P standard-normal phenotypes made here. Each setting runs plink2 once, then contig as separate
processes ``--repeat`` times in each of two modes, alternating: the default run (plots and loci, what a
user gets) and compute only (``--no-plots --no-clump``); contig's times are the medians (the spread is
printed: on a 2-core VM one run can be 20% off). A setting with missing calls also runs contig compute
only on the 0%-missing version of its data set at the same P, for the missing-path / complete-data ratio.
The table reports wall times, plink2 / compute, default / compute, the peak RSS of each contig run, and the
largest |Δ LOG10_P| over rows both report (plink2 prints 6 significant digits, so Δ is bounded below by
its rounding; "beyond print" subtracts what that rounding explains).

A setting is ``dataset:missing:P:mode``. plink2 has only complete-case regression (``drop``), so a ``mean``
setting runs contig alone.

Usage:
  python benchmarks/gwas_vs_plink2.py                  # N=10k M=50k, the four settings of the goal table
  python benchmarks/gwas_vs_plink2.py --small          # N=2000 M=5000: a check that runs in a minute
  python benchmarks/gwas_vs_plink2.py --settings scalar:0.01:16:drop --device cuda
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
DATASETS = ("acgt", "scalar")
DEFAULT_SETTINGS = "acgt:0:256:drop,acgt:0.01:16:drop,scalar:0:256:drop,scalar:0.01:16:drop"
GOALS = {256: 10.0, 16: 20.0}  # plink2 / compute goals of the feature-GWAS issue, by P


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


def _make_data(folder: Path, dataset: str, n: int, m: int, missing: float, n_pheno: int, seed: int = 0):
    """(.bed prefix, phenotype file, covariate file) of one data set, made once per folder and size.

    Every file name carries N and M, so a ``--workdir`` kept from a ``--small`` run is never timed as N = 10k.
    """
    size = f"{n}x{m}"
    prefix = folder / f"{dataset}_{size}_{missing}"
    if not Path(f"{prefix}.bed").exists():
        flavour = "acgt" if dataset == "acgt" else "scalar-pheno"
        args = [
            "plink2",
            "--dummy",
            str(n),
            str(m),
            str(missing),
            flavour,
            "--make-bed",
            "--out",
            str(prefix),
        ]
        subprocess.run(args, check=True, capture_output=True)
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    ids = {"#FID": fam[0], "IID": fam[1]}
    pheno = folder / f"{dataset}_{size}_pheno_{n_pheno}.txt"
    if not pheno.exists():
        rng = np.random.default_rng(seed)
        table = pd.DataFrame({**ids, **{f"f{j}": rng.normal(size=n) for j in range(n_pheno)}})
        table.to_csv(pheno, sep="\t", index=False, float_format="%.10g")
    covar = folder / f"{dataset}_{size}_covar.txt"
    if not covar.exists():
        rng = np.random.default_rng(seed + 1)  # the same covariates whatever P is
        if dataset == "acgt":
            columns = {f"c{j}": rng.normal(size=n) for j in range(3)}
        else:
            columns = {
                "age": rng.integers(40, 70, n),
                "sex": rng.integers(0, 2, n),
                "pc1": rng.integers(-5, 6, n),
            }
        pd.DataFrame({**ids, **columns}).to_csv(covar, sep="\t", index=False, float_format="%.10g")
    return prefix, pheno, covar


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


def _contig(prefix: Path, pheno: Path, covar: Path, mode: str, args, out: Path, extra: list[str]):
    """One contig gwas process into a fresh ``out``; (wall s, peak RSS MB)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, "-m", "contig", "gwas", "--bfile", str(prefix), "--pheno", str(pheno),
        "--covar", str(covar), "--missing-genotype", mode, "--threads", str(args.threads),
        "--device", args.device, "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip
    return _run(command, out.parent, args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="samples (default 10000; 2000 with --small)")
    parser.add_argument("--m", type=int, default=None, help="variants (default 50000; 5000 with --small)")
    parser.add_argument("--small", action="store_true", help="N=2000, M=5000 unless --n/--m say otherwise")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="contig --device (cpu, cuda, auto)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="dataset:missing:P:mode,...")
    parser.add_argument("--skip-plink2", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="contig runs per mode (median reported)")
    parser.add_argument("--workdir", default=None, help="keep data here (default: a temporary folder)")
    args = parser.parse_args()
    n = args.n or (2_000 if args.small else 10_000)
    m = args.m or (5_000 if args.small else 50_000)
    if shutil.which("plink2") is None:
        sys.exit("plink2 is needed to make the data (Debian package plink2)")
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="contig-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for setting in args.settings.split(","):
        dataset, missing_text, p_text, mode = setting.split(":")
        if dataset not in DATASETS:
            sys.exit(f"unknown data set {dataset!r} in {setting!r}; choose from {DATASETS}")
        missing, n_pheno = float(missing_text), int(p_text)
        prefix, pheno, covar = _make_data(folder, dataset, n, m, missing, n_pheno)
        plink_s = float("nan")
        if not args.skip_plink2 and mode == "drop":
            plink_s, _ = _run(
                ["plink2", "--bfile", str(prefix), "--pheno", str(pheno), "--covar", str(covar),
                 "--glm", "hide-covar", "omit-ref", "cols=+a1freq", "--threads", str(args.threads),
                 "--out", str(folder / "plink2")],
                folder, args.threads,
            )  # fmt: skip
        default_runs, compute_runs = [], []
        for _ in range(args.repeat):  # alternating, so that drift of the machine hits both modes alike
            default_runs.append(_contig(prefix, pheno, covar, mode, args, folder / f"{OUT}-default", []))
            compute_runs.append(
                _contig(prefix, pheno, covar, mode, args, folder / OUT, ["--no-plots", "--no-clump"])
            )
        (default_s, default_rss), (compute_s, compute_rss) = _median(default_runs), _median(compute_runs)
        spread = [
            f"{min(w for w, _ in runs):.1f}-{max(w for w, _ in runs):.1f}"
            for runs in (compute_runs, default_runs)
        ]
        delta, excess = _max_delta(folder, n_pheno) if np.isfinite(plink_s) else (float("nan"),) * 2
        complete_s = float("nan")
        if missing > 0:  # the same P on the complete-data version of this data set, contig compute only
            complete = _make_data(folder, dataset, n, m, 0.0, n_pheno)
            complete_s, _ = _median(
                [
                    _contig(*complete, mode, args, folder / f"{OUT}-complete", ["--no-plots", "--no-clump"])
                    for _ in range(args.repeat)
                ]
            )
        rows.append(
            (dataset, missing, n_pheno, mode, plink_s, compute_s, default_s, compute_rss, default_rss, delta,
             excess, complete_s, spread)
        )  # fmt: skip
        print(f"done: {setting}", file=sys.stderr)
    _print_table(rows, n, m, args)


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """(median wall s, peak RSS MB of that run) of repeated runs."""
    return sorted(runs)[(len(runs) - 1) // 2]


def _print_table(rows: list[tuple], n: int, m: int, args) -> None:
    print(
        f"\nN={n} M={m} threads={args.threads} device={args.device}; wall seconds of one process (contig: "
        f"median of {args.repeat})"
    )
    header = (
        f"{'data':<7}{'setting':<22}{'plink2':>8}{'compute':>9}{'ratio':>8}{'goal':>6}{'default':>9}"
        f"{'def/comp':>9}{'RSS comp':>9}{'RSS def':>8}{'max|ΔLOG10_P|':>15}{'beyond print':>13}"
    )
    print(header)
    for (
        dataset,
        missing,
        n_pheno,
        mode,
        plink_s,
        compute_s,
        default_s,
        rss_c,
        rss_d,
        delta,
        excess,
        _,
        spread,
    ) in rows:
        name = f"{missing:.0%} missing, P={n_pheno}, {mode}"
        goal = f"{GOALS[n_pheno]:.0f}x" if n_pheno in GOALS and mode == "drop" else "-"
        print(
            f"{dataset:<7}{name:<22}{plink_s:>8.1f}{compute_s:>9.1f}{plink_s / compute_s:>7.1f}x{goal:>6}"
            f"{default_s:>9.1f}{default_s / compute_s:>8.2f}x{rss_c:>9.0f}{rss_d:>8.0f}{delta:>15.2e}"
            f"{excess:>13.2e}  runs: compute {spread[0]} s, default {spread[1]} s"
        )
    print(
        "ratio: plink2 / contig compute only (--no-plots --no-clump); def/comp: contig default / compute only"
    )
    print("(goal ≤ 1.2x); RSS in MB (goal ≤ 1536); beyond print: the largest |Δ LOG10_P| left after")
    print("subtracting what rounding P to plink2's 6 printed significant digits can cause on that row")
    print("(≤ 0: equal to the last printed digit)")
    for dataset, missing, n_pheno, mode, _, compute_s, *_, complete_s, _ in rows:
        if missing > 0:
            print(
                f"{dataset}: {missing:.0%} missing {mode}, P={n_pheno}: compute {compute_s:.1f} s, "
                f"{compute_s / complete_s:.2f}x the {complete_s:.1f} s of the same P on 0% missing (goal ≤ 1.5x)"
            )


if __name__ == "__main__":
    main()
