"""Genetic outputs of the synthetic biobank: streamed .bed, discovery GWAS → C+T PGS files, burden inputs, PCs.

All of it streams variant chunks: memory is O(people × chunk), never a people × variants matrix.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genetics.atomic import atomic_write_text
from genetics.coalescent import BedWriter, CoalescentCohorts, CoalescentConfig, add_missing_calls
from genetics.ld import indep_pairwise
from genetics.pgs_writer import write_scoring_file
from genetics.plink import PlinkFileset
from gwas.kernel import associate_chunk, covariate_basis, residualize
from gwas.prepare import pca

ANNOTATIONS = ("pLoF", "missense", "synonymous")
MASKS = (("Mask1", ("pLoF",)), ("Mask2", ("pLoF", "missense")))
_AMBIGUOUS = {("A", "T"), ("T", "A"), ("C", "G"), ("G", "C")}


def gene_windows(
    config: CoalescentConfig, n_genes: int, length: int, rng: np.random.Generator
) -> pd.DataFrame:
    """``GENE CHROM START END`` (1-based, inclusive): ``n_genes`` non-overlapping windows spread over chromosomes."""
    rows = []
    per_chrom = np.bincount(np.arange(n_genes) % config.n_chromosomes, minlength=config.n_chromosomes)
    for c, k in enumerate(per_chrom):
        slots = (config.chromosome_length - 2 * length) // (2 * length)
        if k > slots:
            raise ValueError(
                f"{k} genes of {length} bp do not fit on a {config.chromosome_length} bp chromosome"
            )
        starts = np.sort(rng.choice(slots, k, replace=False)) * 2 * length + length
        rows += [(str(c + 1), int(s) + 1, int(s) + length) for s in starts]
    genes = pd.DataFrame(rows, columns=["CHROM", "START", "END"])
    genes.insert(0, "GENE", [f"G{i + 1:03d}" for i in range(len(genes))])
    return genes


def annotate(
    variants: pd.DataFrame,
    genes: pd.DataFrame,
    proportions: tuple[float, float, float],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Annotate every rare (``exome``) variant inside a gene as pLoF/missense/synonymous at ``proportions``.

    Returns:
        ``row ID GENE ANNOT`` (row: of ``variants``), in variant order.
    """
    parts = []
    pos, chrom = variants["POS"].to_numpy(), variants["CHROM"].to_numpy()
    exome = (variants["source"] == "exome").to_numpy()
    for gene in genes.itertuples():
        rows = np.flatnonzero(exome & (chrom == gene.CHROM) & (pos >= gene.START) & (pos <= gene.END))
        parts.append(pd.DataFrame({"row": rows, "GENE": gene.GENE}))
    table = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    p = np.asarray(proportions, dtype=np.float64)
    table["ANNOT"] = np.asarray(ANNOTATIONS)[rng.choice(3, len(table), p=p / p.sum())]
    table.insert(1, "ID", variants["ID"].to_numpy()[table["row"]])
    return table


class DiscoveryGwas:
    """Marginal regressions (``gwas.kernel``) of discovery phenotypes on every array variant, chunk by chunk.

    Keeps BETA and LOG10_P for every variant and the discovery genotypes of the C+T candidates
    (strand-unambiguous array variants with P < ``p_threshold`` for some phenotype), for clumping.
    """

    def __init__(
        self,
        phenotypes: np.ndarray,
        covariates: np.ndarray,
        names: list[str],
        variants: pd.DataFrame,
        p_threshold: float,
    ):
        q = covariate_basis(covariates, ["age", "male"])
        self.q, self.y = q, residualize(q, phenotypes)
        self.names = names
        self.threshold = -np.log10(p_threshold)
        alleles = zip(variants["REF"], variants["ALT"], strict=True)
        ambiguous = np.array([pair in _AMBIGUOUS for pair in alleles], dtype=bool)
        self.eligible = (variants["source"] == "array").to_numpy() & ~ambiguous
        m = len(variants)
        self.beta = np.full((m, len(names)), np.nan)
        self.log10_p = np.full((m, len(names)), np.nan)
        self.candidates: dict[int, np.ndarray] = {}

    def update(self, index: np.ndarray, dosage: np.ndarray) -> None:
        """Add one chunk: (m,) variant rows and the discovery cohort's (n, m) int8 dosages."""
        keep = self.eligible[index]
        if not keep.any():
            return
        rows, block = index[keep], dosage[:, keep]
        result = associate_chunk(block.astype(np.float64), self.q, self.y)
        self.beta[rows], self.log10_p[rows] = result.beta, result.log10_p
        strong = np.flatnonzero((np.nan_to_num(result.log10_p, nan=0.0) > self.threshold).any(axis=1))
        for k in strong:
            self.candidates[int(rows[k])] = block[:, k].copy()


def clump(gwas: DiscoveryGwas, trait: int, variants: pd.DataFrame, r2: float, kb: float) -> np.ndarray:
    """Greedy clumping of one phenotype's candidates (plink --clump order): rows of the index variants."""
    rows = np.array(sorted(gwas.candidates), dtype=np.int64)
    if rows.size == 0:
        return rows
    score = gwas.log10_p[rows, trait]
    rows = rows[score > gwas.threshold]
    rows = rows[np.argsort(-gwas.log10_p[rows, trait], kind="stable")]
    chrom, pos = variants["CHROM"].to_numpy(), variants["POS"].to_numpy()
    alive = np.ones(rows.size, dtype=bool)
    kept = []
    for i, row in enumerate(rows):
        if not alive[i]:
            continue
        kept.append(row)
        near = np.flatnonzero(
            alive & (chrom[rows] == chrom[row]) & (np.abs(pos[rows] - pos[row]) <= kb * 1000)
        )
        near = near[near > i]
        if near.size:
            x = gwas.candidates[int(row)].astype(np.float64)
            others = np.stack([gwas.candidates[int(rows[j])] for j in near], axis=1).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.corrcoef(np.column_stack([x, others]), rowvar=False)[0, 1:]
            alive[near[np.nan_to_num(r) ** 2 > r2]] = False
    return np.sort(np.array(kept, dtype=np.int64))


def write_pgs(
    folder: Path,
    gwas: DiscoveryGwas,
    variants: pd.DataFrame,
    n_discovery: int,
    p_threshold: float,
    r2: float,
    kb: float,
) -> pd.DataFrame:
    """Clump + threshold every phenotype into ``folder/SYN_<trait>.txt``; returns one row per score."""
    rows_out = []
    for k, name in enumerate(gwas.names):
        rows = clump(gwas, k, variants, r2, kb)
        if rows.size == 0:  # nothing passed: the single strongest eligible variant (a one-variant score)
            rows = np.array([int(np.nanargmax(np.where(gwas.eligible, gwas.log10_p[:, k], -np.inf)))])
        table = pd.DataFrame(
            {
                "rsID": variants["ID"].to_numpy()[rows],
                "chr_name": variants["CHROM"].to_numpy()[rows],
                "chr_position": variants["POS"].to_numpy()[rows],
                "effect_allele": variants["ALT"].to_numpy()[rows],
                "other_allele": variants["REF"].to_numpy()[rows],
                "effect_weight": gwas.beta[rows, k],
            }
        )
        pgs_id = f"SYN_{name}"
        write_scoring_file(
            folder / f"{pgs_id}.txt",
            table,
            pgs_id,
            pgs_name=f"C+T_{name}",
            trait_reported=name,
            genome_build="NR",
            weight_type="beta",
            extra_header={
                "method_name": "C+T",
                "method_params": f"P<{p_threshold:g}, r2<{r2:g}, {kb:g}kb; discovery N={n_discovery}",
                "citation": "contig synthetic biobank (simulated data)",
                "license": "CC0 (simulated)",
            },
        )
        rows_out.append(
            {"pgs_id": pgs_id, "trait": name, "file": f"pgs/{pgs_id}.txt", "n_variants": len(table)}
        )
    return pd.DataFrame(rows_out)


def streamed_chunk(n_samples: int, budget: int = 1 << 21) -> int:
    """Variants per streamed block so that a samples × variants float64 block stays near ``budget`` entries."""
    return max(1, min(1024, budget // max(n_samples, 1)))


@dataclass
class WrittenGenotypes:
    """What :func:`write_genotypes` produced: the .bim rows written (with their cohort variant rows)."""

    bim: pd.DataFrame
    rows: np.ndarray  # (M,) rows of the cohorts' variant table, in .bim order
    n_missing: int
    n_calls: int


def write_genotypes(
    cohorts: CoalescentCohorts,
    prefix: Path,
    fam: pd.DataFrame,
    people: np.ndarray,
    unsequenced: np.ndarray,
    seed: int,
    gwas: DiscoveryGwas | None = None,
    progress: bool = False,
) -> WrittenGenotypes:
    """Stream every variant: write ``people`` (target rows) to PREFIX.bed/.bim/.fam, feed the discovery GWAS.

    Calls are set missing at ``config.missing_rate``; people flagged ``unsequenced`` ((len(people),) bool) get
    every rare (``exome``) call missing. Exome variants without an observed ALT allele are left out.
    """
    variants = cohorts.variants
    exome = (variants["source"] == "exome").to_numpy()
    kept_rows, n_missing, n_calls = [], 0, 0
    with BedWriter(prefix, n_samples=people.size) as writer:
        bar = tqdm(total=len(variants), desc="genotypes", unit="variant", disable=not progress)
        for number, chunk in enumerate(cohorts.genotype_chunks(discovery=gwas is not None)):
            dosage = add_missing_calls(
                chunk.target[people], cohorts.config.missing_rate, np.random.default_rng([seed, number])
            )
            is_exome = exome[chunk.index]
            if is_exome.any() and unsequenced.any():
                dosage[np.ix_(unsequenced, is_exome)] = np.nan
            observed = np.nansum(dosage, axis=0) > 0
            keep = ~is_exome | observed
            writer.write(dosage[:, keep])
            kept_rows.append(chunk.index[keep])
            n_missing += int(np.isnan(dosage[:, keep]).sum())
            n_calls += dosage[:, keep].size
            if gwas is not None:
                gwas.update(chunk.index, chunk.discovery)
            bar.update(chunk.index.size)
        bar.close()
        rows = np.concatenate(kept_rows)
        writer.bim = variants.iloc[rows][["CHROM", "ID", "CM", "POS", "ALT", "REF"]].reset_index(drop=True)
        writer.fam = fam
    return WrittenGenotypes(writer.bim, rows, n_missing, n_calls)


def write_burden_inputs(
    folder: Path, annotations: pd.DataFrame, genes: pd.DataFrame, bim_ids: pd.Series, sequenced: pd.DataFrame
) -> dict[str, int]:
    """burden/annotations.tsv (``ID GENE ANNOT``), masks.txt, genes.tsv and samples.txt (people with burden data)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = annotations[annotations["ID"].isin(set(bim_ids))]
    atomic_write_text(
        folder / "annotations.tsv", table[["ID", "GENE", "ANNOT"]].to_csv(sep="\t", index=False)
    )
    atomic_write_text(folder / "masks.txt", "".join(f"{name} {','.join(a)}\n" for name, a in MASKS))
    atomic_write_text(folder / "genes.tsv", genes.to_csv(sep="\t", index=False))
    atomic_write_text(
        folder / "samples.txt", sequenced[["FID", "IID"]].to_csv(sep="\t", index=False, header=False)
    )
    return {"annotated_variants": len(table), **table["ANNOT"].value_counts().to_dict()}


def _subset_fileset(
    fileset: PlinkFileset, variants: np.ndarray, samples: np.ndarray, prefix: Path
) -> PlinkFileset:
    """Copy ``samples`` × ``variants`` of a fileset to PREFIX in streamed chunks (small LD/PCA working set)."""
    with BedWriter(prefix, n_samples=samples.size) as writer:
        for _, block in fileset.iter_chunks(streamed_chunk(fileset.n_samples), variants, samples):
            writer.write(block)
        writer.bim = fileset.bim.iloc[variants].reset_index(drop=True)
        writer.fam = fileset.fam.iloc[samples].reset_index(drop=True)
    return PlinkFileset(prefix)


def genetic_pcs(
    prefix: Path, variants: pd.DataFrame, n_pcs: int, fit_people: np.ndarray, min_maf: float = 0.05
) -> np.ndarray:
    """Genetic PCs of every sample in PREFIX: LD-pruned common array variants, fitted on ``fit_people``.

    Variants: array SNPs with population MAF >= ``min_maf``, pruned with ``indep_pairwise(50, 5, 0.2)`` among
    ``fit_people`` (.fam rows; unrelated, at most a few thousand; copied to a temporary fileset first so
    pruning memory does not grow with the cohort); genotypes mean-imputed and scaled by sqrt(2p(1 − p))
    (Patterson et al. 2006), PCA via ``gwas.prepare.pca``; every sample is then projected in streamed chunks.

    Returns:
        (N, n_pcs) float64 scores in .fam order.
    """
    fileset = PlinkFileset(prefix)
    maf = variants.set_index("ID").loc[fileset.bim["ID"], ["MAF", "source"]]
    candidates = np.flatnonzero(((maf["MAF"] >= min_maf) & (maf["source"] == "array")).to_numpy())
    with tempfile.TemporaryDirectory(prefix=".pca-", dir=Path(prefix).parent) as tmp:
        subset = _subset_fileset(fileset, candidates, np.sort(fit_people), Path(tmp) / "fit")
        kept = indep_pairwise(subset, 50, 5, 0.2)
        block = subset.read(kept).astype(np.float64)
    pruned = candidates[kept]
    mean = np.nanmean(block, axis=0)
    scale = np.sqrt(np.maximum(mean / 2 * (1 - mean / 2) * 2, 1e-12))
    z = (np.where(np.isnan(block), mean, block) - mean) / scale
    fit = pca(z, min(n_pcs, *z.shape))
    scores = np.zeros((fileset.n_samples, fit.components.shape[0]))
    start = 0
    for index, chunk in fileset.iter_chunks(streamed_chunk(fileset.n_samples), variants=pruned):
        part = slice(start, start + index.size)
        z = (np.where(np.isnan(chunk), mean[part], chunk) - mean[part]) / scale[part]
        scores += (z - fit.mean[part]) @ fit.components[:, part].T
        start += index.size
    return scores
