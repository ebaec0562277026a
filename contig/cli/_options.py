"""Flags shared by several subcommands: the genotype file and genotype QC, with plink2 names."""

from __future__ import annotations

from collections.abc import Callable

import click

from genetics.bgen import REF_MODES, BgenFileset
from genetics.genotypes import GenotypeReader
from genetics.pgen import PgenFileset
from genetics.plink import PlinkFileset
from genetics.qc import QCConfig

_GENOTYPE_FLAGS = [
    click.option("--bfile", metavar="PREFIX", default=None, help="PLINK 1 fileset PREFIX.bed/.bim/.fam."),
    click.option(
        "--pfile", metavar="PREFIX", default=None, help="plink2 fileset PREFIX.pgen/.pvar/.psam (dosages)."
    ),
    click.option(
        "--bgen", metavar="FILE", default=None, help="BGEN v1.2/1.3 file (dosages); needs --bgen-ref."
    ),
    click.option("--sample", metavar="FILE", default=None, help="The BGEN's .sample file."),
    click.option(
        "--bgen-ref",
        type=click.Choice(REF_MODES),
        default=None,
        help="Which BGEN allele is REF (plink2 --bgen modifier): UK Biobank files are ref-first, "
        "plink-exported ones ref-last.",
    ),
]

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


def genotype_options(function: Callable) -> Callable:
    """Add --bfile, --pfile and --bgen/--sample/--bgen-ref (one genotype file) to a click command."""
    for option in reversed(_GENOTYPE_FLAGS):
        function = option(function)
    return function


def open_genotype_flags(kw: dict) -> GenotypeReader:
    """Open the one genotype file named by --bfile, --pfile or --bgen in ``kw``."""
    given = [flag for flag in ("bfile", "pfile", "bgen") if kw.get(flag)]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one genotype input: --bfile PREFIX, --pfile PREFIX or --bgen FILE"
        )
    if kw.get("sample") and not kw.get("bgen") or kw.get("bgen_ref") and not kw.get("bgen"):
        raise click.UsageError("--sample and --bgen-ref go with --bgen")
    if kw.get("bfile"):
        return PlinkFileset(kw["bfile"])
    if kw.get("pfile"):
        return PgenFileset(kw["pfile"])
    if not kw.get("bgen_ref"):
        raise click.UsageError(
            "--bgen needs --bgen-ref ref-first|ref-last|ref-unknown, as plink2 --bgen does: UK Biobank "
            "imputed files are ref-first, plink-exported ones ref-last"
        )
    return BgenFileset(kw["bgen"], kw.get("sample"), kw["bgen_ref"])


def qc_config(kw: dict) -> QCConfig | None:
    """The QC flags in ``kw`` as a :class:`QCConfig`, or None when no filter was given."""
    config = {key: kw[key] for key in _QC_KEYS if kw.get(key) is not None}
    return QCConfig(**config) if config else None
