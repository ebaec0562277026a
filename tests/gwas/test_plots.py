"""gwas.plots: PNGs are written and non-trivial, thinning keeps every strong point, lambda_GC."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats

from gwas.plots import lambda_gc, manhattan, manhattan_coordinates, qq, qq_coordinates, thin_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def sumstats(m: int, seed: int = 0) -> pd.DataFrame:
    """Null summary statistics on chromosomes 1..22, X, MT, with a few strong and underflowed signals."""
    rng = np.random.default_rng(seed)
    chroms = np.array([str(c) for c in range(1, 23)] + ["X", "MT"])
    log10p = -np.log10(rng.random(m))
    strong = rng.choice(m, 50, replace=False)
    log10p[strong] = rng.uniform(8, 500, 50)  # up to 1e-500: P underflows, LOG10_P does not
    return pd.DataFrame(
        {"CHROM": rng.choice(chroms, m), "POS": rng.integers(1, 50_000_000, m), "LOG10_P": log10p}
    )


def test_manhattan_png(tmp_path):
    table = sumstats(200_000)
    drawn = manhattan(table, tmp_path / "m.png", title="feature 0")
    width, height = png_size(tmp_path / "m.png")
    assert (width, height) == (1800, 675)
    assert (tmp_path / "m.png").stat().st_size > 20_000
    assert (table["LOG10_P"] > 2).sum() <= drawn < len(table) // 2


def test_manhattan_polars_with_phenotypes_and_p_only(tmp_path):
    table = sumstats(20_000).assign(phenotype=lambda t: np.where(np.arange(len(t)) % 2, "a", "b"))
    table["P"] = 10.0 ** -table["LOG10_P"]  # underflows to 0 for the strongest
    frame = pl.from_pandas(table.drop(columns="LOG10_P"))
    assert manhattan(frame, tmp_path / "a.png", phenotype="a") > 0
    assert png_size(tmp_path / "a.png")[0] == 1800
    assert not list(tmp_path.glob(".a.png.*"))


def test_thinning_keeps_every_point_above_threshold():
    table = sumstats(1_000_000, seed=1)
    x, _, _, _ = manhattan_coordinates(table)
    y = table["LOG10_P"].to_numpy()
    keep = thin_points(x, y, thin_below=2.0, bins=(1800, 100))
    above = np.flatnonzero(y > 2.0)
    assert np.isin(above, keep).all()
    assert keep.size < 1800 * 100 + above.size and keep.size < len(y) // 5
    assert np.array_equal(keep, thin_points(x, y, thin_below=2.0, bins=(1800, 100)))  # deterministic
    low = np.setdiff1d(keep, above)
    assert (y[low] <= 2.0).all() and low.size > 1000  # the floor of the plot stays covered
    with_nan = y.copy()
    with_nan[:10] = np.nan
    assert not np.isin(np.arange(10), thin_points(x, with_nan)).any()


def test_manhattan_coordinates_natural_order():
    table = pd.DataFrame({"CHROM": ["X", "10", "2", "chr1", "MT", "Y", "2"], "POS": [5, 5, 5, 5, 5, 5, 9]})
    x, rank, names, centres = manhattan_coordinates(table)
    assert names == ["chr1", "2", "10", "X", "Y", "MT"]
    assert rank.tolist() == [3, 2, 1, 0, 5, 4, 1]
    assert np.all(np.diff(centres) > 0) and x[6] - x[2] == 4
    ints = manhattan_coordinates(pd.DataFrame({"CHROM": [23, 2, 1], "POS": [1, 1, 1]}))
    assert ints[2] == ["1", "2", "23"]


def test_qq_png_and_band(tmp_path):
    rng = np.random.default_rng(2)
    log10p = -np.log10(rng.random(300_000))
    log10p[:20] = [300.0] * 10 + [np.nan] * 10
    lam = qq(log10p, tmp_path / "q.png", title="null")
    assert png_size(tmp_path / "q.png") == (750, 750)
    assert (tmp_path / "q.png").stat().st_size > 10_000
    assert lam == pytest.approx(1.0, abs=0.02)
    coords = qq_coordinates(log10p[20:])
    assert np.all(np.diff(coords["observed"]) <= 0) and coords["expected"][0] == pytest.approx(
        -np.log10(0.5 / 299_980)
    )
    inside = (coords["band_low"] <= coords["band_high"]).all()
    assert inside and np.all(coords["band_low"] <= coords["band_x"] + 1e-9)
    assert qq(pl.DataFrame({"LOG10_P": log10p}), tmp_path / "q2.png") == pytest.approx(lam)


def test_lambda_gc_null_and_inflated():
    rng = np.random.default_rng(3)
    z = rng.normal(size=400_001)
    chi2 = z**2
    log10p = -np.log10(stats.chi2.sf(chi2, 1))
    assert lambda_gc(chi2=chi2) == pytest.approx(1.0, abs=0.01)
    assert lambda_gc(t_stat=z) == pytest.approx(lambda_gc(chi2=chi2), rel=1e-12)
    assert lambda_gc(log10_p=log10p) == pytest.approx(lambda_gc(chi2=chi2), rel=1e-9)
    assert lambda_gc(chi2=1.3 * chi2) == pytest.approx(1.3 * lambda_gc(chi2=chi2), rel=1e-12)
    even = chi2[:10]
    assert lambda_gc(chi2=even) == pytest.approx(np.median(even) / 0.4549364, rel=1e-6)
    assert lambda_gc(log10_p=np.array([np.nan, 400.0, 0.3, 0.2])) > 0  # extremes do not matter
    assert np.isnan(lambda_gc(chi2=np.array([np.nan])))
    with pytest.raises(ValueError):
        lambda_gc(chi2=chi2, log10_p=log10p)
