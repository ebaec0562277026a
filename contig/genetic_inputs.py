"""Build the three genetic modalities of a biobank folder once, into a run's ``inputs/`` folder.

* ``snp``: common variants (MAF ≥ ``snp_min_maf`` among the training people), thinned evenly along the
  genome to at most ``max_snps`` (as ContIG takes every 100th array SNP); stored as a memory-mapped int8
  :class:`genetics.snp_modality.SnpMatrix` standardised with training statistics. LD pruning
  (``ld_r2``, ``--indep-pairwise`` in kb, before thinning) is off by default: on the synthetic biobank it
  kept 968 of 12,557 common SNPs and left the planted variants tagged at median r² 0.24 (max 0.72), while
  plain thinning to 2,000 tags them at median r² 0.58 and to 4,000 at 0.88 (docs/contig.md).
* ``pgs``: every PGS Catalog scoring file of the folder's ``pgs/``, scored on the genotypes (SUM), then
  z-scored with training mean/SD → ``pgs.parquet``.
* ``burden``: gene burden scores from ``burden/annotations.tsv`` + ``masks.txt`` for the people listed in
  ``burden/samples.txt`` (everyone else is *absent*, not zero), z-scored → ``burden.parquet``.

People without genotypes are absent from all three; absence is what the availability mask carries.
Statistics come from the training people only and are stored, so ``contig embed``/``explain`` reuse them.

``inputs.json`` records what the build was made from (:func:`fingerprint`: the biobank folder, the
size and modification time of its genotype, PGS and burden files, the configuration and a digest of
the training people). A completed build is reused only when all of these match; otherwise the build is
refused with the differences named, so a run never trains on another data set's inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genetics.atomic import atomic_path, atomic_write_text
from genetics.burden import compute_burdens
from genetics.burden_inputs import read_annotations, read_masks
from genetics.errors import GeneticsError
from genetics.ld import indep_pairwise
from genetics.pgs import score
from genetics.plink import PlinkFileset
from genetics.qc import QCConfig, apply_qc
from genetics.record import MODALITIES, GeneticRecord
from genetics.snp_modality import SnpMatrix

DONE_FILE = "inputs.json"


@dataclass
class GeneticInputsConfig:
    """Which modalities to build and how (see the module docstring)."""

    modalities: tuple[str, ...] = MODALITIES
    max_snps: int = 2_000
    snp_min_maf: float = 0.05
    ld_window_kb: float = 250.0
    ld_r2: float | None = None
    burden_aaf_bins: tuple[float, ...] = (0.01,)

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise GeneticsError(
                f"genetic.modalities must be a non-empty subset of {list(MODALITIES)}; got {list(self.modalities)}"
            )


def _standardise(frame: pd.DataFrame, columns: list[str], train_iids: set[str]) -> pd.DataFrame:
    """z-score ``columns`` with the mean/SD of the training people's rows; constant columns are dropped."""
    train = frame[frame["IID"].isin(train_iids)]
    mean, sd = train[columns].mean(), train[columns].std(ddof=0)
    keep = [c for c in columns if np.isfinite(sd[c]) and sd[c] > 0]
    out = frame[["IID"]].copy()
    out[keep] = (frame[keep] - mean[keep]) / sd[keep]
    return out.astype({c: np.float32 for c in keep})


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _snp(fileset: PlinkFileset, train_rows: np.ndarray, config: GeneticInputsConfig, out: Path) -> dict:
    """Select, prune and thin variants on the training rows; write the SNP matrix of everyone."""
    with atomic_path(out / "train_keep.txt") as tmp:
        fileset.fam.iloc[train_rows][["FID", "IID"]].to_csv(tmp, sep="\t", index=False, header=False)
    qc = apply_qc(fileset, QCConfig(maf=config.snp_min_maf, keep=out / "train_keep.txt"))
    pruned = qc.variants
    if config.ld_r2 is not None:
        pruned = indep_pairwise(
            fileset,
            None,
            1,
            config.ld_r2,
            variants=qc.variants,
            samples=qc.samples,
            window_kb=config.ld_window_kb,
        )
    if pruned.size > config.max_snps:  # evenly spaced along the genome: a deterministic thinning
        pruned = pruned[np.linspace(0, pruned.size - 1, config.max_snps).round().astype(np.int64)]
    SnpMatrix.build(fileset, out / "snp", train_samples=train_rows, variants=pruned, standardize=True)
    return {"variants_after_maf": int(qc.variants.size), "variants_used": int(pruned.size)}


def _pgs(fileset: PlinkFileset, folder: Path, train: set[str], out: Path) -> dict:
    files = sorted((folder / "pgs").glob("*.txt")) + sorted((folder / "pgs").glob("*.txt.gz"))
    if not files:
        raise GeneticsError(
            f"{folder / 'pgs'}: no PGS Catalog scoring file (*.txt); drop 'pgs' from modalities"
        )
    result = score(fileset, files)
    columns = [c for c in result.scores.columns if c.endswith("_SUM")]
    table = _standardise(result.scores.astype({"IID": str}), columns, train)
    _write_parquet(table, out / "pgs.parquet")
    return {"scores": len(table.columns) - 1}


def _burden(
    fileset: PlinkFileset, folder: Path, train: set[str], config: GeneticInputsConfig, out: Path
) -> dict:
    burden = folder / "burden"
    result = compute_burdens(
        fileset,
        read_annotations(burden / "annotations.tsv"),
        read_masks(burden / "masks.txt"),
        aaf_bins=config.burden_aaf_bins,
    )
    frame = pd.DataFrame(result.matrix.toarray(), columns=list(result.columns["id"]))
    frame.insert(0, "IID", result.samples["IID"].astype(str).to_numpy())
    samples_file = burden / "samples.txt"
    if samples_file.is_file():  # people without exome data are absent, not zero
        listed = {line.split()[-1] for line in samples_file.read_text().splitlines() if line.strip()}
        if not listed:
            raise GeneticsError(
                f"{samples_file}: lists nobody; list the IIDs with exome data (one per line) or drop 'burden' "
                "from genetic.modalities"
            )
        frame = frame[frame["IID"].isin(listed)]
        if frame.empty:
            raise GeneticsError(
                f"{samples_file}: none of its {len(listed)} IIDs is in {fileset.fam_path}; "
                "check that both files use the same IIDs"
            )
    table = _standardise(frame, list(frame.columns[1:]), train)
    _write_parquet(table, out / "burden.parquet")
    return {"columns": len(table.columns) - 1, "people": len(table)}


def build_genetic_inputs(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    train_iids: Sequence[str],
    config: GeneticInputsConfig | None = None,
) -> dict:
    """Build the modalities of the biobank ``folder`` into ``out``; returns a summary (also ``inputs.json``).

    Reuses a completed build in ``out`` (``inputs.json`` is written last and marks completion).
    """
    config = config or GeneticInputsConfig()
    folder, out = Path(folder), Path(out)
    made_from = fingerprint(folder, train_iids, config)
    if (out / DONE_FILE).is_file():
        summary = json.loads((out / DONE_FILE).read_text())
        differs = sorted(k for k in made_from if summary.get("made_from", {}).get(k) != made_from[k])
        if differs:
            raise GeneticsError(
                f"{out}: genetic inputs were built from another {', '.join(differs)}; "
                "use a new output folder (or delete this one to rebuild)"
            )
        return summary
    out.mkdir(parents=True, exist_ok=True)
    fileset = PlinkFileset(folder / "genotypes")
    train = set(map(str, train_iids))
    train_rows = np.flatnonzero(fileset.fam["IID"].astype(str).isin(train).to_numpy())
    if train_rows.size < 10:
        raise GeneticsError(
            f"{fileset.fam_path}: only {train_rows.size} training people have genotypes; "
            "genetic statistics need at least 10"
        )
    summary: dict = {"modalities": list(config.modalities), "train_genotyped": int(train_rows.size)}
    summary["made_from"] = made_from
    if "snp" in config.modalities:
        summary["snp"] = _snp(fileset, train_rows, config, out)
    if "pgs" in config.modalities:
        summary["pgs"] = _pgs(fileset, folder, train, out)
    if "burden" in config.modalities:
        summary["burden"] = _burden(fileset, folder, train, config, out)
    atomic_write_text(out / DONE_FILE, json.dumps(summary, indent=2))
    return summary


def fingerprint(folder: Path, train_iids: Sequence[str], config: GeneticInputsConfig) -> dict:
    """What a build depends on: ``data`` (folder), ``files`` (size and mtime of each input file),
    ``config`` (the settings) and ``train_people`` (SHA-256 of the sorted training IIDs)."""
    inputs = [folder / f"genotypes.{ext}" for ext in ("bed", "bim", "fam")]
    inputs += sorted((folder / "pgs").glob("*.txt*")) + sorted((folder / "burden").glob("*"))
    files = {
        str(path.relative_to(folder)): [path.stat().st_size, path.stat().st_mtime_ns]
        for path in inputs
        if path.is_file()
    }
    people = hashlib.sha256("\n".join(sorted(map(str, train_iids))).encode()).hexdigest()
    settings = json.loads(json.dumps(dataclasses.asdict(config), default=list))
    return {"data": str(folder.resolve()), "files": files, "config": settings, "train_people": people}


def open_genetic_record(inputs: str | os.PathLike) -> GeneticRecord:
    """The :class:`GeneticRecord` of a completed ``build_genetic_inputs`` folder."""
    inputs = Path(inputs)
    if not (inputs / DONE_FILE).is_file():
        raise GeneticsError(f"{inputs}: genetic inputs are incomplete ({DONE_FILE} missing); rebuild them")
    modalities = json.loads((inputs / DONE_FILE).read_text())["modalities"]
    return GeneticRecord(
        snp=SnpMatrix(inputs / "snp") if "snp" in modalities else None,
        pgs=pd.read_parquet(inputs / "pgs.parquet") if "pgs" in modalities else None,
        burden=pd.read_parquet(inputs / "burden.parquet") if "burden" in modalities else None,
    )
