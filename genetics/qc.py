"""Streamed genotype QC with plink2 semantics: per-variant and per-sample statistics, and filters.

Statistics are accumulated over variant chunks (samples × chunk blocks), never the whole matrix.
plink2 rules reproduced here (checked against plink2 2.00a3.5 in tests/genetics/test_qc.py):

* Founders (PAT and MAT both ``0``) alone give allele frequencies, genotype counts and HWE p-values;
  every selected sample counts for missingness.
* Ploidy: chrX counts males as haploid (a het call is half an allele), chrY counts males only, chrMT is
  haploid for everyone; a het call on a haploid chromosome is not missing. chrY missingness counts males
  only, so a non-male's missing rate leaves chrY out.
* Order: --chr, --extract, --exclude, --keep, --remove, then --mind (over the remaining variants), then
  --geno, --hwe and --maf, all three on statistics of the samples --mind kept.
* Ties are kept: MAF equal to --maf, missing rate equal to --geno/--mind, p equal to --hwe
  (comparisons carry plink2's relative tolerance 2^-44). A variant with no called founder has no
  frequency and passes --maf.
* HWE p-values (founders, exact test) cover autosomes and XY; chrX (plink2: Graffelman–Weir), chrY and
  chrMT get NaN and are not HWE-filtered.
* Dosage files (.pgen, BGEN) are filtered on their hard calls (``with_hardcalls()``: the .pgen's stored
  calls; a BGEN dosage within 0.1 of an integer, plink2's --hard-call-threshold), so a dosage far from
  an integer counts as missing for --geno/--mind. plink2 takes --maf from dosages; here MAF comes from
  the hard calls too.
* --keep/--remove lists go through :func:`genetics.samples.select_samples`: a one-column list matches
  IIDs, whereas plink2 2.00a3.5 reads it as IIDs with FID ``0``. Two-column lists behave the same.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genetics.errors import GeneticsError
from genetics.hwe import SMALL_EPSILON, hwe_pvalue
from genetics.plink import PlinkFileset
from genetics.samples import read_id_list, read_variant_list, select_samples

CHROM_ORDER = tuple(str(i) for i in range(1, 23)) + ("X", "Y", "XY", "MT")
_ALIASES = {"23": "X", "24": "Y", "25": "XY", "26": "MT", "M": "MT"}
_KIND = {"X": "X", "Y": "Y", "MT": "MT"}


def normalize_chromosome(code: str | int) -> str:
    """plink's name for a chromosome code: ``chr`` prefix dropped, 23-26/M as X Y XY MT, ``01`` as ``1``.

    >>> [normalize_chromosome(c) for c in ("chr1", "01", "23", "x", "chrM", "scaffold_7")]
    ['1', '1', 'X', 'X', 'MT', 'scaffold_7']
    """
    text = str(code).strip()
    if text[:3].lower() == "chr":
        text = text[3:]
    upper = text.upper()
    if upper.isdigit():
        upper = str(int(upper))
    upper = _ALIASES.get(upper, upper)
    return upper if upper in CHROM_ORDER or upper == "0" else text


def normalize_chromosomes(labels: np.ndarray | Sequence[str]) -> np.ndarray:
    """(m,) normalised chromosome names (see :func:`normalize_chromosome`), mapped once per distinct label."""
    series = pd.Series(np.asarray(labels, dtype=str))
    names = {label: normalize_chromosome(label) for label in series.unique()}
    return series.map(names).to_numpy(dtype=object)


def chromosome_kinds(labels: np.ndarray | Sequence[str]) -> np.ndarray:
    """(m,) ploidy class per variant: "X", "Y", "MT" or "auto" (autosomes, XY, 0 and other contigs)."""
    return np.array([_KIND.get(name, "auto") for name in normalize_chromosomes(labels)], dtype=object)


def parse_chromosomes(
    spec: str | int | Sequence[str | int], available: Sequence[str] | None = None
) -> set[str]:
    """Chromosome names selected by a plink --chr style spec such as ``"1-3,5,X"`` or ``["1", 22, "MT"]``.

    Ranges run over 1..22, X, Y, XY, MT (plink order). A code outside those (and 0) must be a contig
    named in ``available`` (e.g. the .bim CHROM column), else :class:`GeneticsError` names it.

    >>> sorted(parse_chromosomes("1-3, 5 x"), key=CHROM_ORDER.index)
    ['1', '2', '3', '5', 'X']
    """
    items = [spec] if isinstance(spec, str | int) else list(spec)
    tokens = [t for item in items for t in str(item).replace(",", " ").split()]
    contigs = set(normalize_chromosomes(available)) if available is not None else set()
    chosen: set[str] = set()
    for token in tokens:
        name = normalize_chromosome(token)
        if name in CHROM_ORDER or name == "0" or name in contigs:
            chosen.add(name)
            continue
        ends = [normalize_chromosome(t) for t in token.split("-")]
        if len(ends) == 2 and all(e in CHROM_ORDER for e in ends):
            first, last = CHROM_ORDER.index(ends[0]), CHROM_ORDER.index(ends[1])
            if first <= last:
                chosen.update(CHROM_ORDER[first : last + 1])
                continue
        raise GeneticsError(
            f"unknown chromosome code {token!r} in chromosome selection {spec!r}; use 1-22, X, Y, XY, MT "
            "(or 23-26), ascending ranges such as 1-3, or a contig named in the .bim"
        )
    return chosen


def founder_mask(fam: pd.DataFrame) -> np.ndarray:
    """(N,) bool: plink2 founders, i.e. both parent IDs are ``0`` (a listed parent absent from the .fam
    still makes a non-founder, as in plink2)."""
    return ((fam["PAT"].astype(str) == "0") & (fam["MAT"].astype(str) == "0")).to_numpy()


def male_mask(fam: pd.DataFrame) -> np.ndarray:
    """(N,) bool: SEX == 1."""
    return (pd.to_numeric(fam["SEX"], errors="coerce") == 1).to_numpy()


def ploidy_weights(kind: str, male: np.ndarray) -> np.ndarray:
    """(n,) allele copies each sample contributes on a chromosome kind ("auto", "X", "Y", "MT")."""
    if kind == "X":
        return np.where(male, 1.0, 2.0)
    if kind == "Y":
        return np.where(male, 1.0, 0.0)
    if kind == "MT":
        return np.ones(male.shape)
    return np.full(male.shape, 2.0)


GENOTYPE_CODES = {"hom_alt": 2, "het": 1, "hom_ref": 0}
STAT_COLUMNS = (
    "CHROM", "ID", "ALT_FREQ", "MAF", "ALLELE_CT", "MISSING_CT", "SAMPLE_CT", "F_MISS",
    "HOM_ALT_CT", "HET_CT", "HOM_REF_CT", "HWE_P",
)  # fmt: skip


def _block_stats(block: np.ndarray, kinds: np.ndarray, male: np.ndarray, founder: np.ndarray) -> dict:
    """Sums over samples for one samples × variants block; every output is (m,) float64."""
    called = ~np.isnan(block)
    fb = block if founder.all() else block[founder]
    out = {key: (fb == code).sum(axis=0).astype(np.float64) for key, code in GENOTYPE_CODES.items()}
    out["alt"] = 2.0 * out["hom_alt"] + out["het"]
    out["alleles"] = 2.0 * (out["hom_alt"] + out["het"] + out["hom_ref"])
    out["missing"] = (~called).sum(axis=0).astype(np.float64)
    out["samples"] = np.full(block.shape[1], float(block.shape[0]))
    for kind in set(np.unique(kinds)) - {"auto"}:
        cols = np.flatnonzero(kinds == kind)
        weight = ploidy_weights(str(kind), male)[founder]
        out["alt"][cols] = (weight / 2) @ np.where(called[founder][:, cols], fb[:, cols], 0)
        out["alleles"][cols] = weight @ called[founder][:, cols]
        if kind == "Y":
            out["missing"][cols] = male.astype(np.float64) @ ~called[:, cols]
            out["samples"][cols] = male.sum()
    return out


def variant_stats(
    fileset: PlinkFileset,
    variants: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    chunk_size: int = 4096,
    midp: bool = False,
) -> pd.DataFrame:
    """Per-variant QC statistics over ``samples``, streamed in chunks of ``chunk_size`` variants.

    Returns:
        DataFrame indexed by .bim row with columns CHROM ID ALT_FREQ (founders, non-missing alleles)
        MAF (min(f, 1-f)) ALLELE_CT MISSING_CT SAMPLE_CT F_MISS HOM_ALT_CT HET_CT HOM_REF_CT (founder
        genotype counts) HWE_P (exact test over founders; NaN on X, Y, MT).
    """
    variants = np.arange(fileset.n_variants) if variants is None else np.asarray(variants, dtype=np.int64)
    samples = np.arange(fileset.n_samples) if samples is None else np.asarray(samples, dtype=np.int64)
    fam = fileset.fam.iloc[samples]
    male, founder = male_mask(fam), founder_mask(fam)
    kinds = chromosome_kinds(fileset.bim["CHROM"].to_numpy())
    keys = ("alt", "alleles", "missing", "samples", "hom_alt", "het", "hom_ref")
    parts: dict[str, list[np.ndarray]] = {key: [np.zeros(0)] for key in keys}
    for index, block in fileset.with_hardcalls().iter_chunks(chunk_size, variants, samples):
        for key, value in _block_stats(block, kinds[index], male, founder).items():
            parts[key].append(value)
    sums = {key: np.concatenate(value) for key, value in parts.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = sums["alt"] / sums["alleles"]
        f_miss = sums["missing"] / sums["samples"]
    hwe = hwe_pvalue(sums["hom_alt"], sums["het"], sums["hom_ref"], midp=midp)
    hwe[kinds[variants] != "auto"] = np.nan
    bim = fileset.bim.iloc[variants]
    return pd.DataFrame(
        {
            "CHROM": bim["CHROM"].to_numpy(),
            "ID": bim["ID"].to_numpy(),
            "ALT_FREQ": freq,
            "MAF": np.minimum(freq, 1 - freq),
            "ALLELE_CT": sums["alleles"],
            "MISSING_CT": sums["missing"].astype(np.int64),
            "SAMPLE_CT": sums["samples"].astype(np.int64),
            "F_MISS": f_miss,
            "HOM_ALT_CT": sums["hom_alt"].astype(np.int64),
            "HET_CT": sums["het"].astype(np.int64),
            "HOM_REF_CT": sums["hom_ref"].astype(np.int64),
            "HWE_P": hwe,
        },
        index=pd.Index(variants, name="variant"),
    )


def sample_missingness(
    fileset: PlinkFileset,
    variants: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    chunk_size: int = 4096,
) -> pd.DataFrame:
    """Per-sample missing calls over ``variants`` (chrY counts for males only), streamed by chunks.

    Returns:
        DataFrame indexed by .fam row with columns FID IID MISSING_CT OBS_CT F_MISS.
    """
    variants = np.arange(fileset.n_variants) if variants is None else np.asarray(variants, dtype=np.int64)
    samples = np.arange(fileset.n_samples) if samples is None else np.asarray(samples, dtype=np.int64)
    fam = fileset.fam.iloc[samples]
    male = male_mask(fam)
    is_y = chromosome_kinds(fileset.bim["CHROM"].to_numpy()) == "Y"
    missing = np.zeros(samples.size)
    for index, block in fileset.with_hardcalls().iter_chunks(chunk_size, variants, samples):
        missed = np.isnan(block)
        y = is_y[index]
        missing += missed[:, ~y].sum(axis=1) + missed[:, y].sum(axis=1) * male
    n_y = int(is_y[variants].sum())
    obs = np.where(male, variants.size, variants.size - n_y).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        f_miss = missing / obs
    return pd.DataFrame(
        {
            "FID": fam["FID"].to_numpy(),
            "IID": fam["IID"].to_numpy(),
            "MISSING_CT": missing.astype(np.int64),
            "OBS_CT": obs,
            "F_MISS": f_miss,
        },
        index=pd.Index(samples, name="sample"),
    )


@dataclass(frozen=True)
class QCConfig:
    """Filters with plink2 meaning; ``None`` switches a filter off.

    Attributes:
        maf: keep variants with MAF >= maf (--maf).
        geno: remove variants with missing rate > geno (--geno).
        mind: remove samples with missing rate > mind (--mind).
        hwe: remove variants with HWE exact p < hwe (--hwe); ``hwe_midp`` uses the mid-p value.
        chromosomes: keep these chromosomes, e.g. "1-3,5,X" or ["1", 2] (--chr).
        extract / exclude: variant ID list files (--extract / --exclude).
        keep / remove: sample ID list files, ``FID IID`` or ``IID`` per line (--keep / --remove).
    """

    maf: float | None = None
    geno: float | None = None
    mind: float | None = None
    hwe: float | None = None
    hwe_midp: bool = False
    chromosomes: str | Sequence[str | int] | None = None
    extract: str | os.PathLike | None = None
    exclude: str | os.PathLike | None = None
    keep: str | os.PathLike | None = None
    remove: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        for name in ("maf", "geno", "mind", "hwe"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= float(value) <= 1.0):
                raise ValueError(f"QCConfig.{name}={value!r} must be between 0 and 1")


@dataclass(frozen=True)
class QCResult:
    """Outcome of :func:`apply_qc`.

    Attributes:
        variants: (m_kept,) sorted .bim rows that pass every filter.
        samples: (n_kept,) sorted .fam rows that pass every filter.
        report: counts in and out and removed by each filter, in the order applied.
        variant_stats: statistics the variant filters used (None when no variant filter ran).
    """

    variants: np.ndarray
    samples: np.ndarray
    report: dict[str, int] = field(default_factory=dict)
    variant_stats: pd.DataFrame | None = None


def _apply(mask: np.ndarray, keep: np.ndarray, report: dict[str, int], name: str) -> np.ndarray:
    report[name] = int((mask & ~keep).sum())
    return mask & keep


def _list_filters(
    fileset: PlinkFileset, config: QCConfig, report: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(variant mask, sample mask) after --chr, --extract, --exclude, --keep, --remove."""
    bim, fam = fileset.bim, fileset.fam
    vmask = np.ones(fileset.n_variants, dtype=bool)
    smask = np.ones(fileset.n_samples, dtype=bool)
    if config.chromosomes is not None:
        wanted = parse_chromosomes(config.chromosomes, available=bim["CHROM"].to_numpy())
        names = normalize_chromosomes(bim["CHROM"].to_numpy())
        vmask = _apply(vmask, np.isin(names, sorted(wanted)), report, "chromosomes")
    if config.extract is not None:
        listed = set(read_variant_list(config.extract))
        vmask = _apply(vmask, bim["ID"].isin(listed).to_numpy(), report, "extract")
    if config.exclude is not None:
        listed = set(read_variant_list(config.exclude))
        vmask = _apply(vmask, ~bim["ID"].isin(listed).to_numpy(), report, "exclude")
    if config.keep is not None:
        listed = select_samples(fam, read_id_list(config.keep), str(config.keep))
        smask = _apply(smask, listed, report, "keep")
    if config.remove is not None:
        listed = select_samples(fam, read_id_list(config.remove), str(config.remove))
        smask = _apply(smask, ~listed, report, "remove")
    return vmask, smask


def _variant_filters(
    stats: pd.DataFrame, config: QCConfig, vmask: np.ndarray, report: dict[str, int]
) -> np.ndarray:
    """Variant mask after --geno, --hwe, --maf, each counted on what the previous ones left."""
    rows = stats.index.to_numpy()

    def passing(ok: np.ndarray) -> np.ndarray:
        keep = np.ones_like(vmask)
        keep[rows[~ok]] = False
        return keep

    if config.geno is not None:
        limit = config.geno * stats["SAMPLE_CT"].to_numpy() * (1 + SMALL_EPSILON)
        vmask = _apply(vmask, passing(stats["MISSING_CT"].to_numpy() <= limit), report, "geno")
    if config.hwe is not None:
        if (chromosome_kinds(stats["CHROM"].to_numpy()) == "X").any():
            warnings.warn(
                "chrX variants are not HWE-filtered (plink2 uses Graffelman–Weir there)", stacklevel=3
            )
        failed = stats["HWE_P"].to_numpy() < config.hwe * (1 - SMALL_EPSILON)  # NaN never fails
        vmask = _apply(vmask, passing(~failed), report, "hwe")
    if config.maf is not None:
        failed = stats["MAF"].to_numpy() < config.maf * (1 - SMALL_EPSILON)
        vmask = _apply(vmask, passing(~failed), report, "maf")
    return vmask


def apply_qc(fileset: PlinkFileset, config: QCConfig, chunk_size: int = 4096) -> QCResult:
    """Apply ``config`` in plink2's order and return the kept variant and sample indices.

    Memory is O(N × chunk_size); the genotype file is read at most twice (--mind, then the variant
    filters). Like plink2, a filter that leaves no sample or no variant raises :class:`GeneticsError`.
    """
    report: dict[str, int] = {"variants_in": fileset.n_variants, "samples_in": fileset.n_samples}
    vmask, smask = _list_filters(fileset, config, report)
    if not smask.any():
        raise GeneticsError(
            f"{fileset.fam_path}: no samples remain after --keep/--remove; check the ID lists"
        )
    if config.mind is not None:
        missing = sample_missingness(fileset, np.flatnonzero(vmask), np.flatnonzero(smask), chunk_size)
        limit = config.mind * missing["OBS_CT"].to_numpy() * (1 + SMALL_EPSILON)
        keep = np.ones_like(smask)
        keep[missing.index.to_numpy()[missing["MISSING_CT"].to_numpy() > limit]] = False
        smask = _apply(smask, keep, report, "mind")
        if not smask.any():
            raise GeneticsError(
                f"{fileset.prefix}: --mind {config.mind} removed every sample; raise the threshold"
            )
    stats = None
    if any(value is not None for value in (config.geno, config.hwe, config.maf)):
        variants, samples = np.flatnonzero(vmask), np.flatnonzero(smask)
        stats = variant_stats(fileset, variants, samples, chunk_size, config.hwe_midp)
        vmask = _variant_filters(stats, config, vmask, report)
    if not vmask.any():
        removed = {k: v for k, v in report.items() if k not in ("variants_in", "samples_in") and v}
        raise GeneticsError(f"{fileset.bim_path}: no variants remain after the filters (removed: {removed})")
    report["variants_out"] = int(vmask.sum())
    report["samples_out"] = int(smask.sum())
    return QCResult(np.flatnonzero(vmask), np.flatnonzero(smask), report, stats)
