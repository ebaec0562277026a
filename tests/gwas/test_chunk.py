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
