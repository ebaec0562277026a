"""Latent traits of the synthetic biobank: documented genetic architectures, effects and trait values.

Each trait is ``y = G + E + covariates`` with ``Var(G) + Var(E) = 1`` in the simulated population, so the
heritability is ``h² = Var(G)`` of the covariate-adjusted trait (as GCTA/LDSC estimate it with age and sex
as covariates). ``G`` sums up to three components, all additive on the derived-allele count ``g``:

* major common variants: variant k explains ``v_k = 2pq β_k²`` (sign random);
* polygenic background: ``n_polygenic`` random array variants with standardized effects ~ N(0, h²_poly / M)
  (the GCTA model, Yang et al. 2010), i.e. β = b / sqrt(2pq);
* rare-variant burden: in the trait's genes every pLoF allele adds ``plof_effect`` SD and every damaging
  missense allele ``missense_effect`` SD (same direction); synonymous variants do nothing.

Covariates add ``age_effect × (age − mean age) + sex_effect × (male − P(male))``. Defaults and their sources
are in docs/synthetic_biobank.md; the numbers below cite them briefly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from genetics.coalescent import CoalescentCohorts


@dataclass(frozen=True)
class TraitSpec:
    """Architecture of one latent trait (effects in SD of the covariate-adjusted trait).

    Attributes:
        name: trait name (for image traits: the renderer's trait name).
        major_variance: variance explained by each major common causal variant (one entry per variant).
        polygenic_h2: variance explained by the polygenic background.
        n_polygenic: variants carrying the polygenic background.
        burden_genes: genes whose rare damaging variants shift the trait.
        plof_effect: SD per pLoF allele in those genes; missense_effect: SD per damaging missense allele.
        age_effect: SD per year of age; sex_effect: SD, men minus women.
        source: where the numbers come from (short form; full references in the docs).
    """

    name: str
    major_variance: tuple[float, ...] = ()
    polygenic_h2: float = 0.0
    n_polygenic: int = 500
    burden_genes: int = 0
    plof_effect: float = 0.0
    missense_effect: float = 0.0
    age_effect: float = 0.0
    sex_effect: float = 0.0
    source: str = ""

    @property
    def architecture(self) -> str:
        kinds = [
            k
            for k, on in (
                ("major", bool(self.major_variance)),
                ("polygenic", self.polygenic_h2 > 0),
                ("burden", self.burden_genes > 0),
            )
            if on
        ]
        return "+".join(kinds) or "covariates-only"


FUNDUS_TRAIT_SPECS: tuple[TraitSpec, ...] = (
    TraitSpec(
        "disc_size",
        (0.03, 0.02, 0.01),
        0.30,
        sex_effect=0.1,
        source="disc area: twin h2 ~0.5-0.8 (Sanfilippo 2010); large loci ATOH7, CDC7-TGFBR3 (Springelkamp 2017)",
    ),
    TraitSpec(
        "cup_to_disc",
        (0.02, 0.015, 0.01),
        0.30,
        age_effect=0.01,
        source="VCDR: SNP h2 ~0.3-0.4, many loci (Springelkamp 2017; Craig 2020; Alipanahi 2021)",
    ),
    TraitSpec(
        "vessel_density",
        (),
        0.20,
        age_effect=-0.02,
        source="vessel density/fractal dimension: polygenic, SNP h2 ~0.1-0.2 (Zekavat 2022)",
    ),
    TraitSpec(
        "vessel_tortuosity",
        (0.01,),
        0.20,
        burden_genes=2,
        plof_effect=0.8,
        missense_effect=0.4,
        age_effect=0.01,
        source="tortuosity: SNP h2 ~0.2-0.25 (Tomasoni 2023); rare COL4A1/COL4A2 variants (Zenteno 2014)",
    ),
    TraitSpec(
        "vessel_caliber",
        (0.02, 0.01),
        0.27,
        age_effect=-0.03,
        sex_effect=-0.1,
        source="CRAE/CRVE: twin h2 0.70/0.83 (Taarnhoj 2006), 4 loci (Ikram 2010); narrowing with age (Wong 2003)",
    ),
    TraitSpec(
        "pigmentation",
        (0.08, 0.04, 0.02),
        0.30,
        source="pigmentation genes OCA2/HERC2, TYR, SLC45A2 with large effects (Sturm 2009; Liu 2010)",
    ),
    TraitSpec(
        "macula_darkness",
        age_effect=0.04,
        sex_effect=-0.2,
        source="covariates only (age-related macular change); no genetic effect by design",
    ),
    TraitSpec(
        "lesion_load",
        (),
        0.10,
        age_effect=0.03,
        source="retinopathy lesions: modest heritability (Arar 2008; Hietala 2008), rise with age",
    ),
)

MRI_TRAIT_SPECS: tuple[TraitSpec, ...] = (
    TraitSpec(
        "brain_volume",
        (0.02, 0.01),
        0.40,
        age_effect=-0.05,
        sex_effect=0.4,
        source="brain volume: SNP h2 ~0.4-0.5 (Elliott 2018; Jansen 2020); atrophy ~0.2-0.5%/yr (Fjell 2010)",
    ),
    TraitSpec(
        "ventricle_size",
        (0.02, 0.01),
        0.30,
        age_effect=0.06,
        sex_effect=0.3,
        source="ventricular volume: SNP h2 ~0.3-0.4, 7 loci (Vojinovic 2018); grows with age",
    ),
    TraitSpec(
        "cortical_thickness",
        (),
        0.30,
        age_effect=-0.03,
        source="mean cortical thickness: polygenic, SNP h2 ~0.3 (Grasby 2020)",
    ),
    TraitSpec(
        "wm_lesion_load",
        (),
        0.20,
        burden_genes=3,
        plof_effect=0.8,
        missense_effect=0.4,
        age_effect=0.06,
        source="WMH: SNP h2 ~0.2-0.3 (Persyn 2020); rare NOTCH3/HTRA1/COL4A1 variants (CADASIL/CARASIL)",
    ),
    TraitSpec(
        "gm_intensity",
        age_effect=-0.02,
        sex_effect=0.3,
        source="covariates only (scanner/tissue contrast); no genetic effect by design",
    ),
)

UNRELATED_TRAIT_SPECS: tuple[TraitSpec, ...] = (
    TraitSpec(
        "height_like", (), 0.50, n_polygenic=1000, source="height: SNP h2 ~0.5, very polygenic (Yengo 2018)"
    ),
    TraitSpec(
        "ldl_like",
        (0.04, 0.01),
        0.20,
        source="LDL cholesterol: SNP h2 ~0.2-0.3 with large loci APOE, PCSK9 (Teslovich 2010)",
    ),
    TraitSpec(
        "bmi_like", (), 0.25, n_polygenic=1000, source="BMI: SNP h2 ~0.2-0.25, very polygenic (Yengo 2018)"
    ),
)


def calibrated_specs(
    specs: tuple[TraitSpec, ...], major_variance: float | None, polygenic_scale: float = 1.0
) -> tuple[TraitSpec, ...]:
    """The specs with every major variant explaining ``major_variance`` of its trait (None: unchanged) and
    every polygenic heritability × ``polygenic_scale``.

    The demo calibration (docs/synthetic_biobank.md, "Demo calibration"): the sources' per-variant shares
    (0.01–0.08) are what biobank-scale GWAS find, and the toy genome's ~300 independent segments (vs
    ~60,000) concentrate a polygenic background into strong regional signals. Burden and covariates stay.
    """
    if major_variance is not None and not 0.0 < major_variance < 1.0:
        raise ValueError(f"major_variance must be in (0, 1), got {major_variance}")
    if not 0.0 <= polygenic_scale <= 1.0:
        raise ValueError(f"polygenic_scale must be in [0, 1], got {polygenic_scale}")
    return tuple(
        replace(
            s,
            major_variance=s.major_variance
            if major_variance is None
            else (major_variance,) * len(s.major_variance),
            polygenic_h2=s.polygenic_h2 * polygenic_scale,
        )
        for s in specs
    )


@dataclass
class Architecture:
    """Drawn effects of every trait.

    Attributes:
        specs: the traits, in column order of every trait matrix.
        effects: one row per (trait, causal variant): ``trait component row ID CHROM POS effect_allele AF beta
            variance`` (row: of the cohorts' variant table; beta per derived allele; variance = 2pq β² at
            the population AF).
        genes: causal burden genes, ``trait GENE``.
    """

    specs: tuple[TraitSpec, ...]
    effects: pd.DataFrame
    genes: pd.DataFrame

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def genetic_variance(self) -> np.ndarray:
        """(T,) expected Var(G) of each trait in the simulated population (Hardy–Weinberg, no LD)."""
        by_trait = self.effects.groupby("trait")["variance"].sum()
        return np.array([float(by_trait.get(name, 0.0)) for name in self.names])


def _pick_spaced(
    candidates: np.ndarray,
    variants: pd.DataFrame,
    k: int,
    taken: list[int],
    spacing: int,
    rng: np.random.Generator,
    trait: str,
) -> list[int]:
    """Pick k candidate rows at least ``spacing`` bp from every row already taken (any trait)."""
    chrom, pos = variants["CHROM"].to_numpy(), variants["POS"].to_numpy()
    picked: list[int] = []
    for row in rng.permutation(candidates):
        if len(picked) == k:
            break
        near = [t for t in taken if chrom[t] == chrom[row] and abs(pos[t] - pos[row]) < spacing]
        if not near:
            picked.append(int(row))
            taken.append(int(row))
    if len(picked) < k:
        raise ValueError(
            f"trait {trait}: no room for {k} major variants {spacing} bp apart; simulate a longer genome "
            "(more or longer chromosomes) or fewer major variants"
        )
    return picked


def draw_architecture(
    specs: tuple[TraitSpec, ...],
    variants: pd.DataFrame,
    annotations: pd.DataFrame,
    rng: np.random.Generator,
    major_min_maf: float = 0.05,
    major_spacing: int = 200_000,
    damaging_missense: float = 0.3,
) -> Architecture:
    """Draw causal variants, genes and effects for ``specs``.

    Args:
        variants: the cohorts' variant table (``CHROM POS ID ALT AF MAF source``).
        annotations: rare coding variants ``row ID GENE ANNOT`` (row into ``variants``).
        major_min_maf: major variants are array SNPs at least this common (so they are common loci).
        major_spacing: bp between any two major variants (of any trait), so loci stay distinct.
        damaging_missense: fraction of missense variants of a causal gene that carry an effect.
    """
    array = np.flatnonzero((variants["source"] == "array").to_numpy())
    major_pool = array[variants["MAF"].to_numpy()[array] >= major_min_maf]
    taken: list[int] = []
    genes_left = list(rng.permutation(np.unique(annotations["GENE"]))) if len(annotations) else []
    parts, gene_rows = [], []
    p = variants["AF"].to_numpy()
    het = 2 * p * (1 - p)
    for spec in specs:
        rows_major = _pick_spaced(
            major_pool, variants, len(spec.major_variance), taken, major_spacing, rng, spec.name
        )
        beta = rng.choice([-1.0, 1.0], len(rows_major)) * np.sqrt(
            np.array(spec.major_variance) / het[rows_major]
        )
        parts.append((spec.name, "major", np.array(rows_major, dtype=np.int64), beta))
        if spec.polygenic_h2 > 0:
            pool = np.setdiff1d(array, rows_major)
            rows = np.sort(rng.choice(pool, min(spec.n_polygenic, pool.size), replace=False))
            b = rng.normal(0.0, np.sqrt(spec.polygenic_h2 / rows.size), rows.size)
            parts.append((spec.name, "polygenic", rows, b / np.sqrt(het[rows])))
        if spec.burden_genes:
            if len(genes_left) < spec.burden_genes:
                raise ValueError(
                    f"trait {spec.name}: not enough genes left for {spec.burden_genes} burden genes"
                )
            chosen = [genes_left.pop() for _ in range(spec.burden_genes)]
            gene_rows += [(spec.name, g) for g in chosen]
            coding = annotations[annotations["GENE"].isin(chosen)]
            plof = coding["ANNOT"].to_numpy() == "pLoF"
            missense = (coding["ANNOT"].to_numpy() == "missense") & (
                rng.random(len(coding)) < damaging_missense
            )
            effect = np.where(plof, spec.plof_effect, np.where(missense, spec.missense_effect, 0.0))
            keep = effect != 0
            parts.append((spec.name, "burden", coding["row"].to_numpy()[keep], effect[keep]))
    effects = pd.concat(
        [pd.DataFrame({"trait": t, "component": c, "row": r, "beta": b}) for t, c, r, b in parts],
        ignore_index=True,
    )
    effects["row"] = effects["row"].astype(np.int64)
    for column in ("ID", "CHROM", "POS", "AF"):
        effects[column] = variants[column].to_numpy()[effects["row"]]
    effects.insert(effects.columns.get_loc("AF"), "effect_allele", variants["ALT"].to_numpy()[effects["row"]])
    effects["variance"] = het[effects["row"]] * effects["beta"] ** 2
    excess = {s.name: v for s, v in zip(specs, _by_trait(effects, specs), strict=True) if v >= 1}
    if excess:
        raise ValueError(f"genetic variance reaches 1 for {excess}; lower the effects or heritabilities")
    return Architecture(specs, effects, pd.DataFrame(gene_rows, columns=["trait", "GENE"]))


def _by_trait(effects: pd.DataFrame, specs: tuple[TraitSpec, ...]) -> list[float]:
    sums = effects.groupby("trait")["variance"].sum()
    return [float(sums.get(s.name, 0.0)) for s in specs]


def genetic_values(cohorts: CoalescentCohorts, architecture: Architecture) -> tuple[np.ndarray, np.ndarray]:
    """Stream the causal variants once; return G of the target (N, T) and discovery (n_discovery, T) cohorts.

    G = Σ β (g − 2p) with p the population AF, so G has mean ≈ 0.
    """
    effects = architecture.effects
    names = architecture.names
    rows = np.unique(effects["row"].to_numpy())
    weights = np.zeros((rows.size, len(names)))  # (causal variants, traits)
    column = {name: k for k, name in enumerate(names)}
    np.add.at(weights, (np.searchsorted(rows, effects["row"]), effects["trait"].map(column)), effects["beta"])
    centre = 2 * cohorts.variants["AF"].to_numpy()[rows]
    target = np.zeros((cohorts.n_target, len(names)))
    discovery = np.zeros((cohorts.n_discovery, len(names)))
    for chunk in cohorts.genotype_chunks(rows):
        at = np.searchsorted(rows, chunk.index)
        w, c = weights[at], centre[at]
        target += (chunk.target - c) @ w
        discovery += (chunk.discovery - c) @ w
    return target, discovery


def covariate_part(
    specs: tuple[TraitSpec, ...], age: np.ndarray, male: np.ndarray, age_mean: float, male_rate: float
) -> np.ndarray:
    """(n, T) covariate contribution ``age_effect (age − age_mean) + sex_effect (male − male_rate)``."""
    a = np.array([s.age_effect for s in specs])
    s = np.array([s.sex_effect for s in specs])
    return np.outer(age - age_mean, a) + np.outer(male.astype(np.float64) - male_rate, s)


def residual_noise(architecture: Architecture, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, T) environmental noise E with Var(E) = 1 − expected Var(G)."""
    sd = np.sqrt(1.0 - architecture.genetic_variance())
    return rng.standard_normal((n, len(architecture.specs))) * sd
