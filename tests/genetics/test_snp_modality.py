"""SNP modality: training-only statistics, fill rules, the int8 memory map and on-demand decoding."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from genetics.errors import GeneticsError, SampleMismatchError
from genetics.plink import PlinkFileset, write_plink
from genetics.snp_modality import GENOTYPES_FILE, SAMPLES_FILE, SnpMatrix, SnpStats


def _genotypes(rng: np.random.Generator, n: int, m: int, missing: float = 0.1) -> np.ndarray:
    """(n, m) float32 hard calls with NaN; every variant keeps calls among the first rows."""
    freq = rng.uniform(0.05, 0.6, size=m)
    g = rng.binomial(2, freq, size=(n, m)).astype(np.float32)
    hole = rng.random((n, m)) < missing
    hole[:3] = False
    g[hole] = np.nan
    return g


@pytest.fixture
def toy(tmp_path):
    rng = np.random.default_rng(0)
    g = _genotypes(rng, 40, 25)
    write_plink(tmp_path / "toy", g)
    return PlinkFileset(tmp_path / "toy"), g


def _nan_mode(block: np.ndarray) -> np.ndarray:
    out = []
    for column in block.T:
        counts = np.bincount(column[~np.isnan(column)].astype(int), minlength=3)
        out.append(np.argmax(counts))  # first maximum: ties → smaller dosage
    return np.array(out, dtype=np.float32)


def test_mean_fill_and_stats_match_numpy(toy, tmp_path):
    fileset, g = toy
    train = np.arange(30)
    matrix = SnpMatrix.build(fileset, tmp_path / "snp", train_samples=train)
    mean = np.nanmean(g[train].astype(np.float64), axis=0)
    np.testing.assert_allclose(matrix.stats.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(matrix.stats.std, np.nanstd(g[train].astype(np.float64), axis=0), rtol=1e-5)
    np.testing.assert_array_equal(matrix.stats.n_obs, (~np.isnan(g[train])).sum(axis=0))
    expected = np.where(np.isnan(g), mean[None, :].astype(np.float32), g)
    rows = matrix.rows(np.arange(40))
    assert rows.dtype == np.float32 and rows.shape == (40, 25)
    assert not np.isnan(rows).any()
    np.testing.assert_allclose(rows, expected, rtol=1e-6)


def test_mode_fill_matches_numpy(tmp_path):
    g = np.array(
        [[0, 2, 1, np.nan], [1, 2, 1, 0], [1, 2, 0, 2], [np.nan, np.nan, 0, 2], [2, 0, np.nan, np.nan]],
        dtype=np.float32,
    )
    write_plink(tmp_path / "m", g)
    train = np.arange(4)  # column 2: two 1s and two 0s, a tie → 0
    matrix = SnpMatrix.build(PlinkFileset(tmp_path / "m"), tmp_path / "snp", train_samples=train, fill="mode")
    mode = _nan_mode(g[train])
    np.testing.assert_array_equal(mode, [1, 2, 0, 2])
    np.testing.assert_array_equal(matrix.stats.fill, mode)
    np.testing.assert_array_equal(matrix.rows(np.arange(5)), np.where(np.isnan(g), mode, g))


def test_standardize_uses_training_mean_and_std(toy, tmp_path):
    fileset, g = toy
    g = g.copy()
    train = np.arange(0, 40, 2)
    matrix = SnpMatrix.build(fileset, tmp_path / "snp", train_samples=train, standardize=True)
    x = g[train].astype(np.float64)
    mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    std[std < 1e-8] = 1.0
    filled = np.where(np.isnan(g), mean, g)
    np.testing.assert_allclose(matrix.rows(np.arange(40)), (filled - mean) / std, rtol=1e-5, atol=1e-5)
    # missing calls with mean fill standardise to exactly 0
    assert np.all(matrix.rows(np.arange(40))[np.isnan(g)] == 0)


def test_monomorphic_variant_standardises_to_zero(tmp_path):
    g = np.array([[1, 0], [1, 2], [1, 1], [np.nan, 2]], dtype=np.float32)
    write_plink(tmp_path / "mono", g)
    fs = PlinkFileset(tmp_path / "mono")
    matrix = SnpMatrix.build(fs, tmp_path / "snp", train_samples=[0, 1, 2], standardize=True)
    assert matrix.stats.std[0] == 1.0
    np.testing.assert_array_equal(matrix.rows([0, 1, 2, 3])[:, 0], 0.0)


def test_test_set_people_do_not_change_fitted_statistics(tmp_path):
    rng = np.random.default_rng(1)
    g = _genotypes(rng, 30, 12)
    other = g.copy()
    other[20:] = _genotypes(np.random.default_rng(99), 10, 12, missing=0.5)  # different test people
    write_plink(tmp_path / "a", g)
    write_plink(tmp_path / "b", other)
    train = np.arange(20)
    a = SnpMatrix.build(PlinkFileset(tmp_path / "a"), tmp_path / "sa", train_samples=train, standardize=True)
    b = SnpMatrix.build(PlinkFileset(tmp_path / "b"), tmp_path / "sb", train_samples=train, standardize=True)
    for field in ("fill", "mean", "std", "n_obs"):
        np.testing.assert_array_equal(getattr(a.stats, field), getattr(b.stats, field))
    np.testing.assert_array_equal(a.rows(train), b.rows(train))
    # ...whereas putting test people into training would change them
    c = SnpMatrix.build(PlinkFileset(tmp_path / "b"), tmp_path / "sc", train_samples=np.arange(30))
    assert not np.array_equal(a.stats.mean, c.stats.mean)


def test_memmap_round_trip_equals_direct_dosage(toy, tmp_path):
    fileset, g = toy
    variants = np.array([20, 3, 7, 8, 9, 0, 24, 15])  # unordered, non-contiguous
    samples = np.array([39, 0, 5, 6, 7, 12, 30, 2, 1])
    matrix = SnpMatrix.build(
        fileset,
        tmp_path / "snp",
        train_samples=samples[:6],
        variants=variants,
        samples=samples,
        memory_bytes=40,  # forces slabs of 2 variants decoded one at a time
    )
    direct = fileset.read(variants, samples)
    on_disk = np.load(tmp_path / "snp" / GENOTYPES_FILE)
    assert on_disk.dtype == np.int8 and on_disk.shape == (9, 8)
    np.testing.assert_array_equal(on_disk, np.where(np.isnan(direct), -1, direct).astype(np.int8))
    np.testing.assert_array_equal(matrix.iid, fileset.fam["IID"].to_numpy()[samples])
    np.testing.assert_array_equal(matrix.variant_ids, fileset.bim["ID"].to_numpy()[variants])
    reopened = SnpMatrix(tmp_path / "snp")
    np.testing.assert_array_equal(reopened.rows([3, 0]), matrix.rows([3, 0]))


def test_rows_reads_only_requested_rows(tmp_path):
    rng = np.random.default_rng(2)
    g = rng.binomial(2, 0.3, size=(2000, 400)).astype(np.float32)
    write_plink(tmp_path / "big", g)
    matrix = SnpMatrix.build(PlinkFileset(tmp_path / "big"), tmp_path / "snp", train_samples=np.arange(1500))
    assert isinstance(matrix.codes, np.memmap) and matrix.codes.dtype == np.int8
    assert (tmp_path / "snp" / GENOTYPES_FILE).stat().st_size < 2000 * 400 + 1024  # 1 byte per genotype
    tracemalloc.start()
    rows = matrix.rows([1999, 7, 1000])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows.shape == (3, 400)
    full_float32 = 2000 * 400 * 4
    assert peak < 0.02 * full_float32  # a few rows' worth, not the 3.2 MB matrix
    np.testing.assert_array_equal(rows, g[[1999, 7, 1000]])
    tracemalloc.start()  # the measurement does see a full decode
    matrix.rows(slice(None))
    _, peak_all = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_all > full_float32


def test_pickle_keeps_path_not_data(toy, tmp_path):
    fileset, _ = toy
    matrix = SnpMatrix.build(fileset, tmp_path / "snp", train_samples=np.arange(30))
    matrix.rows([0])  # open the memory map
    assert matrix.__getstate__()["_codes"] is None  # workers reopen the map; the data is not copied
    clone = pickle.loads(pickle.dumps(matrix))
    np.testing.assert_array_equal(clone.rows([5, 1]), matrix.rows([5, 1]))


def test_saved_statistics_embed_a_new_cohort(toy, tmp_path):
    fileset, g = toy
    train = np.arange(30)
    trained = SnpMatrix.build(
        fileset, tmp_path / "train", train_samples=train, variants=[4, 2, 9], standardize=True
    )
    stats = SnpStats.load(tmp_path / "train" / "stats.npz")
    for field in ("variant_id", "alt", "ref", "fill", "mean", "std", "n_obs"):
        np.testing.assert_array_equal(getattr(stats, field), getattr(trained.stats, field))
    assert (stats.fill_rule, stats.standardize, stats.n_train) == ("mean", True, 30)

    # a new cohort: other people, other variant order in the .bim
    new = g[:, ::-1][5:15]
    bim = fileset.bim.iloc[::-1].reset_index(drop=True)
    fam = fileset.fam.iloc[5:15].reset_index(drop=True)
    fam["IID"] = [f"new{i}" for i in range(10)]
    fam["FID"] = fam["IID"]
    write_plink(tmp_path / "new", new, bim=bim, fam=fam)
    cohort = SnpMatrix.build(PlinkFileset(tmp_path / "new"), tmp_path / "emb", stats=stats)
    np.testing.assert_array_equal(cohort.variant_ids, trained.variant_ids)
    np.testing.assert_allclose(cohort.rows(np.arange(10)), trained.rows(np.arange(5, 15)), rtol=1e-6)

    flipped = bim.copy()
    flipped[["ALT", "REF"]] = flipped[["REF", "ALT"]].to_numpy()
    write_plink(tmp_path / "flip", new, bim=flipped, fam=fam)
    with pytest.raises(GeneticsError, match="ALT/REF"):
        SnpMatrix.build(PlinkFileset(tmp_path / "flip"), tmp_path / "emb2", stats=stats)
    with pytest.raises(ValueError, match="omit variants"):
        SnpMatrix.build(fileset, tmp_path / "emb3", stats=stats, train_samples=train)


def test_variant_selection_by_id_and_intersection(toy, tmp_path):
    fileset, _ = toy
    ids = list(fileset.bim["ID"].iloc[[5, 1, 11]])
    by_id = SnpMatrix.build(fileset, tmp_path / "a", train_samples=np.arange(30), variant_ids=ids)
    assert list(by_id.variant_ids) == ids
    both = SnpMatrix.build(
        fileset, tmp_path / "b", train_samples=np.arange(30), variant_ids=ids, variants=[11, 0, 1, 2]
    )
    assert list(both.variant_ids) == list(fileset.bim["ID"].iloc[[11, 1]])
    with pytest.raises(GeneticsError, match="not in"):
        SnpMatrix.build(fileset, tmp_path / "c", train_samples=np.arange(30), variant_ids=["rs_nope"])


def test_input_errors(toy, tmp_path):
    fileset, _ = toy
    with pytest.raises(ValueError, match="train_samples is required"):
        SnpMatrix.build(fileset, tmp_path / "x")
    with pytest.raises(SampleMismatchError, match="subset"):
        SnpMatrix.build(fileset, tmp_path / "x", train_samples=[0, 1, 39], samples=np.arange(10))
    with pytest.raises(ValueError, match="fill rule"):
        SnpMatrix.build(fileset, tmp_path / "x", train_samples=[0], fill="median")
    with pytest.raises(GeneticsError, match="duplicates"):
        SnpMatrix.build(fileset, tmp_path / "x", train_samples=[0], variants=[1, 1])
    with pytest.raises(GeneticsError, match="incomplete|not a complete"):
        SnpMatrix(tmp_path / "x")


def test_variant_without_training_calls_is_named(tmp_path):
    g = np.array([[0, np.nan], [1, np.nan], [2, 1]], dtype=np.float32)
    write_plink(tmp_path / "hole", g)
    fs = PlinkFileset(tmp_path / "hole")
    with pytest.raises(GeneticsError, match=r"'1:2' has no called genotype"):
        SnpMatrix.build(fs, tmp_path / "snp", train_samples=[0, 1])


def test_index_of_and_samples_file(toy, tmp_path):
    fileset, _ = toy
    matrix = SnpMatrix.build(fileset, tmp_path / "snp", train_samples=[0, 1, 2], samples=[3, 1, 2, 0])
    np.testing.assert_array_equal(matrix.index_of(["s0", "s9", "s3"]), [3, -1, 0])
    samples = pd.read_csv(tmp_path / "snp" / SAMPLES_FILE, sep="\t", dtype=str)
    assert list(samples.columns) == ["FID", "IID"] and list(samples["IID"]) == ["s3", "s1", "s2", "s0"]
    with pytest.raises(IndexError):
        matrix.rows([-1])
