"""Start-up and step time of `contig gwas` and `contig pretrain`, this checkout against an earlier commit.

The run-folder checks (a non-empty --out refused, the data fingerprint of contig-run.json, every image
decoded before the first step) must not slow what a user runs. Both versions run the same commands on the
same data, alternating, ``--repeats`` times; the table prints medians and the ratio (goal: within 5%).
Also times the up-front image check alone on ``--images`` PNGs of the biobank's size.

    python benchmarks/cli_startup.py --before 95c3d9d --repeats 3

Run on a quiet machine: torch threads spin and a second job doubles step times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ["image_encoder=test_resnet", "embed_dim=16", "batch_size=16", "genetic.max_snps=500", "progress=false",
        "log_every=10", "eval_every=1000", "checkpoint_every=0"]  # fmt: skip


def _timed(source: Path, args: list[str], cwd: Path) -> float:
    """Wall seconds of ``python -m contig ARGS`` importing contig from ``source``."""
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "contig", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{source}: contig {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def _image_check_seconds(folder: Path, n: int) -> float:
    from imaging.io import check_image_files, write_png

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        write_png(path, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        paths.append(path)
    start = time.perf_counter()
    check_image_files(paths)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="95c3d9d", help="Commit to compare with.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="Pretraining steps timed after start-up.")
    parser.add_argument("--images", type=int, default=10_000, help="PNGs for the image-check timing.")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the test suite's data generator
    from contig.biobank import BiobankConfig, simulate_biobank
    from tests.conftest import simulate_gwas_data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = tmp / "before"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(before), args.before], cwd=ROOT, check=True
        )
        try:
            gwas = simulate_gwas_data(tmp / "gwas", n=2000, m=5000, n_pheno=4)
            biobank = tmp / "biobank"
            simulate_biobank(biobank, BiobankConfig(n_individuals=300, image_size=32, progress=False))
            gwas_args = ["gwas", "--bfile", str(gwas["prefix"]), "--pheno", str(gwas["pheno"]), "--covar",
                         str(gwas["covar"]), "--quiet"]  # fmt: skip
            times: dict[tuple[str, str], list[float]] = {}
            for repeat in range(args.repeats):
                for label, source in (("before", before), ("now", ROOT)):
                    out = tmp / f"out-{label}-{repeat}"
                    times.setdefault(("gwas", label), []).append(
                        _timed(source, [*gwas_args, "--out", str(out / "gwas")], tmp)
                    )
                    for steps in (1, 1 + args.steps):
                        run = out / f"pretrain{steps}"
                        seconds = _timed(source, ["pretrain", "--data", str(biobank), "--out", str(run),
                                                  "--max-steps", str(steps), *TINY], tmp)  # fmt: skip
                        times.setdefault((f"pretrain {steps} step(s)", label), []).append(seconds)
                    shutil.rmtree(out)
            print(f"median of {args.repeats} runs, {args.before} vs this checkout (seconds)")
            print(f"{'command':<28}{'before':>10}{'now':>10}{'now/before':>12}")
            for name in dict.fromkeys(name for name, _ in times):
                b, n = statistics.median(times[(name, "before")]), statistics.median(times[(name, "now")])
                print(f"{name:<28}{b:>10.2f}{n:>10.2f}{n / b:>12.3f}")
            one, many = "pretrain 1 step(s)", f"pretrain {1 + args.steps} step(s)"
            for label in ("before", "now"):
                step = (
                    statistics.median(times[(many, label)]) - statistics.median(times[(one, label)])
                ) / args.steps
                print(f"pretrain step time ({label}): {step * 1000:.1f} ms")
            (tmp / "images").mkdir()
            seconds = _image_check_seconds(tmp / "images", args.images) if args.images else float("nan")
            print(f"up-front image check of {args.images:,} 64-px PNGs: {seconds:.2f} s")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
