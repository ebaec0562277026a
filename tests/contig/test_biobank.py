"""The synthetic biobank: read through the normal readers, planted truth recoverable by obvious oracles."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner
from scipy import stats

from contig.biobank import BiobankConfig, simulate_biobank
from contig.biobank.traits import FUNDUS_TRAIT_SPECS, MRI_TRAIT_SPECS, TraitSpec
from contig.cli import cli
from genetics.burden import compute_burdens
from genetics.burden_inputs import read_annotations, read_masks
from genetics.coalescent import CoalescentConfig
from genetics.pgs import score
from genetics.pgs_catalog import read_scoring_file
from genetics.plink import PlinkFileset
from gwas.pipeline import ClumpConfig, run_gwas
from gwas.runner import GwasConfig
from imaging.io import read_image, read_volume

N = 1_000
MISSING = 0.2


def _traits() -> tuple[TraitSpec, ...]:
    """Default fundus architectures; the burden trait's rare-variant effects are enlarged (pLoF 2 SD, every
    missense 1 SD per allele) so that the ~50-100 carriers at N = 1,000 show the shift with certainty."""
    return tuple(
        replace(s, plof_effect=2.0, missense_effect=1.0) if s.name == "vessel_tortuosity" else s
        for s in FUNDUS_TRAIT_SPECS
    )


# Default architectures and rates except: a 4 × 1 Mb genome (major variants 60 kb apart to fit), 1,000
# discovery people, 32-px images, 20% missing genotypes/burden data (so the fractions are measurable), and
# the enlarged burden effects above. One build (~8 s) serves every test that uses the ``biobank`` fixture.
CONFIG = BiobankConfig(
    n_individuals=N,
    n_discovery=1_000,
    image_size=32,
    genome=CoalescentConfig(n_chromosomes=4, chromosome_length=1_000_000),
    n_genes=8,
    traits=_traits(),
    damaging_missense=1.0,
    major_spacing=60_000,
    missing_genotypes=MISSING,
    missing_burden=MISSING,
    progress=False,
)


@pytest.fixture(scope="module")
def biobank(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("biobank")
    summary = simulate_biobank(out, CONFIG)
    assert summary.n_individuals == N and summary.n_images > N
    return out, json.loads((out / "truth.json").read_text())


def _tiny(seed: int = 0, **kw) -> BiobankConfig:
    genome = CoalescentConfig(n_chromosomes=1, chromosome_length=300_000)
    values = dict(n_individuals=60, n_discovery=100, image_size=16, genome=genome, n_genes=2, seed=seed,
                  traits=(TraitSpec("disc_size", (0.05,), 0.2, n_polygenic=50),), unrelated_traits=(),
                  progress=False)  # fmt: skip
    return BiobankConfig(**(values | kw))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.filterwarnings("ignore:LD from .* founders is unreliable")
def test_same_seed_gives_identical_files(tmp_path):
    simulate_biobank(tmp_path / "a", _tiny(seed=5))
    simulate_biobank(tmp_path / "b", _tiny(seed=5))
    simulate_biobank(tmp_path / "c", _tiny(seed=6))
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b and len(a) > 100
    assert a["genotypes.bed"] != c["genotypes.bed"] and a["truth.json"] != c["truth.json"]


def test_folder_reads_through_the_normal_readers(biobank):
    out, truth = biobank
    fileset = PlinkFileset(out / "genotypes")
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert {"IID", "image", "eye", "age", "sex", "PC1", "PC10", "genotyped", "burden"} <= set(
        manifest.columns
    )
    assert manifest["eye"].is_in(["left", "right"]).all() and manifest["IID"].n_unique() == N
    two = manifest.group_by("IID").len().filter(pl.col("len") == 2).height
    assert 0.7 * N < two < 0.95 * N  # both eyes for ~85%
    for path in manifest["image"].head(20):
        image = read_image(out / path)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    bim = fileset.bim
    assert (bim["ID"] == bim["CHROM"] + ":" + bim["POS"].astype(str)).all()
    assert fileset.n_samples == truth["cohort"]["n_genotyped"] and set(fileset.fam["SEX"]) == {1, 2}
    block = fileset.read(np.arange(0, fileset.n_variants, 7))
    assert 0.005 < np.isnan(block).mean() < 0.03  # ~1% missing calls (plus unsequenced exome calls)
    genotyped = manifest.filter(pl.col("genotyped"))
    assert set(genotyped["IID"]) == set(fileset.fam["IID"])
    assert (
        genotyped["PC1"].is_not_null().all() and manifest.filter(~pl.col("genotyped"))["PC1"].is_nan().all()
    )
    covariates = pd.read_parquet(out / "covariates.parquet")
    assert list(covariates.columns[:4]) == ["IID", "FID", "age", "sex"] and len(covariates) == N
    assert covariates["age"].between(40, 70).all() and set(covariates["sex"]) == {"F", "M"}


def test_missing_modalities_at_the_configured_rates(biobank):
    out, truth = biobank
    fam = PlinkFileset(out / "genotypes").fam
    sd = np.sqrt(MISSING * (1 - MISSING) / N)
    assert abs((1 - len(fam) / N) - MISSING) < 4 * sd
    sequenced = pd.read_csv(out / "burden" / "samples.txt", sep="\t", header=None, names=["FID", "IID"])
    assert set(sequenced["IID"]) <= set(fam["IID"])
    assert abs((1 - len(sequenced) / len(fam)) - MISSING) < 4 * np.sqrt(MISSING * (1 - MISSING) / len(fam))
    fileset = PlinkFileset(out / "genotypes")
    annotated = read_annotations(out / "burden" / "annotations.tsv").table
    exome = np.flatnonzero(fileset.bim["ID"].isin(annotated["ID"]).to_numpy())
    calls = fileset.read(exome)
    unsequenced = ~fileset.fam["IID"].isin(sequenced["IID"]).to_numpy()
    assert np.isnan(calls[unsequenced]).all() and np.isnan(calls[~unsequenced]).mean() < 0.03


@pytest.mark.filterwarnings("ignore:.*not in the .fam are ignored")  # people without genotypes
def test_gwas_on_the_true_traits_finds_the_planted_loci(biobank, tmp_path):
    out, truth = biobank
    names = [name for name, t in truth["traits"].items() if t["image"]]
    traits = pd.read_parquet(out / "truth" / "traits.parquet", columns=["IID", *names])
    result = run_gwas(out / "genotypes", traits, tmp_path / "gwas", covar=out / "covariates.parquet",
                      options=GwasConfig(progress=False, covar_names=["age", "sex", "PC1", "PC2"]),
                      clump=ClumpConfig(p1=1e-5, p2=1e-3, r2=0.1, kb=250), plots=False)  # fmt: skip
    sumstats = pd.read_parquet(result.files["sumstats"], columns=["phenotype", "ID", "P", "LOG10_P"])
    chi2 = []
    for name in names:
        major = truth["traits"][name]["major_variants"]
        hits = sumstats[(sumstats["phenotype"] == name) & sumstats["ID"].isin([m["ID"] for m in major])]
        chi2 += list(stats.chi2.isf(hits["P"], 1))
    # 12 planted majors explaining 1-8% each: Σχ² ≈ 12 + 800·Σv ≈ 12 + 800·0.27 ≈ 230; null ≈ 12 ± 5.
    assert len(chi2) == 12 and sum(chi2) > 100
    # The strongest planted variant (pigmentation, 8% of the variance; NCP ≈ 64 at ~800 genotyped people,
    # expected P ≈ 1e-15) is found at P < 1e-5, as are pigmentation's planted loci by clumping.
    pigmentation = truth["traits"]["pigmentation"]["major_variants"]
    top = max(pigmentation, key=lambda m: m["variance_explained"])
    hits = sumstats[(sumstats["phenotype"] == "pigmentation")].set_index("ID")["P"]
    assert hits[top["ID"]] < 1e-5
    best = min(pigmentation, key=lambda m: hits[m["ID"]])
    loci = result.loci[result.loci["phenotypes"].str.contains("pigmentation")]
    assert ((loci["CHROM"].astype(str) == best["CHROM"]) & (loci["START"] - 250_000 <= best["POS"])
            & (best["POS"] <= loci["END"] + 250_000)).any()  # fmt: skip
    # A trait with no genetic effect is not inflated (no structure, few relatives). λ_GC of a null trait
    # varies by ± ~0.1 here: 4 Mb hold only a few hundred independent segments.
    summary = result.summary.set_index("phenotype")
    assert 0.7 < summary.loc["macula_darkness", "lambda_gc"] < 1.4


def test_pgs_files_score_and_predict_their_trait(biobank):
    out, truth = biobank
    files = sorted((out / "pgs").glob("SYN_*.txt"))
    assert {f.stem for f in files} == {p["pgs_id"] for p in truth["pgs"]} and len(files) == 10
    for f in files:
        sf = read_scoring_file(f)
        assert sf.header["format_version"] == "2.0" and int(sf.header["variants_number"]) == len(sf.variants)
    result = score(out / "genotypes", files)
    assert (result.report["match_rate"] == 1.0).all()
    traits = pd.read_parquet(out / "truth" / "traits.parquet")
    merged = result.scores.merge(traits, on="IID", validate="1:1")
    for entry in truth["pgs"]:
        r = np.corrcoef(merged[f"{entry['pgs_id']}_SUM"], merged[entry["trait"]])[0, 1]
        assert r == pytest.approx(entry["r_with_trait"], abs=1e-3)
        if truth["traits"][entry["trait"]]["h2_expected"] >= 0.2:
            assert r > 0.03, entry  # C+T from 1,000 discovery people: r ≈ 0.1-0.4, SE ≈ 0.035
    own = np.corrcoef(merged["SYN_pigmentation_SUM"], merged["pigmentation"])[0, 1]
    other = np.corrcoef(merged["SYN_height_like_SUM"], merged["pigmentation"])[0, 1]
    assert own > 0.2 and abs(other) < own / 2  # an unrelated trait's PGS does not predict it
    mean_r = np.mean([entry["r_with_trait"] for entry in truth["pgs"]])
    assert 0.15 < mean_r < 0.6  # noisy predictors: below sqrt(h2)


def test_burden_carriers_have_shifted_trait_means(biobank):
    out, truth = biobank
    annotations = read_annotations(out / "burden" / "annotations.tsv")
    masks = read_masks(out / "burden" / "masks.txt")
    assert [m.name for m in masks] == ["Mask1", "Mask2"] and masks[1].annotations == ("pLoF", "missense")
    shares = annotations.table["ANNOT"].value_counts(normalize=True)
    assert shares["missense"] > shares["synonymous"] > shares.get("pLoF", 0)
    fileset = PlinkFileset(out / "genotypes")
    result = compute_burdens(fileset, annotations, masks, aaf_bins=(0.01,), rule="sum")
    genes = truth["traits"]["vessel_tortuosity"]["burden"]["genes"]
    columns = result.columns["id"].isin([f"{g}.Mask2.0.01" for g in genes]).to_numpy()
    carriers = np.asarray(result.matrix[:, columns].sum(axis=1)).ravel() > 0
    trait = pd.read_parquet(out / "truth" / "traits.parquet").set_index("IID")
    values = trait.loc[fileset.fam["IID"], "vessel_tortuosity"].to_numpy()
    assert carriers.sum() >= 15
    t, p = stats.ttest_ind(values[carriers], values[~carriers])
    assert values[carriers].mean() - values[~carriers].mean() > 0.5 and p < 1e-4
    null = trait.loc[fileset.fam["IID"], "pigmentation"].to_numpy()  # not a burden trait
    assert abs(null[carriers].mean() - null[~carriers].mean()) < 0.5


def test_image_statistics_follow_the_traits(biobank):
    out, _ = biobank
    labels = pd.read_parquet(out / "downstream" / "labels.parquet")
    image_traits = pd.read_parquet(out / "truth" / "image_traits.parquet")
    assert (labels["image"] == image_traits["image"]).all()
    sample = labels.index[:300]
    masks = np.stack([read_image(out / p) for p in labels.loc[sample, "mask"]])
    images = np.stack([read_image(out / p) for p in labels.loc[sample, "image"]]).astype(np.float64)
    assert set(np.unique(masks)) <= {0, 1, 2, 3}
    traits = image_traits.loc[sample]
    rho = lambda a, b: stats.spearmanr(a, b)[0]  # noqa: E731
    assert rho((masks == 1).mean(axis=(1, 2)), traits["disc_size"]) > 0.5
    assert rho((masks == 3).mean(axis=(1, 2)), traits["lesion_load"]) > 0.4
    assert rho(images.mean(axis=(1, 2, 3)), traits["pigmentation"]) < -0.4  # darker fundus
    # Downstream labels: grades 0-4 from lesions, a binary finding, a fixed split by person.
    assert set(labels["grade"]) <= set(range(5)) and rho(labels["grade"], image_traits["lesion_load"]) > 0.4
    assert set(labels["glaucoma_suspect"]) <= {0, 1}
    assert labels.groupby("IID")["split"].nunique().max() == 1
    shares = labels.drop_duplicates("IID")["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.02 and abs(shares["test"] - 0.15) < 0.02


def test_truth_documents_the_architecture(biobank):
    out, truth = biobank
    traits = truth["traits"]
    assert (
        traits["macula_darkness"]["architecture"] == "covariates-only"
        and traits["macula_darkness"]["pgs_id"] is None
    )
    assert traits["vessel_tortuosity"]["architecture"] == "major+polygenic+burden"
    assert (
        traits["disc_size"]["image"] == "render_fundus:disc_size" and traits["height_like"]["image"] is None
    )
    for name, t in traits.items():  # rare variants with (enlarged) large effects make burden traits vary more
        tolerance = 0.3 if t["burden"]["genes"] else 0.12
        assert abs(t["h2_realized"] - t["h2_expected"]) < tolerance, name
    effects = pd.read_parquet(out / "truth" / "effects.parquet")
    bim_ids = set(PlinkFileset(out / "genotypes").bim["ID"])
    major = effects[effects["component"] == "major"]
    assert set(major["ID"]) <= bim_ids and len(major) == 14
    assert len(truth["cohort"]["related_pairs"]) == round(0.045 * N) + round(0.013 * N)


@pytest.mark.filterwarnings("ignore:LD from .* founders is unreliable")
def test_mri_biobank_writes_co_registered_contrasts(tmp_path):
    config = _tiny(
        image_kind="mri3d", n_individuals=40, traits=MRI_TRAIT_SPECS, major_spacing=30_000, n_genes=4
    )
    config = replace(config, second_image_fraction=0.5)
    simulate_biobank(tmp_path, config)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert {"image_t1", "image_t2", "image_flair", "visit"} <= set(manifest.columns)
    assert (manifest["image"] == manifest["image_t1"]).all() and set(manifest["visit"]) == {0, 1}
    row = manifest.iloc[0]
    volumes = [read_volume(tmp_path / row[f"image_{c}"]) for c in ("t1", "t2", "flair")]
    assert all(v.data.shape == (16, 16, 16) for v in volumes)
    assert not np.allclose(volumes[0].data, volumes[1].data)
    labels = pd.read_parquet(tmp_path / "downstream" / "labels.parquet")
    mask = read_volume(tmp_path / labels["mask"].iloc[0]).data
    assert mask.shape == (16, 16, 16) and set(np.unique(mask)) <= {0, 1, 2, 3, 4} and (mask == 3).any()
    assert set(labels["grade"]) <= {0, 1, 2, 3}  # Fazekas-like
    revisit = manifest[manifest["visit"] == 1].iloc[0]
    first = manifest[(manifest["IID"] == revisit["IID"]) & (manifest["visit"] == 0)].iloc[0]
    assert revisit["age"] == pytest.approx(first["age"] + 2.5, abs=0.11)


@pytest.mark.filterwarnings("ignore:LD from .* founders is unreliable")
def test_cli_simulate(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--help"])
    assert result.exit_code == 0 and "Examples" in result.output and "--missing-burden" in result.output
    args = ["simulate", "--out", str(tmp_path / "cli"), "--n-individuals", "40", "--image-size", "16",
            "--seed", "3", "--missing-genotypes", "0.25", "--quiet"]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "40 people" in result.output and (tmp_path / "cli" / "truth.json").is_file()
    assert PlinkFileset(tmp_path / "cli" / "genotypes").n_samples < 40
    bad = runner.invoke(cli, ["simulate", "--out", str(tmp_path / "x"), "--image-kind", "xray"])
    assert bad.exit_code != 0
