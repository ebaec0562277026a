"""One genotype-reader interface over PLINK 1 ``.bed``, plink2 ``.pgen`` and BGEN, and the factory that opens them.

Every reader has ``bim`` (CHROM ID CM POS ALT REF), ``fam`` (FID IID PAT MAT SEX PHENO), ``n_samples``,
``n_variants``, ``read``/``iter_chunks`` (samples × variants float32 ALT dosage, NaN = missing),
``read_zero_missing`` (the GWAS fast path), ``with_hardcalls`` (the view QC filters count, as plink2) and
the paths ``bed_path``/``bim_path``/``fam_path`` of its genotype, variant and sample files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from genetics.bgen import BgenFileset
from genetics.errors import GenotypeFormatError
from genetics.pgen import PgenFileset
from genetics.plink import PlinkFileset


class GenotypeReader(Protocol):
    """What gwas, pgs, burden, QC and the SNP modality use of a genotype file."""

    bim: pd.DataFrame
    fam: pd.DataFrame
    bed_path: Path
    bim_path: Path
    fam_path: Path

    @property
    def n_samples(self) -> int: ...

    @property
    def n_variants(self) -> int: ...

    def read(
        self, variants: slice | np.ndarray | None = None, samples: np.ndarray | None = None
    ) -> np.ndarray: ...

    def iter_chunks(
        self, chunk_size: int = 4096, variants: np.ndarray | None = None, samples: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def read_zero_missing(
        self, variants: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def with_hardcalls(self) -> GenotypeReader: ...


def open_genotypes(
    path: str | os.PathLike,
    sample: str | os.PathLike | None = None,
    ref: str | None = None,
) -> PlinkFileset | PgenFileset | BgenFileset:
    """Open a genotype file by its name: ``X.bgen``, ``X.pgen`` (or .pvar/.psam), ``X.bed`` (or .bim/.fam),
    or a prefix that has exactly one of the PLINK filesets.

    Args:
        sample: the BGEN's ``.sample`` file (default: ``X.sample`` beside it, else the BGEN's own IDs).
        ref: BGEN allele order, plink2's ``ref-first``/``ref-last``/``ref-unknown`` (required for BGEN).

    >>> import numpy as np, tempfile, pathlib
    >>> from genetics.plink import write_plink
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_plink(d / "toy", np.array([[0, 1], [2, np.nan]], dtype=np.float32))
    >>> open_genotypes(d / "toy").read().tolist()
    [[0.0, 1.0], [2.0, nan]]
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bgen":
        if ref is None:
            raise GenotypeFormatError(
                f"{path}: say which BGEN allele is REF: ref-first (UK Biobank imputed files), ref-last "
                "(plink-exported files) or ref-unknown, as plink2 --bgen requires"
            )
        if sample is None and path.with_suffix(".sample").is_file():
            sample = path.with_suffix(".sample")
        return BgenFileset(path, sample, ref)
    if suffix in (".pgen", ".pvar", ".psam"):
        return PgenFileset(path)
    if suffix in (".bed", ".bim", ".fam"):
        return PlinkFileset(path)
    has_pgen, has_bed = Path(f"{path}.pgen").is_file(), Path(f"{path}.bed").is_file()
    if has_pgen and has_bed:
        raise GenotypeFormatError(
            f"{path}: both {path.name}.pgen and {path.name}.bed exist; name the one to read "
            "(--pfile for .pgen, --bfile for .bed)"
        )
    if has_pgen:
        return PgenFileset(path)
    if has_bed:
        return PlinkFileset(path)
    raise GenotypeFormatError(
        f"{path}: no genotype file found (looked for .bgen, {path.name}.pgen and {path.name}.bed); "
        "give a PLINK prefix or a .bgen file"
    )
