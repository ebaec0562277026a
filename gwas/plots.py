"""Manhattan and QQ plots of GWAS summary statistics as PNG, fast on millions of variants.

Both plots take LOG10_P (-log10 P, finite even where P underflows to 0), never P. Points with LOG10_P at
or below ``thin_below`` are thinned to one per pixel of the axes (deterministically: the first row in each
pixel cell); every point above it is drawn. A point is wider than a pixel, so the thinned image is the
full one up to which of two overlapping points is on top.

Speed: plots are drawn on a palette raster (:mod:`gwas.raster`), not with matplotlib, whose import and
figure layout cost more than the plots of a whole run. A frame (axes, ticks, labels, fixed y range) is
drawn once and copied for each plot, which adds only its points, threshold line and texts; each PNG (a
palette image: fast to encode, small) is written on a background thread while the next plot is drawn.
Y ranges are rounded up to a short ladder of values (10, 15, 20, 30, 50, 75, 100, ...) so that one frame
serves all the plots of similar strength. Files are written atomically.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd

from gwas.clump import chrom_order_key
from gwas.raster import BLACK, INDEX, NAMED, Raster, nice_ticks, points_to_pixels, tick_label, write_png

GENOME_WIDE_P = 5e-8
CHI2_MEDIAN_1DF = 0.4549364231195724  # median of χ²(1) = scipy.special.chdtri(1, 0.5)
COLORS = (NAMED["point0"], NAMED["point1"])  # alternating chromosome colours
LOG10_LABEL = "−log₁₀ P"


def lambda_gc(
    *, log10_p: np.ndarray | None = None, chi2: np.ndarray | None = None, t_stat: np.ndarray | None = None
) -> float:
    """Genomic inflation: median 1-df chi² over its null median (0.4549364); give exactly one input.

    Args:
        log10_p: (m,) -log10 P; only the middle order statistics are converted, so underflow is harmless.
        chi2: (m,) 1-df chi² statistics.
        t_stat: (m,) t (or z) statistics, squared to chi² (exact for z, close for large dof).

    Returns:
        lambda_GC; NaN when no finite value is given. NaNs are ignored.
    """
    given = [v for v in (log10_p, chi2, t_stat) if v is not None]
    if len(given) != 1:
        raise ValueError("lambda_gc takes exactly one of log10_p=, chi2=, t_stat=")
    values = np.asarray(given[0], dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan
    if t_stat is not None:
        values = values * values
    middle = [(values.size - 1) // 2, values.size // 2]
    picked = np.partition(values, middle)[middle]  # median of a monotone transform = transform of median
    if log10_p is not None:
        from scipy import special  # imported when used: it costs ~0.3 s at start-up

        picked = special.chdtri(1, 10.0**-picked)  # χ²(1) upper quantile
    return float(np.mean(picked) / CHI2_MEDIAN_1DF)


def thin_points(
    x: np.ndarray,
    y: np.ndarray,
    thin_below: float = 2.0,
    bins: tuple[int, int] = (2000, 200),
    x_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Indices of the points to draw: every finite point with y > thin_below, one per cell below.

    Args:
        x, y: (m,) coordinates (y is LOG10_P; NaN points are dropped).
        thin_below: points with y <= this are binned on a ``bins`` = (x cells, y cells) grid over
            ``x_range`` (default [min x, max x]) × [0, thin_below] and the first point (lowest row) of each
            occupied cell is kept; points outside ``x_range`` fall in its edge cells.

    Returns:
        (k,) sorted int64 row indices.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & ~np.isnan(y)
    high = np.flatnonzero(finite & (y > thin_below))
    low = np.flatnonzero(finite & (y <= thin_below))
    if low.size == 0:
        return high
    nx, ny = bins
    x0, x1 = x_range if x_range is not None else (x[low].min(), x[low].max())
    span = max(float(x1 - x0), 1e-12)
    cx = np.clip(((x[low] - x0) / span * nx).astype(np.int64), 0, nx - 1)
    cy = np.clip((y[low] / max(thin_below, 1e-12) * ny).astype(np.int64), 0, ny - 1)
    first = np.full(nx * ny, -1, dtype=np.int64)
    first[(cx * ny + cy)[::-1]] = low[::-1]  # last write wins: reversed order keeps the first row
    return np.sort(np.concatenate([high, first[first >= 0]]))


def _column(table, name: str) -> np.ndarray:
    """One column of a pandas or polars table as numpy."""
    if name not in table.columns:
        raise ValueError(f"summary statistics lack column {name!r}; have {list(table.columns)}")
    return table[name].to_numpy()


def _log10_p(table) -> np.ndarray:
    """(m,) LOG10_P of a table, derived from P when LOG10_P is absent (P = 0 then gives inf)."""
    if "LOG10_P" in table.columns:
        return np.asarray(_column(table, "LOG10_P"), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -np.log10(np.asarray(_column(table, "P"), dtype=np.float64))


def _chrom_codes(table) -> tuple[np.ndarray, list[str]]:
    """(m,) integer code per row into the list of distinct chromosome names (as strings)."""
    column = table["CHROM"]
    if isinstance(column, pd.Series):
        codes, names = pd.factorize(column, sort=False)
        return codes, [str(n) for n in names]
    import polars as pl

    column = column.cast(pl.Utf8)
    names = column.unique(maintain_order=True).to_list()
    codes = column.cast(pl.Enum([n for n in names if n is not None])).to_physical().to_numpy()
    return codes.astype(np.int64), [str(n) for n in names if n is not None]


def manhattan_coordinates(table) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Genome x positions with chromosomes laid end to end in natural order (1..22, X, Y, XY, MT).

    Returns:
        x (m,) float64, chromosome rank (m,) int64, chromosome names in order, tick centres (c,).
    """
    codes, names = _chrom_codes(table)
    pos = np.asarray(_column(table, "POS"), dtype=np.float64)
    order = sorted(range(len(names)), key=lambda k: chrom_order_key(names[k]))
    rank_of_code = np.empty(len(names), dtype=np.int64)
    rank_of_code[order] = np.arange(len(names))
    rank = rank_of_code[codes]
    lengths = np.zeros(len(names))
    np.maximum.at(lengths, rank, pos)
    gap = 0.01 * lengths.sum()
    offsets = np.concatenate([[0.0], np.cumsum(lengths + gap)[:-1]])
    return pos + offsets[rank], rank, [names[k] for k in order], offsets + lengths / 2


def nice_top(value: float) -> float:
    """Smallest of 1, 1.5, 2, 3, 5, 7.5 × 10^k that is >= ``value`` (> 0): y ranges that frames share."""
    value = max(float(value), 1e-12)
    decade = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0):
        if step * decade >= value * (1 - 1e-12):
            return step * decade
    return 10.0 * decade


def _shared_top(own: float, tops: list[float]) -> float:
    """The y range to draw with: the smallest existing ``tops`` in [own, 2 × own], else ``own``, so a run's
    plots of similar strength share one frame and no plot is flattened by more than half."""
    fitting = [top for top in tops if own <= top <= 2 * own]
    return min(fitting, default=own)


class PngWriter:
    """Encodes and writes PNGs on one background thread (zlib releases the GIL), atomically (see
    :func:`gwas.raster.write_png`).

    Use as a context manager; leaving it waits for every file and re-raises the first error.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="png-writer")
        self._pending: list[Future] = []

    def submit(self, pixels: np.ndarray, path: str | os.PathLike, dpi: int) -> None:
        """Queue (H, W) palette indices or (H, W, 3) RGB uint8 for ``path`` (the array must not change
        afterwards)."""
        self._pending.append(self._pool.submit(write_png, pixels, path, dpi))

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every queued file; re-raise the first error unless ``raise_errors`` is False."""
        try:
            errors = [job.exception() for job in self._pending]
        finally:
            self._pool.shutdown(wait=True)
        first = next((error for error in errors if error is not None), None)
        if first is not None and raise_errors:
            raise first

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(raise_errors=exc_type is None)  # an error of the caller's is not masked by ours


class _Frame:
    """A plot's static part (axes, ticks, labels; fixed x and y ranges) drawn once; each plot copies it.

    Args:
        size: inches (width, height); margins: inches (left, bottom, right, top) around the axes.
    """

    def __init__(
        self,
        size: tuple[float, float],
        dpi: int,
        margins: tuple[float, float, float, float],
        xlim: tuple[float, float],
        ylim: tuple[float, float],
    ):
        self.dpi = dpi
        width, height = round(size[0] * dpi), round(size[1] * dpi)
        left, bottom, right, top = (round(m * dpi) for m in margins)
        self.box = (left, top, width - right - 1, height - bottom - 1)  # axes: left, top, right, bottom
        self.xlim, self.ylim = xlim, ylim
        self.raster = Raster.blank(width, height)
        self.font = points_to_pixels(10, dpi)

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of the axes in pixels."""
        left, top, right, bottom = self.box
        return right - left + 1, bottom - top + 1

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Data (x, y) → float pixel centres."""
        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        px = left + (np.asarray(x, dtype=np.float64) - x0) / (x1 - x0) * (right - left)
        py = bottom - (np.asarray(y, dtype=np.float64) - y0) / (y1 - y0) * (bottom - top)
        return px, py

    def axes(self, xticks: np.ndarray, xlabels: list[str], xsize: int, xlabel: str, ylabel: str) -> None:
        """Left and bottom spines, y ticks at nice values, x ticks at ``xticks`` with ``xlabels``."""
        left, top, right, bottom = self.box
        raster, tick = self.raster, max(2, round(3.5 * self.dpi / 72))
        raster.vline(left, top, bottom, BLACK)
        raster.hline(bottom, left, right, BLACK)
        for value in nice_ticks(self.ylim[1]):
            _, y = self.to_pixels(np.array([self.xlim[0]]), np.array([value]))
            row = int(round(y[0]))
            raster.hline(row, left - tick, left - 1, BLACK)
            raster.text(left - tick - 3, row, tick_label(value), self.font, anchor="rm")
        xs, _ = self.to_pixels(np.asarray(xticks, dtype=np.float64), np.zeros(len(xticks)))
        for x, label in zip(xs, xlabels, strict=True):
            raster.vline(int(round(x)), bottom + 1, bottom + tick, BLACK)
            raster.text(x, bottom + tick + 2, label, xsize, anchor="mt")
        raster.text((left + right) / 2, raster.pixels.shape[0] - 4, xlabel, self.font, anchor="md")
        raster.text(6, (top + bottom) / 2, ylabel, self.font, anchor="mt", rotate=True)

    def render(self, draw, title: str, writer: PngWriter | None, path: str | os.PathLike) -> None:
        """Copy the static part, let ``draw(raster)`` add the plot's marks, add the title, write the PNG."""
        raster = self.raster.copy()
        draw(raster)
        left, top, right, _ = self.box
        raster.text((left + right) / 2, top - 6, title, self.font, anchor="md")
        if writer is None:
            write_png(raster.pixels, path, self.dpi)
        else:
            writer.submit(raster.pixels, path, self.dpi)


class ManhattanPlotter:
    """Manhattan plots of many LOG10_P vectors over the same variants, sharing frames.

    Args:
        table: pandas or polars table with CHROM and POS, one row per variant (m rows).
        genome_wide: P threshold drawn as a dashed line (5e-8).
        thin_below: LOG10_P up to which points are thinned to one per pixel (see ``thin_points``).
    """

    def __init__(
        self,
        table,
        *,
        genome_wide: float = GENOME_WIDE_P,
        thin_below: float = 2.0,
        size: tuple[float, float] = (12.0, 4.5),
        dpi: int = 150,
    ):
        self.x, self.rank, self.names, self.centres = manhattan_coordinates(table)
        self.line = -math.log10(genome_wide)
        self.thin_below, self.size, self.dpi = thin_below, size, dpi
        pad = 0.005 * (float(np.ptp(self.x)) if self.x.size else 1.0)
        self.xlim = (self.x.min(initial=0.0) - pad, self.x.max(initial=1.0) + pad)
        self._frames: dict[float, _Frame] = {}

    def _frame(self, top: float) -> _Frame:
        if top in self._frames:
            return self._frames[top]
        frame = _Frame(self.size, self.dpi, (0.7, 0.55, 0.15, 0.35), self.xlim, (0.0, top))
        labels = [n if len(self.names) < 30 or k % 2 == 0 else "" for k, n in enumerate(self.names)]
        frame.axes(self.centres, labels, points_to_pixels(7, self.dpi), "chromosome", LOG10_LABEL)
        self._frames[top] = frame
        return frame

    def plot(
        self, log10_p: np.ndarray, path: str | os.PathLike, title: str = "", writer: PngWriter | None = None
    ) -> int:
        """Draw (m,) LOG10_P (NaN: not drawn; +inf: at the top) and write the PNG; return points drawn."""
        log10p = np.asarray(log10_p, dtype=np.float64)
        finite_max = np.nanmax(np.where(np.isinf(log10p), np.nan, log10p), initial=0.0)
        log10p = np.where(np.isposinf(log10p), finite_max, log10p)  # P = 0 without LOG10_P: top of the plot
        top = _shared_top(nice_top(max(finite_max, self.line) * 1.08 + 0.5), list(self._frames))
        frame = self._frame(top)
        width, height = frame.pixels
        bins = (width, max(1, math.ceil(height * self.thin_below / top)))
        drawn = thin_points(self.x, log10p, self.thin_below, bins, x_range=self.xlim)
        radius = 0.8 * self.dpi / 72  # 1.6 pt across

        def draw(raster: Raster) -> None:
            for parity in (0, 1):
                sel = drawn[self.rank[drawn] % 2 == parity]
                px, py = frame.to_pixels(self.x[sel], log10p[sel])
                raster.disks(px, py, radius, INDEX[f"point{parity}"], frame.box)
            _, line = frame.to_pixels(np.zeros(1), np.array([self.line]))
            left, _, right, _ = frame.box
            dash = (round(3.7 * self.dpi / 72), round(1.6 * self.dpi / 72))
            raster.hline(int(round(line[0])), left + 1, right, INDEX["line"], width=2, dash=dash)

        frame.render(draw, title, writer, path)
        return int(drawn.size)


def manhattan(
    sumstats,
    path: str | os.PathLike,
    *,
    phenotype: str | None = None,
    title: str | None = None,
    genome_wide: float = GENOME_WIDE_P,
    thin_below: float = 2.0,
    size: tuple[float, float] = (12.0, 4.5),
    dpi: int = 150,
) -> int:
    """Draw a Manhattan plot of LOG10_P (or P) against genome position and write it as PNG.

    Args:
        sumstats: pandas or polars table with CHROM, POS and LOG10_P (or P); ``phenotype`` selects rows
            of one phenotype from a long-format table.
        genome_wide: P threshold drawn as a dashed line (5e-8).
        thin_below: LOG10_P up to which points are thinned to one per pixel (see ``thin_points``).

    Returns:
        number of points drawn.
    """
    if phenotype is not None:
        keep = _column(sumstats, "phenotype") == phenotype
        sumstats = sumstats[keep] if isinstance(sumstats, pd.DataFrame) else sumstats.filter(keep)
    plotter = ManhattanPlotter(sumstats, genome_wide=genome_wide, thin_below=thin_below, size=size, dpi=dpi)
    return plotter.plot(_log10_p(sumstats), path, title or (phenotype or ""))


def qq_coordinates(log10_p: np.ndarray, ci: float = 0.95, n_band: int = 400) -> dict[str, np.ndarray]:
    """Expected and observed -log10 P (descending) and the pointwise ``ci`` band of uniform order stats.

    Returns:
        dict with ``expected`` and ``observed`` (m,), and ``band_x``, ``band_low``, ``band_high`` (b,).
    """
    observed = np.sort(np.asarray(log10_p, dtype=np.float64)[~np.isnan(log10_p)])[::-1]
    m = observed.size
    ranks = np.arange(1, m + 1, dtype=np.float64)
    expected = -np.log10((ranks - 0.5) / m)
    grid = np.unique(np.round(np.geomspace(1, max(m, 1), n_band)).astype(np.int64))
    alpha = (1 - ci) / 2
    from scipy import special  # imported when used: it costs ~0.3 s at start-up

    low = -np.log10(special.betaincinv(grid, m - grid + 1, 1 - alpha))  # Beta quantiles
    high = -np.log10(special.betaincinv(grid, m - grid + 1, alpha))
    return {"expected": expected, "observed": observed, "band_x": expected[grid - 1] if m else grid * 0.0,
            "band_low": low, "band_high": high}  # fmt: skip


class QQPlotter:
    """QQ plots of many LOG10_P vectors, sharing a frame per (number of values, y range)."""

    def __init__(
        self,
        *,
        ci: float = 0.95,
        thin_below: float = 2.0,
        size: tuple[float, float] = (5.0, 5.0),
        dpi: int = 150,
    ):
        self.ci, self.thin_below, self.size, self.dpi = ci, thin_below, size, dpi
        self._frames: dict[tuple[int, float], tuple[_Frame, dict]] = {}

    def _frame(self, m: int, top: float) -> tuple[_Frame, dict]:
        if (m, top) in self._frames:
            return self._frames[(m, top)]
        coords = qq_coordinates(np.zeros(m), self.ci)  # expected values and band depend on m only
        diagonal = coords["expected"].max(initial=1.0)
        frame = _Frame(self.size, self.dpi, (0.7, 0.55, 0.15, 0.35), (0.0, diagonal * 1.02), (0.0, top))
        bx, low = frame.to_pixels(coords["band_x"], coords["band_low"])
        _, high = frame.to_pixels(coords["band_x"], coords["band_high"])
        if bx.size:
            frame.raster.polygon(
                np.column_stack([np.r_[bx, bx[::-1]], np.r_[low, high[::-1]]]), INDEX["band"]
            )
        ends = np.column_stack(frame.to_pixels(np.array([0.0, diagonal]), np.array([0.0, diagonal])))
        frame.raster.line(ends, INDEX["line"], width=max(1, round(0.8 * self.dpi / 72)))
        xticks = nice_ticks(diagonal * 1.02)
        frame.axes(xticks, [tick_label(v) for v in xticks], frame.font, f"expected {LOG10_LABEL}",
                   f"observed {LOG10_LABEL}")  # fmt: skip
        self._frames[(m, top)] = (frame, coords)
        return self._frames[(m, top)]

    def plot(
        self, log10_p, path: str | os.PathLike, title: str = "", writer: PngWriter | None = None
    ) -> float:
        """Draw (m,) LOG10_P (or a table with LOG10_P or P) and write the PNG; return lambda_GC."""
        if hasattr(log10_p, "columns"):
            log10_p = _log10_p(log10_p)
        log10_p = np.asarray(log10_p, dtype=np.float64)
        finite = log10_p[~np.isnan(log10_p)]
        finite = np.where(np.isposinf(finite), np.max(finite[np.isfinite(finite)], initial=0.0), finite)
        observed = np.sort(finite)[::-1]
        m = observed.size
        lam = lambda_gc(log10_p=finite)
        expected_max = -math.log10(0.5 / m) if m else 1.0
        own = nice_top(max(observed.max(initial=1.0), expected_max) * 1.05)
        top = _shared_top(own, [t for size, t in self._frames if size == m])
        frame, coords = self._frame(m, top)
        expected = coords["expected"]
        width, height = frame.pixels
        bins = (width, max(1, math.ceil(height * self.thin_below / top)))
        drawn = thin_points(expected, observed, self.thin_below, bins, x_range=frame.xlim)

        def draw(raster: Raster) -> None:
            px, py = frame.to_pixels(expected[drawn], observed[drawn])
            raster.disks(px, py, 1.0 * self.dpi / 72, INDEX["point0"], frame.box)  # 2 pt across
            left, top_pixel, right, bottom = frame.box
            raster.text(left + 0.04 * (right - left), top_pixel + 0.06 * (bottom - top_pixel),
                        f"λ_GC = {lam:.3f}", frame.font, anchor="lt")  # fmt: skip

        frame.render(draw, title, writer, path)
        return lam


def qq(
    log10_p,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    ci: float = 0.95,
    thin_below: float = 2.0,
    size: tuple[float, float] = (5.0, 5.0),
    dpi: int = 150,
) -> float:
    """Draw a QQ plot of observed vs expected -log10 P with a ``ci`` band and lambda_GC; write PNG.

    Args:
        log10_p: (m,) -log10 P, or a pandas/polars table with LOG10_P (or P).

    Returns:
        lambda_GC of the plotted values.
    """
    return QQPlotter(ci=ci, thin_below=thin_below, size=size, dpi=dpi).plot(log10_p, path, title or "")
