"""Manhattan and QQ plots of GWAS summary statistics as PNG, fast on millions of variants.

Both plots take LOG10_P (-log10 P, finite even where P underflows to 0), never P. Points with LOG10_P at
or below ``thin_below`` are thinned to one per screen cell (deterministically: the first row in each
cell); every point above it is drawn. Figures are drawn with the Agg canvas directly (no pyplot, no
display, no global backend switch) and written atomically.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from scipy import special  # not scipy.stats: its import costs ~0.5 s at every start-up

from genetics._atomic import atomic_path
from gwas.clump import chrom_order_key

GENOME_WIDE_P = 5e-8
CHI2_MEDIAN_1DF = float(special.chdtri(1, 0.5))  # median of χ²(1) = 0.4549364231195724
COLORS = ("#1f4e79", "#6baed6")  # alternating chromosome colours


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
        picked = special.chdtri(1, 10.0**-picked)  # χ²(1) upper quantile
    return float(np.mean(picked) / CHI2_MEDIAN_1DF)


def thin_points(
    x: np.ndarray, y: np.ndarray, thin_below: float = 2.0, bins: tuple[int, int] = (2000, 200)
) -> np.ndarray:
    """Indices of the points to draw: every finite point with y > thin_below, one per cell below.

    Args:
        x, y: (m,) coordinates (y is LOG10_P; NaN points are dropped).
        thin_below: points with y <= this are binned on a ``bins`` = (x cells, y cells) grid over
            [min x, max x] × [0, thin_below] and the first point of each occupied cell is kept.

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
    x0, span = x[low].min(), max(float(np.ptp(x[low])), 1e-12)
    cx = np.minimum(((x[low] - x0) / span * nx).astype(np.int64), nx - 1)
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


def _new_figure(size: tuple[float, float]):
    """A matplotlib Figure with the Agg canvas (imported here: matplotlib is slow to import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike, dpi: int) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


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
    log10p = _log10_p(sumstats)
    x, rank, names, centres = manhattan_coordinates(sumstats)
    finite_max = np.nanmax(np.where(np.isinf(log10p), np.nan, log10p), initial=0.0)
    log10p = np.where(np.isposinf(log10p), finite_max, log10p)  # P = 0 without LOG10_P: top of the plot
    line = -math.log10(genome_wide)
    top = max(finite_max, line) * 1.08 + 0.5
    bins = (int(size[0] * dpi), max(1, int(size[1] * dpi * thin_below / top)))
    drawn = thin_points(x, log10p, thin_below, bins)
    fig = _new_figure(size)
    ax = fig.add_subplot()
    for parity, colour in enumerate(COLORS):
        sel = drawn[rank[drawn] % 2 == parity]
        ax.plot(x[sel], log10p[sel], ls="", marker="o", ms=1.6, mew=0, color=colour, rasterized=True)
    ax.axhline(line, color="#c0392b", ls="--", lw=0.8)
    ax.set_xticks(
        centres, [n if len(names) < 30 or k % 2 == 0 else "" for k, n in enumerate(names)], fontsize=7
    )
    pad = 0.005 * (np.ptp(x) if x.size else 1.0)
    ax.set_xlim(x.min(initial=0.0) - pad, x.max(initial=1.0) + pad)
    ax.set_ylim(0, top)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(r"$-\log_{10} P$")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or (phenotype or ""), fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi)
    return int(drawn.size)


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
    low = -np.log10(special.betaincinv(grid, m - grid + 1, 1 - alpha))  # Beta quantiles
    high = -np.log10(special.betaincinv(grid, m - grid + 1, alpha))
    return {"expected": expected, "observed": observed, "band_x": expected[grid - 1] if m else grid * 0.0,
            "band_low": low, "band_high": high}  # fmt: skip


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
    if hasattr(log10_p, "columns"):
        log10_p = _log10_p(log10_p)
    log10_p = np.asarray(log10_p, dtype=np.float64)
    finite = log10_p[~np.isnan(log10_p)]
    finite = np.where(np.isposinf(finite), np.max(finite[np.isfinite(finite)], initial=0.0), finite)
    coords = qq_coordinates(finite, ci)
    lam = lambda_gc(log10_p=finite)
    top = max(coords["observed"].max(initial=1.0), coords["expected"].max(initial=1.0)) * 1.05
    drawn = thin_points(coords["expected"], coords["observed"], thin_below, (int(size[0] * dpi), 200))
    fig = _new_figure(size)
    ax = fig.add_subplot()
    ax.fill_between(coords["band_x"], coords["band_low"], coords["band_high"], color="#dddddd", lw=0)
    diagonal = coords["expected"].max(initial=1.0)
    ax.plot([0, diagonal], [0, diagonal], color="#c0392b", lw=0.8)
    ax.plot(coords["expected"][drawn], coords["observed"][drawn], ls="", marker="o", ms=2, mew=0,
            color=COLORS[0], rasterized=True)  # fmt: skip
    ax.text(0.04, 0.94, rf"$\lambda_{{GC}}$ = {lam:.3f}", transform=ax.transAxes, va="top")
    ax.set_xlim(0, coords["expected"].max(initial=1.0) * 1.02)
    ax.set_ylim(0, top)
    ax.set_xlabel(r"expected $-\log_{10} P$")
    ax.set_ylabel(r"observed $-\log_{10} P$")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or "", fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi)
    return lam
