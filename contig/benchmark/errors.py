"""Typed error of the benchmark harness (a ``ContigError``, so the CLI reports it in one line)."""

from __future__ import annotations

from contig.errors import ContigError


class BenchmarkError(ContigError, ValueError):
    """A benchmark configuration, label table, feature table or encoder source that cannot be used."""
