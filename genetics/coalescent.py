"""Coalescent simulation of a genotyped cohort and a separate discovery cohort (msprime).

One ``sim_ancestry`` per chromosome draws the genealogy of every person of both cohorts together (coalescent
with recombination, constant effective size), so the two cohorts share allele frequencies and LD; mutations
are added with an HKY model (human Ts/Tv and GC content, alleles are nucleotides). Defaults and their
sources are in ``docs/synthetic_biobank.md``. Kept variants:

* ``array``: biallelic SNPs with minor allele frequency >= ``common_maf`` in the simulated population,
* ``exome``: rarer SNPs inside the given regions (gene windows), for burden tests.

Target-cohort relatives are made explicitly: siblings are two gametes each from the same two simulated
parents, a parent–offspring pair is a simulated person and one gamete of theirs plus one of a partner's.
Gametes recombine at ``recombination_rate`` per bp (Poisson crossovers).

Genotypes are never held whole: :meth:`CoalescentCohorts.genotype_chunks` decodes variant chunks from the
tree sequences and yields samples × variants int8 dosages of the derived allele (the ``.bim`` ALT).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import msprime
import numpy as np
import pandas as pd
import tskit

from genetics.atomic import atomic_path
from genetics.bed_decode import BED_MAGIC, SNP_MAJOR, encode_variants
from genetics.plink import BIM_SCHEMA, FAM_SCHEMA

HKY_ALLELES = ("A", "C", "G", "T")


@dataclass(frozen=True)
class CoalescentConfig:
    """Population-genetic parameters; see docs/synthetic_biobank.md for every source.

    Attributes:
        n_chromosomes: chromosomes simulated independently (named 1..n).
        chromosome_length: bp per chromosome.
        population_size: effective population size Ne (constant; Takahata 1993).
        recombination_rate: per bp per generation (~1 cM/Mb; Kong et al. 2002).
        mutation_rate: per bp per generation (Kong et al. 2012; Scally & Durbin 2012).
        ts_tv: transition/transversion ratio of SNPs (~2.1 genome-wide; 1000 Genomes 2010).
        gc_content: equilibrium G+C fraction (41%; IHGSC 2001).
        common_maf: array SNPs are those with minor allele frequency >= this.
        missing_rate: fraction of genotype calls set missing when written (array call rates ~99%).
    """

    n_chromosomes: int = 4
    chromosome_length: int = 2_500_000
    population_size: int = 10_000
    recombination_rate: float = 1e-8
    mutation_rate: float = 1.25e-8
    ts_tv: float = 2.1
    gc_content: float = 0.41
    common_maf: float = 0.01
    missing_rate: float = 0.01

    def mutation_model(self) -> msprime.HKY:
        """HKY model whose equilibrium Ts/Tv equals ``ts_tv`` at base frequencies from ``gc_content``."""
        at, gc = (1 - self.gc_content) / 2, self.gc_content / 2
        freqs = np.array([at, gc, gc, at])  # A C G T
        transitions = freqs[0] * freqs[2] + freqs[1] * freqs[3]
        transversions = (freqs[0] + freqs[2]) * (freqs[1] + freqs[3])
        return msprime.HKY(kappa=self.ts_tv * transversions / transitions, equilibrium_frequencies=freqs)


@dataclass(frozen=True)
class Pedigree:
    """How each person is made from simulated (coalescent) individuals.

    Attributes:
        individual: (N,) coalescent individual of each target person, -1 for a simulated offspring.
        father, mother: (N,) coalescent individuals whose gametes make an offspring, -1 for others.
        discovery: (n_discovery,) coalescent individuals of the discovery cohort.
        pairs: related target pairs, columns ``row1 row2 relationship`` (``siblings``/``parent-offspring``).
    """

    individual: np.ndarray
    father: np.ndarray
    mother: np.ndarray
    discovery: np.ndarray
    pairs: pd.DataFrame

    @property
    def n_target(self) -> int:
        return int(self.individual.size)

    @property
    def n_simulated(self) -> int:
        """Coalescent individuals needed (target founders, parents and the discovery cohort)."""
        return self.n_target + int(self.discovery.size)


def make_pedigree(
    n_target: int, n_discovery: int, n_sibling_pairs: int, n_parent_offspring: int, rng: np.random.Generator
) -> Pedigree:
    """Assign coalescent individuals to target founders, parents of offspring and the discovery cohort.

    Uses exactly ``n_target + n_discovery`` coalescent individuals: a sibling pair replaces two target
    founders by two non-cohort parents, a parent–offspring pair uses the cohort parent plus one partner.
    Target rows are shuffled so relatives are not adjacent.
    """
    if 2 * (n_sibling_pairs + n_parent_offspring) > n_target:
        raise ValueError(
            f"{n_sibling_pairs} sibling and {n_parent_offspring} parent-offspring pairs need "
            f"{2 * (n_sibling_pairs + n_parent_offspring)} people, more than the cohort's {n_target}"
        )
    pool = rng.permutation(n_target + n_discovery)
    discovery, pool = np.sort(pool[:n_discovery]), pool[n_discovery:]
    individual, father, mother = [], [], []
    next_free = 0

    def take(k: int) -> np.ndarray:
        nonlocal next_free
        out = pool[next_free : next_free + k]
        next_free += k
        return out

    pair_rows: list[tuple[int, int, str]] = []
    for _ in range(n_sibling_pairs):
        f, m = take(2)
        start = len(individual)
        individual += [-1, -1]
        father += [f, f]
        mother += [m, m]
        pair_rows.append((start, start + 1, "siblings"))
    for _ in range(n_parent_offspring):
        parent, partner = take(2)
        start = len(individual)
        individual += [parent, -1]
        father += [-1, parent]
        mother += [-1, partner]
        pair_rows.append((start, start + 1, "parent-offspring"))
    founders = take(n_target - len(individual))
    individual += list(founders)
    father += [-1] * founders.size
    mother += [-1] * founders.size
    order = rng.permutation(n_target)  # new row r holds old row order[r]
    where = np.argsort(order)  # old row → new row
    pairs = pd.DataFrame(
        [(int(min(where[a], where[b])), int(max(where[a], where[b])), kind) for a, b, kind in pair_rows],
        columns=["row1", "row2", "relationship"],
    )
    individual_, father_, mother_ = (
        np.asarray(v, dtype=np.int64)[order] for v in (individual, father, mother)
    )
    return Pedigree(individual_, father_, mother_, discovery, pairs)


@dataclass(frozen=True)
class _Gametes:
    """Per chromosome: which haplotype node each target person's two genome copies come from.

    ``node_a``/``node_b`` (N,) hold the node at the chromosome start; ``switches`` lists
    (row, copy 0/1, parent individual, start haplotype, crossover positions) for gametes with crossovers.
    """

    node_a: np.ndarray
    node_b: np.ndarray
    switches: list[tuple[int, int, int, int, np.ndarray]]


def _draw_gametes(pedigree: Pedigree, length: int, rate: float, rng: np.random.Generator) -> _Gametes:
    n = pedigree.n_target
    node_a = 2 * pedigree.individual
    node_b = 2 * pedigree.individual + 1
    switches = []
    for row in np.flatnonzero(pedigree.individual < 0):
        for copy, parent in enumerate((pedigree.father[row], pedigree.mother[row])):
            start = int(rng.integers(2))
            crossovers = np.sort(rng.uniform(0, length, rng.poisson(rate * length)))
            (node_a if copy == 0 else node_b)[row] = 2 * parent + start
            if crossovers.size:
                switches.append((int(row), copy, int(parent), start, crossovers))
    assert node_a.size == n
    return _Gametes(node_a, node_b, switches)


def _site_table(ts: tskit.TreeSequence) -> pd.DataFrame:
    """One row per biallelic, non-silent site: site id, position, alleles and derived-allele count."""
    rows = []
    for tree in ts.trees():
        for site in tree.sites():
            if len(site.mutations) != 1:
                continue  # recurrent or back mutation: not a simple biallelic SNP
            mutation = site.mutations[0]
            if mutation.derived_state == site.ancestral_state:
                continue  # silent
            count = tree.num_samples(mutation.node)
            rows.append((site.id, int(site.position), site.ancestral_state, mutation.derived_state, count))
    table = pd.DataFrame(rows, columns=["site", "position", "REF", "ALT", "count"])
    table["AF"] = table["count"] / ts.num_samples
    return table


@dataclass(frozen=True)
class GenotypeChunk:
    """Decoded genotypes of one variant chunk (one chromosome).

    Attributes:
        index: (m,) rows of :attr:`CoalescentCohorts.variants`.
        target: (N, m) int8 derived-allele dosage of the target cohort, or None when not asked for.
        discovery: (n_discovery, m) int8 dosage of the discovery cohort, or None.
    """

    index: np.ndarray
    target: np.ndarray | None
    discovery: np.ndarray | None


@dataclass
class CoalescentCohorts:
    """Simulated genomes of a target and a discovery cohort, decoded on demand.

    Attributes:
        variants: one row per kept variant, in chromosome/position order: ``CHROM POS ID REF ALT CM AF MAF
            source`` (AF: derived (ALT) allele frequency over every simulated genome; source ``array`` or
            ``exome``).
        pedigree: who is who (see :class:`Pedigree`).
        config: the simulation parameters.
    """

    variants: pd.DataFrame
    pedigree: Pedigree
    config: CoalescentConfig
    _trees: list[tskit.TreeSequence] = field(repr=False)
    _gametes: list[_Gametes] = field(repr=False)
    _offsets: np.ndarray = field(repr=False)  # (chromosomes + 1,) first variant row of each chromosome

    @property
    def n_target(self) -> int:
        return self.pedigree.n_target

    @property
    def n_discovery(self) -> int:
        return int(self.pedigree.discovery.size)

    def default_chunk_size(self, budget: int = 1 << 24) -> int:
        """Variants per chunk so that one chunk of haplotypes holds about ``budget`` entries."""
        return max(1, min(4096, budget // (2 * self.pedigree.n_simulated)))

    def genotype_chunks(
        self,
        variants: np.ndarray | None = None,
        chunk_size: int | None = None,
        target: bool = True,
        discovery: bool = True,
    ) -> Iterator[GenotypeChunk]:
        """Stream dosages of ``variants`` (sorted rows of :attr:`variants`; default all) chunk by chunk.

        Memory is O((N + n_discovery) × chunk_size) bytes; chunks never span two chromosomes.
        """
        chunk_size = chunk_size or self.default_chunk_size()
        rows = np.arange(len(self.variants)) if variants is None else np.unique(np.asarray(variants))
        for c, ts in enumerate(self._trees):
            lo, hi = self._offsets[c], self._offsets[c + 1]
            local = rows[(rows >= lo) & (rows < hi)] - lo
            if local.size == 0:
                continue
            if local.size < ts.num_sites:
                ts = ts.delete_sites(np.setdiff1d(np.arange(ts.num_sites), local))
            buffer = np.empty((min(chunk_size, local.size), ts.num_samples), dtype=np.int8)
            done = 0
            for k, variant in enumerate(ts.variants(copy=False)):
                buffer[k - done] = variant.genotypes
                if k - done + 1 == buffer.shape[0] or k + 1 == local.size:
                    haps = buffer[: k - done + 1]
                    index = local[done : k + 1]
                    yield self._split(c, index + lo, haps, target, discovery)
                    done = k + 1

    def _split(
        self, c: int, index: np.ndarray, haps: np.ndarray, target: bool, discovery: bool
    ) -> GenotypeChunk:
        """(m, nodes) haplotypes → per-cohort (n, m) dosages."""
        tgt = disc = None
        if target:
            gam = self._gametes[c]
            dosage = haps[:, gam.node_a] + haps[:, gam.node_b]  # (m, N)
            positions = self.variants["POS"].to_numpy()[index] - 1
            for row, copy, parent, start, crossovers in gam.switches:
                hap = (start + np.searchsorted(crossovers, positions, side="right")) % 2
                other = gam.node_b[row] if copy == 0 else gam.node_a[row]
                dosage[:, row] = haps[np.arange(index.size), 2 * parent + hap] + haps[:, other]
            tgt = np.ascontiguousarray(dosage.T)
        if discovery:
            nodes = 2 * self.pedigree.discovery
            disc = np.ascontiguousarray((haps[:, nodes] + haps[:, nodes + 1]).T)
        return GenotypeChunk(index, tgt, disc)


def simulate_cohorts(
    n_target: int,
    n_discovery: int,
    config: CoalescentConfig | None = None,
    regions: pd.DataFrame | None = None,
    n_sibling_pairs: int = 0,
    n_parent_offspring: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> CoalescentCohorts:
    """Simulate every chromosome's genealogy and mutations for both cohorts.

    Args:
        n_target, n_discovery: people in the genotyped (target) and the discovery cohort.
        regions: windows ``CHROM START END`` (1-based, inclusive; CHROM "1".."n") where rare variants are
            kept too (``source = "exome"``); default none.
        n_sibling_pairs, n_parent_offspring: related pairs inside the target cohort.
        seed: every random draw derives from it; the same arguments give the same cohorts.

    Returns:
        :class:`CoalescentCohorts`; variant IDs are ``CHROM:POS``, REF = ancestral, ALT = derived allele.

    >>> cohorts = simulate_cohorts(50, 20, CoalescentConfig(n_chromosomes=1, chromosome_length=200_000))
    >>> chunk = next(cohorts.genotype_chunks())
    >>> chunk.target.shape[0], chunk.discovery.shape[0], int(chunk.target.max()) <= 2
    (50, 20, True)
    """
    from tqdm.auto import tqdm

    config = config or CoalescentConfig()
    root = np.random.SeedSequence(seed)
    ped_seed, *chrom_seeds = root.spawn(1 + config.n_chromosomes)
    pedigree = make_pedigree(
        n_target, n_discovery, n_sibling_pairs, n_parent_offspring, np.random.default_rng(ped_seed)
    )
    model = config.mutation_model()
    trees, gametes, tables = [], [], []
    for c in tqdm(range(config.n_chromosomes), desc="coalescent", unit="chr", disable=not progress):
        ancestry_seed, mutation_seed, gamete_seed = (int(s) + 1 for s in chrom_seeds[c].generate_state(3))
        ts = msprime.sim_ancestry(
            samples=pedigree.n_simulated,
            population_size=config.population_size,
            sequence_length=config.chromosome_length,
            recombination_rate=config.recombination_rate,
            random_seed=ancestry_seed,
        )
        ts = msprime.sim_mutations(ts, rate=config.mutation_rate, model=model, random_seed=mutation_seed)
        sites = _site_table(ts)
        sites["CHROM"] = str(c + 1)
        sites["POS"] = sites["position"] + 1
        maf = np.minimum(sites["AF"], 1 - sites["AF"])
        common = maf >= config.common_maf
        in_region = np.zeros(len(sites), dtype=bool)
        if regions is not None:
            for region in regions[regions["CHROM"].astype(str) == str(c + 1)].itertuples():
                in_region |= (sites["POS"] >= region.START).to_numpy() & (
                    sites["POS"] <= region.END
                ).to_numpy()
        keep = common.to_numpy() | (in_region & (maf > 0).to_numpy())
        sites = sites[keep].reset_index(drop=True)
        sites["source"] = np.where(common[keep].to_numpy(), "array", "exome")
        ts = ts.delete_sites(np.setdiff1d(np.arange(ts.num_sites), sites["site"].to_numpy()))
        trees.append(ts)
        tables.append(sites)
        gametes.append(
            _draw_gametes(
                pedigree,
                config.chromosome_length,
                config.recombination_rate,
                np.random.default_rng(gamete_seed),
            )
        )
    variants = pd.concat(tables, ignore_index=True)
    variants["ID"] = variants["CHROM"] + ":" + variants["POS"].astype(str)
    variants["CM"] = variants["POS"] * config.recombination_rate * 100.0  # uniform map: 1e-8/bp = 1 cM/Mb
    variants["MAF"] = np.minimum(variants["AF"], 1 - variants["AF"])
    columns = ["CHROM", "POS", "ID", "REF", "ALT", "CM", "AF", "MAF", "source"]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tables])])
    return CoalescentCohorts(variants[columns], pedigree, config, trees, gametes, offsets)


def add_missing_calls(dosage: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """(n, m) int dosage → float32 with a fraction ``rate`` of calls set to NaN, independently at random."""
    out = dosage.astype(np.float32)
    if rate > 0:
        out[rng.random(out.shape, dtype=np.float32) < rate] = np.nan
    return out


class BedWriter:
    """Stream samples × variants hard calls into ``PREFIX.bed`` chunk by chunk (bounded memory).

    The ``.bed`` goes to a temporary file renamed into place by :meth:`close`, which also writes ``.bim``
    and ``.fam``; an exception inside the ``with`` block leaves no output. Chunks are encoded
    ``encode_rows`` entries at a time, so memory is O(samples × a few variants) whatever the chunk size.

    >>> import tempfile, pathlib
    >>> from genetics.plink import PlinkFileset
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with BedWriter(d / "toy", n_samples=3) as writer:
    ...     writer.write(np.array([[0, 2], [1, np.nan], [2, 0]], dtype=np.float32))
    ...     writer.bim = pd.DataFrame({"CHROM": "1", "ID": ["1:5", "1:9"], "CM": 0.0, "POS": [5, 9],
    ...                                "ALT": "A", "REF": "G"})
    ...     writer.fam = pd.DataFrame({"FID": ["a", "b", "c"], "IID": ["a", "b", "c"], "PAT": "0",
    ...                                "MAT": "0", "SEX": 0, "PHENO": "-9"})
    >>> PlinkFileset(d / "toy").read().tolist()
    [[0.0, 2.0], [1.0, nan], [2.0, 0.0]]
    """

    def __init__(self, prefix: str | os.PathLike, n_samples: int, encode_rows: int = 1 << 21):
        self.prefix = str(prefix)
        self.n_samples = n_samples
        self.n_variants = 0
        self.bim: pd.DataFrame | None = None
        self.fam: pd.DataFrame | None = None
        self._step = max(1, encode_rows // max(n_samples, 1))
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(f"{self.prefix}.bed"))
        self._handle = self._stack.enter_context(open(self._tmp, "wb"))
        self._handle.write(BED_MAGIC + SNP_MAJOR)

    def write(self, dosage: np.ndarray) -> None:
        """Append a (n_samples, m) block of 0/1/2 dosages, NaN = missing."""
        if dosage.shape[0] != self.n_samples:
            raise ValueError(f"block has {dosage.shape[0]} samples, the file {self.n_samples}")
        for start in range(0, dosage.shape[1], self._step):
            self._handle.write(encode_variants(dosage[:, start : start + self._step]).tobytes())
        self.n_variants += dosage.shape[1]

    def close(self) -> None:
        """Finish the .bed (rename into place) and write ``self.bim`` and ``self.fam``."""
        if (
            self.bim is None
            or self.fam is None
            or len(self.bim) != self.n_variants
            or len(self.fam) != self.n_samples
        ):
            error = ValueError(
                f"set .bim ({self.n_variants} rows) and .fam ({self.n_samples} rows) tables before closing"
            )
            self._stack.__exit__(ValueError, error, None)  # drop the temporary .bed
            raise error
        self._stack.close()
        with atomic_path(f"{self.prefix}.bim") as tmp:
            self.bim[[c.name for c in BIM_SCHEMA]].to_csv(tmp, sep="\t", header=False, index=False)
        with atomic_path(f"{self.prefix}.fam") as tmp:
            self.fam[[c.name for c in FAM_SCHEMA]].to_csv(tmp, sep=" ", header=False, index=False)

    def __enter__(self) -> BedWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self._stack.__exit__(kind, value, traceback)
