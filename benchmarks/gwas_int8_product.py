"""Could an exact int8 product replace the float64 genotype × phenotype product (the largest part of a
P = 256 feature GWAS)? Measures the lever, one thread, on one decode block.

Hard-call genotypes are small integers (0, 1, 2), so gᵀ·y can be formed exactly from int8 matrices with
int32 accumulation: y (per column, scaled by s = max|y| / 127) is split into K int8 slices,
y = s · (q₀ + q₁/128 + … + q_{K-1}/128^{K-1}) + r, each slice product gᵀ·q_k is exact, and the only error is
the remainder r: |Δ(gᵀy)| ≤ Σg · s / 128^{K-1}. K = 6 makes that bound (2⁻⁴² of Σg·max|y|) as small as the
float64 product's own worst-case rounding bound (N·eps of Σ|g||y|) at N = 10,000.

Prints milliseconds per block for numpy's float64 product and for torch's int8 product (``torch._int_mm``,
VNNI on CPUs that have it) per slice, the K-slice totals, the largest error of each against a
long-double reference, and the start-up that torch would add to ``contig gwas`` (which never imports it).

Usage:
  python benchmarks/gwas_int8_product.py
  python benchmarks/gwas_int8_product.py --n 10000 --block 1024 --columns 260
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

BASE = 128  # 7 bits per slice after the first: slices q_k (k >= 1) lie in [0, 127]


def _best_ms(function, repeat: int = 5) -> float:
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def int8_slices(y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, C) int8 slices and (C,) scales with y = s · Σ_k q_k / 128^k + r, 0 <= r < s / 128^(K-1)."""
    scale = np.abs(y).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    rest = y / scale  # in [-127, 127]
    slices = []
    for _ in range(k):
        q = np.floor(rest)
        slices.append(q.astype(np.int8))
        rest = (rest - q) * BASE  # in [0, 128): the next slice's range
    return np.stack(slices), scale


def int8_product(torch, g8, slices: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """gᵀ·y from exact int8 slice products, combined in float64."""
    total = np.zeros((g8.shape[0], slices.shape[2]))
    for j in range(slices.shape[0]):
        exact = torch._int_mm(g8, torch.from_numpy(np.ascontiguousarray(slices[j]))).numpy()
        total += exact * BASE**-j
    return total * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="samples")
    parser.add_argument("--block", type=int, default=1024, help="variants per decode block (P = 256: 1024)")
    parser.add_argument("--columns", type=int, default=260, help="P + covariates + 1")
    args = parser.parse_args()
    start = time.perf_counter()
    import torch

    import_s = time.perf_counter() - start
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    freq = rng.uniform(0.01, 0.99, args.block)
    g = rng.binomial(2, freq, (args.n, args.block)).T.astype(np.float64)  # (block, N) as decoded
    y = rng.standard_normal((args.n, args.columns))
    g8 = torch.from_numpy(g.astype(np.int8))

    dgemm_ms = _best_ms(lambda: g @ y)
    one = torch.from_numpy(np.ascontiguousarray(int8_slices(y, 1)[0][0]))
    slice_ms = _best_ms(lambda: torch._int_mm(g8, one))
    rows, cols = slice(0, 32), slice(0, 16)  # a long-double reference on a corner
    reference = g[rows].astype(np.longdouble) @ y[:, cols].astype(np.longdouble)
    magnitude = np.abs(g[rows]) @ np.abs(y[:, cols])
    float64_error = float(np.max(np.abs((g[rows] @ y[:, cols]) - reference) / magnitude))
    print(f"N={args.n}, block of {args.block} variants × {args.columns} columns, one thread")
    print(f"float64 product (numpy BLAS): {dgemm_ms:7.1f} ms   max |error| / Σ|g||y|: {float64_error:.1e}")
    print(f"int8 product, one slice:      {slice_ms:7.1f} ms   ({dgemm_ms / slice_ms:.1f}x faster per slice)")
    for k in (4, 5, 6, 7):
        slices, scale = int8_slices(y, k)
        total_ms = _best_ms(lambda slices=slices, scale=scale: int8_product(torch, g8, slices, scale), 3)
        small = int8_product(torch, g8[rows], slices[:, :, cols], scale[cols])
        error = float(np.max(np.abs(small - reference) / magnitude))
        print(
            f"int8, K = {k} slices ({8 + 7 * (k - 1)} bits): {total_ms:7.1f} ms = {total_ms / dgemm_ms:.2f}x the "
            f"float64 product; max |error| / Σ|g||y|: {error:.1e}"
        )
    cold = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(
        f"import torch: {float(cold.stdout):.2f} s in a fresh process ({import_s:.2f} s here), paid once per run"
    )


if __name__ == "__main__":
    main()
