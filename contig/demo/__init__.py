"""``contig demo``: the whole pipeline on the built-in synthetic biobank (see ``contig.demo.pipeline``)."""

from contig.demo.pipeline import run_demo

__all__ = ["run_demo"]
