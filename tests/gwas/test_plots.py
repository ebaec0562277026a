"""gwas.plots: PNGs are written and non-trivial, thinning keeps every strong point, lambda_GC."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats

from gwas.plots import (
    COLORS,
    ManhattanPlotter,
    PngWriter,
    QQPlotter,
    lambda_gc,
    manhattan,
    manhattan_coordinates,
    nice_top,
    qq,
    qq_coordinates,
    thin_points,
)
from gwas.raster import NAMED, hex_rgb

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
    pixels = _pixels(tmp_path / "m.png").reshape(-1, 3)
    for colour in (*COLORS, NAMED["line"]):  # both chromosome colours and the genome-wide line are drawn
        assert (pixels == _rgb(colour)).all(axis=1).sum() > 1_000
    grey = (pixels[:, 0] == pixels[:, 1]) & (pixels[:, 1] == pixels[:, 2]) & (pixels[:, 0] < 128)
    assert grey.sum() > 1_000  # axes, ticks and (anti-aliased) text
    assert (table["LOG10_P"] > 2).sum() <= drawn < len(table) // 2


def _rgb(colour: str) -> np.ndarray:
    return np.array(hex_rgb(colour), dtype=np.uint8)


def test_points_land_where_their_values_say(tmp_path):
    """A lone strong point is drawn at its (position, LOG10_P) pixel, in its chromosome's colour."""
    table = pd.DataFrame({"CHROM": ["1"] * 3 + ["2"] * 3, "POS": [1, 500, 1000] * 2,
                          "LOG10_P": [0.5, 20.0, 0.5, 0.5, 0.5, 0.5]})  # fmt: skip
    plotter = ManhattanPlotter(table)
    plotter.plot(table["LOG10_P"].to_numpy(), tmp_path / "m.png", "")
    frame = plotter._frames[30.0]  # 20 × 1.08 + 0.5 = 22.1 rounds up to 30
    px, py = frame.to_pixels(plotter.x[1:2], np.array([20.0]))
    pixels = _pixels(tmp_path / "m.png")
    assert (pixels[int(round(py[0])), int(round(px[0]))] == _rgb(COLORS[0])).all()
    px, py = frame.to_pixels(plotter.x[4:5], np.array([0.5]))
    assert (pixels[int(round(py[0])), int(round(px[0]))] == _rgb(COLORS[1])).all()


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


def _cells(x, y, thin_below, bins, x_range):
    """Reference cell of each point, one point at a time (the obvious way)."""
    (nx, ny), (x0, x1) = bins, x_range
    out = []
    for xi, yi in zip(x, y, strict=True):
        cx = min(max(int((xi - x0) / (x1 - x0) * nx), 0), nx - 1)
        cy = min(max(int(yi / thin_below * ny), 0), ny - 1)
        out.append(cx * ny + cy)
    return np.array(out)


def test_thinning_equals_a_loop_and_covers_every_occupied_cell():
    rng = np.random.default_rng(4)
    m, bins, thin_below = 300_000, (600, 40), 2.0
    x = rng.uniform(0, 3e9, m)
    y = -np.log10(rng.random(m))
    y[rng.choice(m, 100, replace=False)] = np.nan
    x_range = (-1e7, 3.01e9)
    keep = thin_points(x, y, thin_below, bins, x_range=x_range)
    expected, seen = [], set()  # reference: every row above the threshold, the first row of each cell
    cells = _cells(x, np.nan_to_num(y), thin_below, bins, x_range)
    for i in range(m):
        if np.isnan(y[i]):
            continue
        if y[i] > thin_below:
            expected.append(i)
        elif cells[i] not in seen:
            seen.add(cells[i])
            expected.append(i)
    assert np.array_equal(keep, np.array(sorted(expected)))
    low = ~np.isnan(y) & (y <= thin_below)
    kept_low = keep[y[keep] <= thin_below]
    assert set(cells[kept_low]) == set(cells[low])  # at least (here: exactly) one point per occupied cell
    assert np.isin(np.flatnonzero(y > thin_below), keep).all()


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_million_point_plots_keep_every_significant_point(tmp_path):
    m = 1_000_000
    table = sumstats(m, seed=5)
    y = table["LOG10_P"].to_numpy()
    plotter = ManhattanPlotter(table)
    with PngWriter() as writer:
        drawn = plotter.plot(y, tmp_path / "m.png", "one million", writer)
        lam = QQPlotter().plot(y, tmp_path / "q.png", "one million", writer)
    assert png_size(tmp_path / "m.png") == (1800, 675) and png_size(tmp_path / "q.png") == (750, 750)
    assert (y > 2).sum() <= drawn < m // 5
    assert lam == pytest.approx(1.0, abs=0.02)
    frame = next(iter(plotter._frames.values()))
    width, height = frame.pixels
    top = next(iter(plotter._frames))
    bins = (width, int(np.ceil(height * 2.0 / top)))
    keep = thin_points(plotter.x, y, 2.0, bins, x_range=plotter.xlim)
    assert keep.size == drawn and np.isin(np.flatnonzero(y > 2), keep).all()


def test_shared_frames_draw_what_a_fresh_figure_draws(tmp_path):
    table = sumstats(20_000, seed=6)
    weak = table["LOG10_P"].to_numpy().copy()
    weak[weak > 6] = 6.0
    shared = ManhattanPlotter(table)
    shared.plot(table["LOG10_P"].to_numpy(), tmp_path / "strong.png", "strong")
    shared.plot(weak, tmp_path / "weak_shared.png", "weak")
    assert len(shared._frames) == 2  # 500 and 10 are too far apart to share a y range
    shared.plot(weak * 1.2, tmp_path / "weak2.png", "weak 2")
    assert len(shared._frames) == 2  # 7.2 draws on the frame of 6.0 (both within a factor of 2 of 10)
    manhattan(table.assign(LOG10_P=weak), tmp_path / "weak_fresh.png", title="weak")
    assert np.array_equal(_pixels(tmp_path / "weak_shared.png"), _pixels(tmp_path / "weak_fresh.png"))
    qqs = QQPlotter()
    qqs.plot(table["LOG10_P"].to_numpy(), tmp_path / "q_strong.png", "x")
    qqs.plot(weak, tmp_path / "q_shared.png", "x")
    qq(weak, tmp_path / "q_fresh.png", title="x")
    assert np.array_equal(_pixels(tmp_path / "q_shared.png"), _pixels(tmp_path / "q_fresh.png"))


def test_nice_top_ladder():
    assert [nice_top(v) for v in (0.9, 8.4, 10.0, 10.5, 16, 31, 80, 499)] == [1, 10, 10, 15, 20, 50, 100, 500]


def test_png_writer_reports_a_failed_write_and_does_not_mask_the_callers_error(tmp_path):
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    (tmp_path / "missing folder").write_text("a file where the folder should be")
    with pytest.raises(OSError):
        with PngWriter() as writer:
            writer.submit(pixels, tmp_path / "missing folder" / "a.png", 150)
    with pytest.raises(KeyError):
        with PngWriter() as writer:
            writer.submit(pixels, tmp_path / "missing folder" / "b.png", 150)
            raise KeyError("the caller's error")
    with PngWriter() as writer:
        writer.submit(pixels, tmp_path / "ok.png", 150)
    assert png_size(tmp_path / "ok.png") == (4, 4)


def test_plots_draw_text_without_matplotlib_s_font_file(tmp_path, monkeypatch):
    from gwas import raster

    monkeypatch.setattr(raster, "_font_path", lambda: None)
    raster.font.cache_clear()
    try:
        qq(np.random.default_rng(1).random(500), tmp_path / "q.png", title="fallback font")
    finally:
        raster.font.cache_clear()
    pixels = _pixels(tmp_path / "q.png")
    assert png_size(tmp_path / "q.png") == (750, 750)
    assert (pixels[:44].max(axis=2) < 128).sum() > 20  # the title (rows above the top tick label)
