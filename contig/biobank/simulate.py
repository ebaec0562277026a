"""The built-in synthetic biobank: ``simulate_biobank(out, BiobankConfig())`` writes a folder that the rest of
the toolkit reads through its normal readers, with the planted truth beside it.

Layout (details and every default's source: docs/synthetic_biobank.md)::

    genotypes.bed/.bim/.fam    coalescent genotypes (array SNPs + rare exome variants), ~1% missing calls
    manifest.parquet           one row per image: IID, image path(s), eye or visit, age, sex, PC1..PCk, ...
    covariates.parquet         one row per person: IID FID age sex PC1..PCk (ready for ``contig gwas --covar``)
    images/                    fundus PNGs or MRI NIfTIs (t1, t2, flair), rendered from the latent traits
    pgs/SYN_<trait>.txt        PGS Catalog 2.0 scoring files, C+T on a separate discovery cohort
    burden/                    annotations.tsv, masks.txt, genes.tsv, samples.txt (people with burden data)
    downstream/                labels.parquet (grade, finding, mask, split), splits.tsv, masks/
    truth.json, truth/         causal variants, genes, effects, heritabilities, latent traits
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from contig.biobank import genotypes as bg
from contig.biobank import images as bi
from contig.biobank.traits import (
    FUNDUS_TRAIT_SPECS,
    MRI_TRAIT_SPECS,
    UNRELATED_TRAIT_SPECS,
    Architecture,
    TraitSpec,
    calibrated_specs,
    covariate_part,
    draw_architecture,
    genetic_values,
    residual_noise,
)
from contig.biobank.truth import truth_document
from genetics.atomic import atomic_write_text
from genetics.coalescent import CoalescentCohorts, CoalescentConfig, simulate_cohorts

# Per image kind: (age model, second-image fraction, per-image trait noise SD, grade prevalence, finding).
KIND_DEFAULTS = {
    "fundus": {
        "age": bi.AgeModel(56.5, 8.1, 40.0, 70.0),  # UK Biobank baseline (Sudlow 2015; Fry 2017)
        "second_image_fraction": 0.85,  # both eyes photographed for most (Chua 2019)
        "image_noise_sd": 0.3,  # fellow-eye correlation ≈ 0.9
        "grade": ("lesion_load", (0.65, 0.15, 0.10, 0.03, 0.07)),  # DR grades 0-4 (Yau 2012)
        "finding": ("glaucoma_suspect", "cup_to_disc", 0.035),  # glaucoma prevalence 40-80 y (Tham 2014)
    },
    "mri3d": {
        "age": bi.AgeModel(64.0, 7.5, 45.0, 82.0),  # UK Biobank imaging visit (Littlejohns 2020)
        "second_image_fraction": 0.05,  # repeat imaging visit (Littlejohns 2020)
        "image_noise_sd": 0.15,  # scan-rescan reliability of brain measures ICC > 0.95
        "grade": ("wm_lesion_load", (0.25, 0.50, 0.17, 0.08)),  # Fazekas 0-3 at ~60-70 y (de Leeuw 2001)
        "finding": ("enlarged_ventricles", "ventricle_size", 0.05),  # illustrative
    },
}


@dataclass
class BiobankConfig:
    """Every parameter of the synthetic biobank; defaults and sources in docs/synthetic_biobank.md.

    Attributes:
        n_individuals: people in the cohort (all imaged; genotypes for 1 − missing_genotypes of them).
        image_kind: ``fundus`` (2D RGB PNG) or ``mri3d`` (3D NIfTI: t1, t2, flair + labels).
        image_size: pixels per side (fundus, default 64) or voxels per side (MRI, default 32).
        seed: every random draw derives from it; same seed and config → byte-identical folder.
        genome: coalescent parameters (chromosomes, Ne, rates, MAF floor, missing-call rate).
        n_discovery: discovery-cohort size for the PGS GWAS (not written; see docs for the choice).
        sibling_pair_rate, parent_offspring_rate: first-degree pairs per person (UK Biobank; Bycroft 2018).
        missing_genotypes: fraction of people without genotypes (absent from the .fam).
        missing_burden: fraction of people without burden (exome) data: their rare calls are missing and
            they are absent from burden/samples.txt.
        female_fraction: share of women (54.4% in UK Biobank; Fry 2017).
        age: age model at the first image (None: by image kind).
        second_image_fraction: people with two images (both eyes; or a repeat MRI visit). None: by kind.
        revisit_years: years between MRI visits.
        image_noise_sd: SD of per-image deviations of the rendered traits from the person's. None: by kind.
        traits: image-trait architectures (None: FUNDUS_TRAIT_SPECS or MRI_TRAIT_SPECS).
        major_variance, polygenic_scale: demo calibration of the image traits' genetics: every major
            variant explains ``major_variance`` of its trait (None: the shares in ``traits``, from the
            sources) and polygenic heritabilities are × ``polygenic_scale``; see the docs.
        render_calibration: demo calibration of the images: ``default`` or, for fundus, ``demo`` (every
            trait ≥ 1% of the pixel variance at 32–64 px; imaging.synthetic.fundus.DEMO_CALIBRATION).
        unrelated_traits: non-image traits (PGS negative controls).
        n_genes, gene_length: burden genes (windows of rare "exome" variants) and their length in bp.
        annotation_proportions: pLoF, missense, synonymous shares of rare coding variants.
        damaging_missense: fraction of missense variants in a causal gene that carry an effect.
        major_min_maf, major_spacing: major causal variants' MAF floor and minimum distance (bp).
        pgs_p_threshold, clump_r2, clump_kb: C+T settings (PRSice defaults for r2/kb; Choi 2020).
        n_pcs, pca_max_people: genetic PCs in the manifest, and unrelated people used to fit them (unrelated
            people; LD pruning and PCA cost grow with it).
        grade_visible: share of the grade/finding liability that the image trait carries.
        split_fractions: train/val/test fractions by person.
        progress: show progress bars.
    """

    n_individuals: int = 2_000
    image_kind: str = "fundus"
    image_size: int | None = None
    seed: int = 0
    genome: CoalescentConfig = field(default_factory=CoalescentConfig)
    n_discovery: int = 2_000
    sibling_pair_rate: float = 0.045
    parent_offspring_rate: float = 0.013
    missing_genotypes: float = 0.03
    missing_burden: float = 0.07
    female_fraction: float = 0.544
    age: bi.AgeModel | None = None
    second_image_fraction: float | None = None
    revisit_years: float = 2.5
    image_noise_sd: float | None = None
    traits: tuple[TraitSpec, ...] | None = None
    major_variance: float | None = None
    polygenic_scale: float = 1.0
    render_calibration: str = "default"
    unrelated_traits: tuple[TraitSpec, ...] = UNRELATED_TRAIT_SPECS
    n_genes: int = 20
    gene_length: int = 15_000
    annotation_proportions: tuple[float, float, float] = (0.05, 0.65, 0.30)
    damaging_missense: float = 0.3
    major_min_maf: float = 0.05
    major_spacing: int = 200_000
    pgs_p_threshold: float = 1e-3
    clump_r2: float = 0.1
    clump_kb: float = 250.0
    n_pcs: int = 10
    pca_max_people: int = 4_000
    grade_visible: float = 0.7
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    progress: bool = True

    def resolved(self) -> BiobankConfig:
        """A copy with every None default filled in for the image kind, after validation."""
        if self.image_kind not in bi.IMAGE_KINDS:
            raise ValueError(f"image_kind must be one of {bi.IMAGE_KINDS}, not {self.image_kind!r}")
        for name in ("missing_genotypes", "missing_burden", "female_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.n_individuals < 20:
            raise ValueError(f"n_individuals must be at least 20, got {self.n_individuals}")
        bi.check_calibration(self.image_kind, self.render_calibration)
        calibrated_specs((), self.major_variance, self.polygenic_scale)  # validates the calibration
        d = KIND_DEFAULTS[self.image_kind]
        default_traits = FUNDUS_TRAIT_SPECS if self.image_kind == "fundus" else MRI_TRAIT_SPECS
        return replace(
            self,
            image_size=self.image_size or (64 if self.image_kind == "fundus" else 32),
            age=self.age or d["age"],
            second_image_fraction=_default(self.second_image_fraction, d["second_image_fraction"]),
            image_noise_sd=_default(self.image_noise_sd, d["image_noise_sd"]),
            traits=tuple(self.traits or default_traits),
            unrelated_traits=tuple(self.unrelated_traits),
        )


def _default(value, fallback):
    return fallback if value is None else value


@dataclass
class BiobankSummary:
    """What :func:`simulate_biobank` wrote: counts, the output folder, seconds per stage and the process's
    peak resident memory (MB, ``ru_maxrss``) reached by the end of each stage."""

    out: Path
    n_individuals: int
    n_images: int
    n_genotyped: int
    n_burden: int
    n_variants: int
    n_exome_variants: int
    pgs: list[str]
    seconds: dict[str, float]
    peak_memory_mb: dict[str, float]


def _people(config: BiobankConfig, rng: np.random.Generator) -> pd.DataFrame:
    """IID FID age sex genotyped burden, one row per person (modalities missing at random)."""
    n = config.n_individuals
    width = max(6, len(str(n)))
    iids = np.array([f"P{i + 1:0{width}d}" for i in range(n)])
    male = rng.random(n) >= config.female_fraction
    age = np.round(config.age.draw(n, rng), 1)
    genotyped = rng.random(n) >= config.missing_genotypes
    burden = genotyped & (rng.random(n) >= config.missing_burden)
    sex = np.where(male, "M", "F")
    return pd.DataFrame(
        {"IID": iids, "FID": iids, "age": age, "sex": sex, "genotyped": genotyped, "burden": burden}
    )


@dataclass
class _Cohort:
    """Everything drawn before any file is written (shared by the writing stages)."""

    config: BiobankConfig
    seeds: list[np.random.SeedSequence]
    people: pd.DataFrame
    genes: pd.DataFrame
    cohorts: CoalescentCohorts
    annotations: pd.DataFrame
    architecture: Architecture
    g_target: np.ndarray  # (N, T) genetic values
    base: np.ndarray  # (N, T) covariate-adjusted traits G + E
    discovery: tuple[np.ndarray, np.ndarray]  # (n_d, T) traits, (n_d, 2) age and male

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng(self.seeds[stream])

    def seed(self, stream: int) -> int:
        return int(self.seeds[stream].generate_state(1)[0] % (1 << 31))

    @property
    def male(self) -> np.ndarray:
        return (self.people["sex"] == "M").to_numpy()

    def covariates(self, specs: tuple[TraitSpec, ...], age: np.ndarray, male: np.ndarray) -> np.ndarray:
        """(n, T) covariate part at these ages and sexes (centred on the population's)."""
        c = self.config
        return covariate_part(specs, age, male, c.age.expected, 1 - c.female_fraction)


def _draw(config: BiobankConfig) -> _Cohort:
    """People, genomes (coalescent), annotations, architecture and latent traits of both cohorts."""
    seeds = np.random.SeedSequence(config.seed).spawn(13)
    rng = [np.random.default_rng(s) for s in seeds]
    n = config.n_individuals
    people = _people(config, rng[0])
    genes = bg.gene_windows(config.genome, config.n_genes, config.gene_length, rng[1])
    cohorts = simulate_cohorts(
        n,
        config.n_discovery,
        config.genome,
        genes,
        n_sibling_pairs=int(round(config.sibling_pair_rate * n)),
        n_parent_offspring=int(round(config.parent_offspring_rate * n)),
        seed=int(seeds[2].generate_state(1)[0]),
        progress=config.progress,
    )
    annotations = bg.annotate(cohorts.variants, genes, config.annotation_proportions, rng[3])
    specs = calibrated_specs(config.traits, config.major_variance, config.polygenic_scale)
    specs += tuple(config.unrelated_traits)
    architecture = draw_architecture(
        specs,
        cohorts.variants,
        annotations,
        rng[4],
        config.major_min_maf,
        config.major_spacing,
        config.damaging_missense,
    )
    g_target, g_disc = genetic_values(cohorts, architecture)
    base = g_target + residual_noise(architecture, n, rng[5])
    disc_age = np.round(config.age.draw(config.n_discovery, rng[6]), 1)
    disc_male = rng[6].random(config.n_discovery) >= config.female_fraction
    disc = g_disc + residual_noise(architecture, config.n_discovery, rng[6])
    disc += covariate_part(specs, disc_age, disc_male, config.age.expected, 1 - config.female_fraction)
    discovery = (disc, np.column_stack([disc_age, disc_male]))
    return _Cohort(
        config, seeds, people, genes, cohorts, annotations, architecture, g_target, base, discovery
    )


def _write_genetics(out: Path, s: _Cohort) -> tuple[bg.WrittenGenotypes, pd.DataFrame, dict, pd.DataFrame]:
    """genotypes.bed/.bim/.fam + discovery GWAS (one streamed pass), pgs/, burden/, genetic PCs.

    Returns:
        (written genotypes, PGS table, burden annotation counts, covariates table (IID FID age sex PCs)).
    """
    config, people, variants = s.config, s.people, s.cohorts.variants
    specs = s.architecture.specs
    heritable = [k for k, spec in enumerate(specs) if spec.architecture != "covariates-only"]
    disc_traits, disc_covariates = s.discovery
    gwas = bg.DiscoveryGwas(
        disc_traits[:, heritable],
        disc_covariates,
        [specs[k].name for k in heritable],
        variants,
        config.pgs_p_threshold,
    )
    genotyped = np.flatnonzero(people["genotyped"].to_numpy())
    fam = pd.DataFrame(
        {
            "FID": people["FID"].to_numpy()[genotyped],
            "IID": people["IID"].to_numpy()[genotyped],
            "PAT": "0",
            "MAT": "0",
            "SEX": np.where(s.male[genotyped], 1, 2),
            "PHENO": "-9",
        }
    )
    unsequenced = ~people["burden"].to_numpy()[genotyped]
    written = bg.write_genotypes(
        s.cohorts, out / "genotypes", fam, genotyped, unsequenced, s.seed(7), gwas, config.progress
    )
    (out / "pgs").mkdir(exist_ok=True)
    pgs = bg.write_pgs(
        out / "pgs",
        gwas,
        variants,
        config.n_discovery,
        config.pgs_p_threshold,
        config.clump_r2,
        config.clump_kb,
    )
    counts = bg.write_burden_inputs(
        out / "burden", s.annotations, s.genes, written.bim["ID"], people[people["burden"]]
    )
    related = set(s.cohorts.pedigree.pairs["row2"])
    unrelated = np.flatnonzero([row not in related for row in genotyped])  # .fam rows
    fit = np.sort(s.rng(8).permutation(unrelated)[: config.pca_max_people])
    scores = bg.genetic_pcs(out / "genotypes", variants, config.n_pcs, fit)
    pcs = np.full((len(people), config.n_pcs), np.nan)
    pcs[genotyped, : scores.shape[1]] = scores
    covariates = people[["IID", "FID", "age", "sex"]].copy()
    for k in range(config.n_pcs):
        covariates[f"PC{k + 1}"] = pcs[:, k]
    return written, pgs, counts, covariates


def _write_images(out: Path, s: _Cohort) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Per-image traits (person's adjusted trait + covariates at that age + image noise) → images/ and masks.

    Returns:
        (images: person IID eye|visit years, paths, per-image renderer traits, mask class fractions).
    """
    config, people = s.config, s.people
    images = bi.image_table(
        people["IID"].to_numpy(),
        config.image_kind,
        config.second_image_fraction,
        config.revisit_years,
        s.rng(9),
    )
    paths = bi.image_paths(images, config.image_kind)
    specs = tuple(config.traits)
    person = images["person"].to_numpy()
    images["age"] = np.round(people["age"].to_numpy()[person] + images["years"].to_numpy(), 1)
    values = s.base[person][:, : len(specs)] + s.covariates(specs, images["age"].to_numpy(), s.male[person])
    values += config.image_noise_sd * s.rng(10).standard_normal(values.shape)
    traits = pd.DataFrame(values, columns=[spec.name for spec in specs])
    fractions = bi.render_images(
        out,
        images,
        paths,
        traits,
        config.image_kind,
        config.image_size,
        s.seed(11),
        progress=config.progress,
        calibration=config.render_calibration,
    )
    return images, paths, traits, fractions


def _write_tables(
    out: Path,
    s: _Cohort,
    covariates: pd.DataFrame,
    images: pd.DataFrame,
    paths: pd.DataFrame,
    image_traits: pd.DataFrame,
) -> tuple[pd.DataFrame, dict]:
    """manifest.parquet, covariates.parquet, downstream/ labels and splits, truth/ tables.

    Returns:
        (downstream labels, label definitions: name → (source trait, class frequencies), truth traits table).
    """
    config, people = s.config, s.people
    key = "eye" if config.image_kind == "fundus" else "visit"
    manifest = pd.concat([images[["IID"]], paths.drop(columns="mask"), images[[key, "age"]]], axis=1)
    flags = covariates.drop(columns=["FID", "age"]).assign(
        genotyped=people["genotyped"].to_numpy(), burden=people["burden"].to_numpy()
    )
    bi.write_parquet(manifest.merge(flags, on="IID", how="left", validate="m:1"), out / "manifest.parquet")
    bi.write_parquet(covariates, out / "covariates.parquet")

    d = KIND_DEFAULTS[config.image_kind]
    grade_trait, grade_prevalence = d["grade"]
    finding, finding_trait, rate = d["finding"]
    definitions = {"grade": (grade_trait, grade_prevalence), finding: (finding_trait, (1 - rate, rate))}
    definitions = {k: v for k, v in definitions.items() if v[0] in image_traits.columns}  # custom trait sets
    split = pd.Series(bi.split_people(people["IID"].to_numpy(), config.split_fractions, s.rng(11)))
    split.index = people["IID"].to_numpy()
    labels = pd.concat([images[["IID", key]], paths[["image", "mask"]]], axis=1)
    label_rng = s.rng(12)
    for name, (trait, frequencies) in definitions.items():
        labels[name] = bi.ordinal_labels(
            image_traits[trait].to_numpy(), frequencies, config.grade_visible, label_rng
        )
    labels["split"] = split.loc[labels["IID"]].to_numpy()
    bi.write_parquet(labels, out / "downstream" / "labels.parquet")
    splits = pd.DataFrame({"IID": split.index, "split": split.to_numpy()})
    atomic_write_text(out / "downstream" / "splits.tsv", splits.to_csv(sep="\t", index=False))

    specs = s.architecture.specs
    traits = s.base + s.covariates(specs, people["age"].to_numpy(), s.male)
    table = pd.DataFrame(traits, columns=s.architecture.names)
    for k, spec in enumerate(specs):
        table[f"g_{spec.name}"] = s.g_target[:, k]
    table.insert(0, "IID", people["IID"].to_numpy())
    bi.write_parquet(table, out / "truth" / "traits.parquet")
    per_image = pd.concat([labels[["IID", key, "image"]], image_traits], axis=1)
    bi.write_parquet(per_image, out / "truth" / "image_traits.parquet")
    bi.write_parquet(s.architecture.effects, out / "truth" / "effects.parquet")
    return labels, definitions, table


def simulate_biobank(out: str | Path, config: BiobankConfig | None = None) -> BiobankSummary:
    """Simulate the whole biobank into ``out`` (created; existing files are overwritten).

    Every stage streams: genotypes are decoded from the tree sequences and written in variant chunks,
    images are rendered and written in batches. Same ``config`` (and seed) → byte-identical files.
    Example: ``simulate_biobank("biobank", BiobankConfig(n_individuals=500, image_size=32))``.
    """
    config = (config or BiobankConfig()).resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    memory: dict[str, float] = {}  # peak resident memory (MB) at the end of each stage
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 3)
        memory[stage] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        clock = now

    state = _draw(config)
    lap("simulate")
    written, pgs, burden_counts, covariates = _write_genetics(out, state)
    lap("genetics")
    images, paths, image_traits, fractions = _write_images(out, state)
    lap("images")
    labels, definitions, traits = _write_tables(out, state, covariates, images, paths, image_traits)
    document = truth_document(
        config,
        state.architecture,
        state.cohorts,
        state.people,
        written,
        state.g_target,
        state.base,
        pgs,
        burden_counts,
        out,
        labels=definitions,
        table=labels,
        fractions=fractions,
        traits=traits,
    )
    atomic_write_text(out / "truth.json", json.dumps(document, indent=1, default=str, allow_nan=False) + "\n")
    lap("tables_truth")
    source = state.cohorts.variants["source"].to_numpy()[written.rows]
    return BiobankSummary(
        out=out,
        n_individuals=config.n_individuals,
        n_images=len(images),
        n_genotyped=int(state.people["genotyped"].sum()),
        n_burden=int(state.people["burden"].sum()),
        n_variants=len(written.bim),
        n_exome_variants=int((source == "exome").sum()),
        pgs=pgs["pgs_id"].tolist(),
        seconds=seconds,
        peak_memory_mb=memory,
    )
