"""Label-fraction curves: one PNG per task, metric vs label fraction (log x), one line per method.

A panel per (metric, protocol). The line is the mean over seeds; the band is the bootstrap interval
with one seed, and the spread (min to max) of the seeds' values with several.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.atomic import atomic_path


def plot_task(results: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Draw the rows of one task of a results table (``harness.COLUMNS``) to ``path`` (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(results["metric"]))
    protocols = list(dict.fromkeys(results["protocol"]))
    figure, axes = plt.subplots(
        len(metrics), len(protocols), figsize=(4.2 * len(protocols), 3.2 * len(metrics)), squeeze=False
    )
    for i, metric in enumerate(metrics):
        for j, protocol in enumerate(protocols):
            ax = axes[i, j]
            panel = results[(results["metric"] == metric) & (results["protocol"] == protocol)]
            for method, rows in panel.groupby("method", sort=False):
                line, low, high = _curve(rows)
                ax.plot(line.index, line.to_numpy(), marker="o", label=str(method))
                ax.fill_between(line.index, low.to_numpy(), high.to_numpy(), alpha=0.2)
            ax.set_xscale("log")
            fractions = sorted(panel["fraction"].unique())
            ax.set_xticks(fractions, [f"{100 * f:g}%" for f in fractions])
            ax.minorticks_off()
            ax.set_xlabel("label fraction")
            ax.set_ylabel(metric)
            ax.set_title(f"{results['task'].iloc[0]} · {protocol}")
            ax.grid(True, which="both", alpha=0.3)
            if len(panel):
                ax.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return path


def _curve(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Mean over seeds per fraction, and the band (bootstrap interval for one seed, seed spread else)."""
    by_fraction = rows.groupby("fraction")
    line = by_fraction["value"].mean()
    if by_fraction["seed"].nunique().max() > 1:
        return line, by_fraction["value"].min(), by_fraction["value"].max()
    low, high = by_fraction["low"].mean(), by_fraction["high"].mean()
    return line, low.where(np.isfinite(low), line), high.where(np.isfinite(high), line)  # undefined → no band
