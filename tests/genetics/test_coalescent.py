"""Coalescent cohorts (msprime): determinism, frequency spectrum, LD, relatives, streamed .bed writing."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from genetics.coalescent import (
    BedWriter,
    CoalescentConfig,
    add_missing_calls,
    make_pedigree,
    simulate_cohorts,
)
from genetics.plink import PlinkFileset, write_plink

CONFIG = CoalescentConfig(n_chromosomes=2, chromosome_length=400_000)
REGIONS = pd.DataFrame({"CHROM": ["1", "2"], "START": [100_001, 250_001], "END": [130_000, 280_000]})


@pytest.fixture(scope="module")
def cohorts():
    """400 target people (10 sibling and 5 parent-offspring pairs) and 300 discovery people."""
    return simulate_cohorts(400, 300, CONFIG, REGIONS, n_sibling_pairs=10, n_parent_offspring=5, seed=11)


@pytest.fixture(scope="module")
def genotypes(cohorts):
    """Every variant decoded: target (400, M) and discovery (300, M) int8 dosages."""
    chunks = list(cohorts.genotype_chunks(chunk_size=500))
    target = np.concatenate([c.target for c in chunks], axis=1)
    discovery = np.concatenate([c.discovery for c in chunks], axis=1)
    assert np.array_equal(np.concatenate([c.index for c in chunks]), np.arange(len(cohorts.variants)))
    return target, discovery


def test_same_seed_same_cohorts_other_seed_differs(cohorts, genotypes):
    again = simulate_cohorts(400, 300, CONFIG, REGIONS, n_sibling_pairs=10, n_parent_offspring=5, seed=11)
    pd.testing.assert_frame_equal(again.variants, cohorts.variants)
    target = np.concatenate([c.target for c in again.genotype_chunks(chunk_size=123)], axis=1)
    assert np.array_equal(target, genotypes[0])  # also independent of the chunk size
    other = simulate_cohorts(400, 300, CONFIG, REGIONS, seed=12)
    assert not other.variants["POS"].equals(cohorts.variants["POS"])


def test_variant_table_follows_the_contract(cohorts, genotypes):
    v = cohorts.variants
    assert list(v.columns) == ["CHROM", "POS", "ID", "REF", "ALT", "CM", "AF", "MAF", "source"]
    assert (v["ID"] == v["CHROM"] + ":" + v["POS"].astype(str)).all() and v["ID"].is_unique
    for _, chrom in v.groupby("CHROM"):
        assert (
            chrom["POS"].is_monotonic_increasing and chrom["POS"].between(1, CONFIG.chromosome_length).all()
        )
    assert (v["REF"] != v["ALT"]).all() and set(v["REF"]) | set(v["ALT"]) <= set("ACGT")
    array, exome = v["source"] == "array", v["source"] == "exome"
    assert (v.loc[array, "MAF"] >= CONFIG.common_maf).all()
    assert (v.loc[exome, "MAF"] < CONFIG.common_maf).all() and exome.sum() > 20
    inside = np.zeros(len(v), dtype=bool)
    for r in REGIONS.itertuples():
        inside |= ((v["CHROM"] == r.CHROM) & v["POS"].between(r.START, r.END)).to_numpy()
    assert inside[exome.to_numpy()].all()  # rare variants are kept only inside the regions
    target, discovery = genotypes
    assert target.dtype == np.int8 and target.min() >= 0 and target.max() <= 2
    # AF (all simulated genomes) agrees with each cohort's own frequency: one shared population.
    for cohort in (target, discovery):
        assert np.corrcoef(cohort.mean(axis=0) / 2, v["AF"])[0, 1] > 0.97


def test_spectrum_and_mutation_model_look_human(cohorts):
    v = cohorts.variants
    array = v[v["source"] == "array"]
    # Neutral spectrum: density ∝ 1/f, so MAF 1-5% outnumbers MAF 20-50% per unit of frequency by far.
    low = ((array["MAF"] >= 0.01) & (array["MAF"] < 0.05)).sum() / 0.04
    high = (array["MAF"] >= 0.2).sum() / 0.3
    assert low > 3 * high
    transitions = (v["REF"] + v["ALT"]).isin(["AG", "GA", "CT", "TC"]).mean()
    assert 1.6 < transitions / (1 - transitions) < 2.8  # Ts/Tv ≈ 2.1
    # density of segregating array SNPs: θ = 4 Ne μ = 5e-4 per bp, so thousands per Mb
    assert 1_000 < len(array) / (CONFIG.n_chromosomes * CONFIG.chromosome_length / 1e6) < 6_000


def test_linkage_disequilibrium_decays_with_distance(cohorts, genotypes):
    v = cohorts.variants
    target = genotypes[0].astype(np.float64)
    common = np.flatnonzero(((v["MAF"] > 0.1) & (v["CHROM"] == "1")).to_numpy())[:400]
    r2 = np.corrcoef(target[:, common], rowvar=False) ** 2
    distance = np.abs(v["POS"].to_numpy()[common][:, None] - v["POS"].to_numpy()[common][None, :])
    near = r2[(distance > 0) & (distance < 5_000)].mean()
    far = r2[distance > 100_000].mean()
    assert near > 0.15 and far < 0.03 and near > 5 * far


def test_relatives_share_more_of_their_genome(cohorts, genotypes):
    target = genotypes[0].astype(np.float64)
    keep = cohorts.variants["MAF"].to_numpy() > 0.05
    z = target[:, keep]
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    grm = z @ z.T / z.shape[1]  # genomic relationship: ≈ 0.5 for first-degree relatives, ≈ 0 otherwise
    pairs = cohorts.pedigree.pairs
    assert (pairs["relationship"] == "siblings").sum() == 10 and (
        pairs["relationship"] == "parent-offspring"
    ).sum() == 5
    related = grm[pairs["row1"], pairs["row2"]]
    others = np.setdiff1d(np.arange(400), np.concatenate([pairs["row1"], pairs["row2"]]))
    unrelated = grm[np.ix_(others, others)][np.triu_indices(others.size, 1)]
    # Two short chromosomes hold few independent segments, so single entries are noisy (SD ≈ 0.15).
    assert related.mean() > 0.3 and abs(unrelated.mean()) < 0.02
    assert related.mean() > np.quantile(unrelated, 0.95)


def test_pedigree_uses_each_simulated_person_once():
    ped = make_pedigree(50, 30, 6, 4, np.random.default_rng(0))
    used = np.concatenate([ped.individual[ped.individual >= 0], ped.father[ped.father >= 0],
                           ped.mother[ped.mother >= 0], ped.discovery])  # fmt: skip
    assert np.array_equal(np.unique(used), np.arange(80))  # a parent in the cohort appears twice, no one else
    offspring = ped.individual < 0
    assert offspring.sum() == 2 * 6 + 4 and (ped.father[offspring] >= 0).all()
    with pytest.raises(ValueError, match="more than the cohort"):
        make_pedigree(10, 5, 4, 2, np.random.default_rng(0))


def test_missing_calls_at_the_requested_rate():
    dosage = np.ones((1000, 200), dtype=np.int8)
    out = add_missing_calls(dosage, 0.01, np.random.default_rng(1))
    assert out.dtype == np.float32 and abs(np.isnan(out).mean() - 0.01) < 0.001
    assert np.array_equal(add_missing_calls(dosage, 0.0, np.random.default_rng(1)), dosage.astype(np.float32))


def test_bed_writer_streams_the_same_bytes_as_write_plink(tmp_path, cohorts, genotypes):
    target = add_missing_calls(genotypes[0], 0.01, np.random.default_rng(2))
    bim = cohorts.variants[["CHROM", "ID", "CM", "POS", "ALT", "REF"]]
    iids = [f"s{i}" for i in range(target.shape[0])]
    fam = pd.DataFrame({"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "SEX": 1, "PHENO": "-9"})
    write_plink(tmp_path / "whole", target, bim, fam)
    with BedWriter(tmp_path / "streamed", n_samples=target.shape[0], encode_rows=5_000) as writer:
        for start in range(0, target.shape[1], 333):
            writer.write(target[:, start : start + 333])
        writer.bim, writer.fam = bim, fam
    for suffix in (".bed", ".bim", ".fam"):
        digests = {
            hashlib.sha256((tmp_path / f"{name}{suffix}").read_bytes()).hexdigest()
            for name in ("whole", "streamed")
        }
        assert len(digests) == 1, suffix
    np.testing.assert_array_equal(PlinkFileset(tmp_path / "streamed").read(np.arange(5)), target[:, :5])


def test_bed_writer_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with BedWriter(tmp_path / "broken", n_samples=3) as writer:
            writer.write(np.zeros((3, 2)))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="before closing"):
        with BedWriter(tmp_path / "untabled", n_samples=3) as writer:
            writer.write(np.zeros((3, 2)))
    assert list(tmp_path.iterdir()) == []
