"""The same GWAS through a Dask LocalCluster and through torch (CPU, and CUDA when present) gives the
single-process numpy results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gwas.pipeline import ClumpConfig, run_gwas
from gwas.runner import GwasConfig
from tests.conftest import simulate_gwas_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return simulate_gwas_data(tmp_path_factory.mktemp("scale_out"), n=240, m=180, n_pheno=3)


def _run(data, out, **options):
    return run_gwas(
        data["prefix"], data["pheno"], out, data["covar"],
        GwasConfig(progress=False, chunk_size=40, **options), clump=ClumpConfig(enabled=False), plots=False,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["drop", "mean"])
def test_statistics_do_not_depend_on_the_decode_block(data, mode):
    """A chunk decoded 8 variants at a time (how biobank-size N bounds memory) gives what decoding it whole
    gives: every statistic is a function of its own variant only (to the last bit for counts and codes;
    to BLAS rounding for the rest, which may round a row differently in a block of another size)."""
    from dataclasses import fields

    from genetics.plink import PlinkFileset
    from gwas.chunk import compute_chunk
    from gwas.runner import prepare

    prepared = prepare(PlinkFileset(data["prefix"]), data["pheno"], data["covar"], GwasConfig())
    index = np.arange(0, 180, 2)  # not contiguous either
    whole = compute_chunk(prepared, index, mode, block_size=index.size)
    blocked = compute_chunk(prepared, index, mode, block_size=8)
    assert len(prepared.groups) > 1  # phenotypes with different missing samples: several groups
    for name in ("a1_freq", "obs_ct", "errcode"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name))
    for field in fields(whole):
        np.testing.assert_allclose(getattr(blocked, field.name), getattr(whole, field.name), rtol=1e-12)


def test_parallel_chunk_workers_give_identical_output(data, tmp_path):
    """Chunks computed on 3 threads (finishing out of order) are assembled in variant order, byte for byte."""
    single = _run(data, tmp_path / "one", threads=1)
    parallel = _run(data, tmp_path / "three", threads=3)
    assert parallel.run.sumstats.read_bytes() == single.run.sumstats.read_bytes()
    np.testing.assert_array_equal(np.asarray(parallel.run.log10_p), np.asarray(single.run.log10_p))


def test_workers_are_capped_by_memory_with_a_warning(data, tmp_path, monkeypatch):
    import gwas.runner

    single = _run(data, tmp_path / "one", threads=1)
    # room for two workers' decode buffers (40 variants x 240 samples x 8 bytes each, plus statistics)
    monkeypatch.setattr(gwas.runner, "memory_limit_bytes", lambda: 4 * 8 * 40 * (240 + 16 * 3))
    with pytest.warns(UserWarning, match="running 2 so they fit"):
        capped = _run(data, tmp_path / "capped", threads=8)
    assert capped.run.sumstats.read_bytes() == single.run.sumstats.read_bytes()


def test_dask_local_cluster_gives_identical_output(data, tmp_path):
    distributed = pytest.importorskip("distributed")
    single = _run(data, tmp_path / "single")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        spread = _run(data, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert spread.run.sumstats.read_bytes() == single.run.sumstats.read_bytes()
    pd.testing.assert_frame_equal(spread.summary, single.summary)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("mode", ["drop", "mean"])
def test_device_products_from_raw_bytes_match_numpy(data, device, mode):
    """The device path ships raw .bed bytes, decodes them with torch and forms the products there; its
    statistics equal the numpy path's (torch on the CPU always, CUDA when this machine has one)."""
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    from dataclasses import fields

    from genetics.plink import PlinkFileset
    from gwas.chunk import compute_chunk
    from gwas.runner import prepare

    prepared = prepare(PlinkFileset(data["prefix"]), data["pheno"], data["covar"], GwasConfig())
    index = np.arange(3, 170)
    reference = compute_chunk(prepared, index, mode)
    on_device = compute_chunk(prepared, index, mode, device=prepared.products_on(device), block_size=64)
    assert np.isnan(reference.beta).any() and (reference.obs_ct < 240).any()  # missing calls and errors
    for field in fields(reference):
        np.testing.assert_allclose(getattr(on_device, field.name), getattr(reference, field.name), rtol=1e-10)
    assert prepared.products_on(device) is prepared.products_on(device)  # made once per run


def test_runner_device_path_end_to_end(data, tmp_path, monkeypatch):
    """The whole runner on the device path (torch on the CPU standing in for CUDA): no CPU decode buffers,
    products from raw bytes, the same statistics in the final files."""
    pytest.importorskip("torch")
    import gwas.runner

    reference = _run(data, tmp_path / "numpy", threads=2)
    monkeypatch.setattr(gwas.runner, "product_device", lambda device: "cpu")
    on_device = _run(data, tmp_path / "torch", threads=2)
    ours, theirs = (pd.read_parquet(r.run.sumstats) for r in (on_device, reference))
    pd.testing.assert_frame_equal(ours.drop(columns=["BETA", "SE", "T_STAT", "P", "LOG10_P"]),
                                  theirs.drop(columns=["BETA", "SE", "T_STAT", "P", "LOG10_P"]))  # fmt: skip
    for column in ("BETA", "SE", "T_STAT", "P", "LOG10_P"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-10)


def test_small_decode_budget_with_a_short_last_chunk(data, tmp_path, monkeypatch):
    """Blocks of 8 (a budget for 13 variants) and a last chunk of 12: the run's buffers must hold every
    block, including the last chunk's, and the statistics equal decoding whole chunks."""
    import gwas.chunk

    variants = np.arange(172)  # chunks of 40: the last has 12 variants
    reference = run_gwas(
        data["prefix"], data["pheno"], tmp_path / "whole", data["covar"],
        GwasConfig(progress=False, chunk_size=40, threads=2), variants=variants,
        clump=ClumpConfig(enabled=False), plots=False,
    )  # fmt: skip
    monkeypatch.setattr(gwas.chunk, "DECODE_BUDGET_BYTES", 13 * 8 * 240)
    assert gwas.chunk.decode_block_size(240, 40) == 8 and gwas.chunk.decode_block_size(240, 12) == 8
    blocked = run_gwas(
        data["prefix"], data["pheno"], tmp_path / "blocked", data["covar"],
        GwasConfig(progress=False, chunk_size=40, threads=2), variants=variants,
        clump=ClumpConfig(enabled=False), plots=False,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(blocked.run.log10_p), np.asarray(reference.run.log10_p), rtol=1e-12)


def test_a_journal_from_another_product_device_is_not_reused(data):
    """Devices round the products differently in the last bit, so resuming on another one starts over."""
    from genetics.plink import PlinkFileset
    from gwas.runner import _fingerprint, prepare

    fileset = PlinkFileset(data["prefix"])
    prepared = prepare(fileset, data["pheno"], data["covar"], GwasConfig())
    cpu = _fingerprint(fileset, prepared, GwasConfig(), None)
    assert cpu == _fingerprint(fileset, prepared, GwasConfig(threads=7), None)  # workers do not matter
    assert cpu != _fingerprint(fileset, prepared, GwasConfig(), "cuda")
