"""Shared fixtures: simulated PLINK data written in a temporary folder, and the external binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genetics.plink import write_plink


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_test_worker():
    """Under pytest-xdist (``-n 2`` on 2 cores) each worker computes on one thread: two workers with two
    torch/BLAS threads each oversubscribe the cores and made small tensor work several times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def plink2_bin() -> str:
    path = shutil.which("plink2")
    if path is None:
        pytest.skip("plink2 is absent on this machine (CI installs Debian's plink2 package)")
    return path


@pytest.fixture(scope="session")
def plink19_bin() -> str:
    path = shutil.which("plink1.9")
    if path is None:
        pytest.skip("plink1.9 is absent on this machine (CI installs Debian's plink1.9 package)")
    return path


def run_binary(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run an external tool and fail the test with its log when it fails."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def simulate_gwas_data(
    folder: Path,
    n: int = 400,
    m: int = 300,
    n_pheno: int = 8,
    missing_rate: float = 0.01,
    seed: int = 0,
) -> dict:
    """Genotypes with missing calls, P phenotypes with NAs and planted effects, numeric + categorical covariates.

    Returns paths and arrays: prefix, pheno, covar, genotypes (n × m), phenotypes (n × P).
    """
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.02, 0.5, m)
    g = rng.binomial(2, freq, size=(n, m)).astype(np.float64)
    g[rng.random(g.shape) < missing_rate] = np.nan
    g[:, 5] = 0.0  # monomorphic
    g[:, 6] = np.nan  # all missing
    g[:3, 6] = 1.0
    chrom = np.where(np.arange(m) < m // 2, "1", "2")
    pos = np.concatenate([np.arange(1, m // 2 + 1), np.arange(1, m - m // 2 + 1)]) * 1000
    bim = pd.DataFrame(
        {
            "CHROM": chrom,
            "ID": [f"rs{i}" for i in range(m)],
            "CM": 0.0,
            "POS": pos,
            "ALT": rng.choice(list("AC"), m),
            "REF": rng.choice(list("GT"), m),
        }
    )
    iids = [f"id{i}" for i in range(n)]
    fam = pd.DataFrame({"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "SEX": 0, "PHENO": "-9"})
    prefix = folder / "geno"
    write_plink(prefix, g, bim, fam)
    age = rng.normal(55, 8, n)
    site = rng.choice(["leeds", "oxford", "glasgow"], n)
    filled = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    y = rng.normal(size=(n, n_pheno)) + 0.02 * age[:, None] + (site == "leeds")[:, None] * 0.5
    y[:, 0] += 0.6 * filled[:, 10]
    y[:, 1] += 0.4 * filled[:, 20] + 0.4 * filled[:, 21]
    y[rng.random(y.shape) < 0.05] = np.nan
    pheno_path = folder / "pheno.txt"
    pheno = pd.DataFrame({"#FID": iids, "IID": iids, **{f"feat{j}": y[:, j] for j in range(n_pheno)}})
    pheno.to_csv(pheno_path, sep="\t", index=False, na_rep="NA")
    covar_path = folder / "covar.txt"
    age_text = pd.Series(age).round(6).astype(str)
    age_text[rng.random(n) < 0.02] = "NA"
    pd.DataFrame({"#FID": iids, "IID": iids, "age": age_text, "site": site}).to_csv(
        covar_path, sep="\t", index=False
    )
    return {"prefix": prefix, "pheno": pheno_path, "covar": covar_path, "genotypes": g, "phenotypes": y}
