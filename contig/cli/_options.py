"""Flags shared by several subcommands: genotype QC with plink2 names."""

from __future__ import annotations

from collections.abc import Callable

import click
import numpy as np

from genetics.plink import PlinkFileset
from genetics.qc import QCConfig, apply_qc

_QC_FLAGS = [
    click.option("--maf", type=float, default=None, help="Keep variants with minor allele frequency >= MAF."),
    click.option("--geno", type=float, default=None, help="Remove variants with missing call rate > GENO."),
    click.option("--mind", type=float, default=None, help="Remove samples with missing call rate > MIND."),
    click.option("--hwe", type=float, default=None, help="Remove variants with exact HWE p < HWE."),
    click.option("--chr", "chromosomes", default=None, help="Chromosomes to keep, e.g. '1-22,X'."),
    click.option("--extract", type=click.Path(dir_okay=False), default=None, help="Variant ID list to keep."),
    click.option("--exclude", type=click.Path(dir_okay=False), default=None, help="Variant ID list to drop."),
    click.option(
        "--keep", type=click.Path(dir_okay=False), default=None, help="Sample list (FID IID) to keep."
    ),
    click.option("--remove", type=click.Path(dir_okay=False), default=None, help="Sample list to drop."),
]
_QC_KEYS = ("maf", "geno", "mind", "hwe", "chromosomes", "extract", "exclude", "keep", "remove")


def qc_options(function: Callable) -> Callable:
    """Add the plink2-style QC flags to a click command."""
    for option in reversed(_QC_FLAGS):
        function = option(function)
    return function


def open_with_qc(kw: dict) -> tuple[PlinkFileset, np.ndarray | None, np.ndarray | None]:
    """Open ``--bfile`` and apply the QC flags in ``kw``.

    Returns:
        (fileset, kept variant indices or None, (N,) bool sample mask or None) — None when no filter was given.
    """
    fileset = PlinkFileset(kw["bfile"])
    config = {key: kw[key] for key in _QC_KEYS if kw.get(key) is not None}
    if not config:
        return fileset, None, None
    result = apply_qc(fileset, QCConfig(**config))
    click.echo("qc: " + ", ".join(f"{name} {count}" for name, count in result.report.items()), err=True)
    mask = np.zeros(fileset.n_samples, dtype=bool)
    mask[result.samples] = True
    return fileset, result.variants, mask
