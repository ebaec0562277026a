"""gwas.chunk: decode block sizes, and statistics that do not depend on them."""

from __future__ import annotations

import numpy as np

from genetics.plink import PlinkFileset, write_plink
from gwas import chunk
from gwas.runner import GwasConfig, prepare


def test_decode_blocks_fit_the_cache_for_few_phenotypes_and_bound_the_statistics_for_many():
    per_variant = 8 * chunk.padded_samples(10_000)
    cached = chunk.decode_block_size(10_000, 2048, 16)
    assert cached % 8 == 0 and 64 <= cached and cached * per_variant <= chunk.DECODE_CACHE_BYTES
    assert chunk.decode_block_size(10_000, 2048, chunk.CACHE_BLOCKS_MAX_PHENOTYPES + 1) == 2048
    assert chunk.decode_block_size(10_000, 2048, 256) == chunk.STATISTICS_VALUES // 256  # 1024 rows
    assert chunk.decode_block_size(10_000, 2048) == 2048  # device products: the memory budget only
    assert chunk.decode_block_size(10_000, 50, 16) == 50  # never more than the chunk
    assert chunk.decode_block_size(500_000, 2048, 16) == 64  # a floor for huge N
    assert chunk.decode_block_size(500_000, 2048, 256) == 128  # the memory budget at biobank N


def test_cache_blocks_give_the_statistics_of_whole_chunk_blocks(tmp_path, monkeypatch):
    """Products of 8-variant blocks joined into one statistics call equal one whole-chunk block, with
    missing calls spread over every block (their coordinates are shifted per block)."""
    rng = np.random.default_rng(11)
    n, m = 300, 70
    dosage = rng.binomial(2, 0.3, (n, m)).astype(np.float64)
    dosage[rng.random((n, m)) < 0.05] = np.nan
    write_plink(tmp_path / "g", dosage)
    fileset = PlinkFileset(tmp_path / "g")
    pheno = fileset.fam[["FID", "IID"]].assign(a=rng.normal(size=n), b=rng.normal(size=n))
    covar = fileset.fam[["FID", "IID"]].assign(c=rng.normal(size=n))
    prepared = prepare(fileset, pheno, covar, GwasConfig())
    index = np.arange(3, 70, 1)
    whole = chunk.compute_chunk(prepared, index, "drop", block_size=index.size)
    blocked = chunk.compute_chunk(prepared, index, "drop", block_size=8)
    np.testing.assert_array_equal(blocked.obs_ct, whole.obs_ct)
    np.testing.assert_array_equal(blocked.errcode, whole.errcode)
    for name in ("beta", "se", "log10_p"):
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=1e-12)


def test_chunk_stats_keep_the_kernel_s_statistics_through_the_journal(tmp_path):
    """Per-group fields are stored once per group and T_STAT is derived, yet every row read back from the
    journal equals the kernel's value bit for bit, for phenotypes missing in different samples."""
    rng = np.random.default_rng(5)
    n, m = 200, 40
    dosage = rng.binomial(2, 0.3, (n, m)).astype(np.float64)
    dosage[rng.random((n, m)) < 0.05] = np.nan
    dosage[:, 7] = 1.0  # a constant variant: NaN statistics with an ERRCODE
    write_plink(tmp_path / "g", dosage)
    fileset = PlinkFileset(tmp_path / "g")
    b = rng.normal(size=n)
    b[:30] = np.nan  # a second missingness group
    pheno = fileset.fam[["FID", "IID"]].assign(a=rng.normal(size=n), b=b, c=rng.normal(size=n))
    prepared = prepare(fileset, pheno, None, GwasConfig())
    assert len(prepared.groups) == 2
    index = np.arange(m)
    stats = chunk.compute_chunk(prepared, index, "drop")
    stats.save(tmp_path / "journal.npy")
    loaded = chunk.ChunkStats.load(tmp_path / "journal.npy")
    results = chunk._block_results(prepared, index, "drop", None, None, m)
    for group, result in zip(prepared.groups, results, strict=True):
        rows = group.phenotypes
        for name in ("beta", "se", "t_stat", "p", "log10_p"):
            np.testing.assert_array_equal(getattr(loaded, name)[rows], getattr(result, name).T, err_msg=name)
        for name in ("a1_freq", "obs_ct"):
            np.testing.assert_array_equal(
                loaded.per_phenotype(name)[rows], np.tile(getattr(result, name), (len(rows), 1))
            )
        codes = np.asarray(chunk.ERRCODES)[loaded.per_phenotype("errcode")[rows]]
        np.testing.assert_array_equal(codes, np.tile(result.errcode.astype(str), (len(rows), 1)))
    assert np.isnan(loaded.t_stat[:, 7]).all()
    table = chunk.chunk_table(prepared, index, loaded).to_pandas()  # phenotype-major rows
    assert len(table) == 3 * m
    np.testing.assert_array_equal(table["T_STAT"].to_numpy(), stats.t_stat.ravel())
    np.testing.assert_array_equal(table["OBS_CT"].to_numpy(), stats.per_phenotype("obs_ct").ravel())
    assert (table.loc[table["ID"] == table["ID"].iloc[7], "ERRCODE"] != ".").all()
