"""Per-person genetic record: IID lookup, zero-filled absent modalities, mask, NaN handling, collation."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from genetics.errors import SampleMismatchError
from genetics.plink import PlinkFileset, write_plink
from genetics.record import (
    MASK_KEY,
    MODALITIES,
    GeneticRecord,
    GeneticRecordDataset,
    RecordError,
    ScoreTable,
    collate_genetic,
)
from genetics.snp_modality import SnpMatrix


@pytest.fixture
def snp(tmp_path) -> SnpMatrix:
    """SNP matrix of s0..s5 (s5 is all-missing on variant 1: filled, still present)."""
    g = np.array(
        [[0, 1, 2], [1, 1, 0], [2, 0, 1], [0, 2, 2], [1, 0, 0], [np.nan, np.nan, 1]],
        dtype=np.float32,
    )
    write_plink(tmp_path / "g", g)
    return SnpMatrix.build(PlinkFileset(tmp_path / "g"), tmp_path / "snp", train_samples=np.arange(5))


@pytest.fixture
def pgs() -> pd.DataFrame:
    return pd.DataFrame({"FID": ["s1", "s3", "x9"], "IID": ["s1", "s3", "x9"], "PGS1": [0.5, -1.0, 2.0],
                         "PGS2": [1, 2, 3]})  # fmt: skip


@pytest.fixture
def burden() -> pl.DataFrame:
    return pl.DataFrame({"IID": ["s0", "s3", "s5"], "GENE_A": [0.0, 1.0, 0.0], "GENE_B": [2.0, 0.0, 0.5],
                         "GENE_C": [False, True, False]})  # fmt: skip


def test_batch_shapes_mask_and_zero_fill(snp, pgs, burden):
    record = GeneticRecord(snp=snp, pgs=pgs, burden=burden)
    assert record.modalities == MODALITIES
    assert record.num_features == {"snp": 3, "pgs": 2, "burden": 3}
    iids = ["s3", "s1", "nobody", "s5", "x9"]
    out = record.batch(iids)
    assert set(out) == {"snp", "pgs", "burden", MASK_KEY}
    for name, width in record.num_features.items():
        assert out[name].dtype == torch.float32 and out[name].shape == (5, width)
        assert torch.isfinite(out[name]).all()
    assert out[MASK_KEY].dtype == torch.bool
    expected_mask = [
        [True, True, True],
        [True, True, False],
        [False, False, False],
        [True, False, True],
        [False, True, False],
    ]
    assert out[MASK_KEY].tolist() == expected_mask
    for j, name in enumerate(record.modalities):
        absent = ~out[MASK_KEY][:, j]
        assert torch.count_nonzero(out[name][absent]) == 0  # absent → exact zeros
    torch.testing.assert_close(out["snp"][0], torch.from_numpy(snp.rows([3])[0]))
    assert out["pgs"][0].tolist() == [-1.0, 2.0] and out["pgs"][4].tolist() == [2.0, 3.0]
    assert out["burden"][0].tolist() == [1.0, 0.0, 1.0]
    assert out["burden"][3].tolist() == [0.0, 0.5, 0.0]


def test_snp_row_of_a_present_person_with_missing_calls_is_filled_not_absent(snp):
    out = GeneticRecord(snp=snp).batch(["s5"])
    assert out[MASK_KEY].tolist() == [[True]]
    np.testing.assert_allclose(out["snp"][0, :2].numpy(), snp.stats.mean[:2])


def test_subset_of_modalities_keeps_canonical_order(burden, snp):
    record = GeneticRecord(burden=burden, snp=snp)
    assert record.modalities == ("snp", "burden")
    assert record.batch(["s0"])[MASK_KEY].shape == (1, 2)
    with pytest.raises(ValueError, match="at least one modality"):
        GeneticRecord()


@pytest.mark.parametrize("kind", ["pandas", "polars"])
def test_nan_for_a_present_person_names_modality_iid_and_column(kind):
    frame = pd.DataFrame({"IID": ["a", "b"], "PGS1": [0.1, 0.2], "PGS2": [0.3, np.nan]})
    if kind == "polars":
        frame = pl.from_pandas(frame, nan_to_null=True)
    with pytest.raises(RecordError, match=r"pgs table: IID 'b', column 'PGS2' is nan"):
        GeneticRecord(pgs=frame)


def test_non_finite_non_numeric_and_duplicates_are_errors():
    with pytest.raises(RecordError, match=r"burden table: IID 'a', column 'G' is inf"):
        GeneticRecord(burden=pd.DataFrame({"IID": ["a"], "G": [np.inf]}))
    with pytest.raises(RecordError, match=r"IID 'a', column 'G' is inf"):  # float32 overflow
        GeneticRecord(burden=pd.DataFrame({"IID": ["a"], "G": [1e300]}))
    with pytest.raises(RecordError, match="column 'label' is not numeric"):
        GeneticRecord(pgs=pd.DataFrame({"IID": ["a"], "label": ["x"]}))
    with pytest.raises(RecordError, match="column 'P' is nan"):  # pd.NA
        GeneticRecord(pgs=pd.DataFrame({"IID": ["a"], "P": pd.array([None], dtype="Float64")}))
    with pytest.raises(SampleMismatchError, match="IID 'a' appears on several rows"):
        GeneticRecord(pgs=pd.DataFrame({"IID": ["a", "a"], "P": [1.0, 2.0]}))
    with pytest.raises(RecordError, match="no IID column"):
        GeneticRecord(pgs=pd.DataFrame({"ID": ["a"], "P": [1.0]}))
    with pytest.raises(RecordError, match="no score columns"):
        GeneticRecord(pgs=pd.DataFrame({"IID": ["a"]}))


def test_sparse_score_table():
    values = sp.csr_matrix(np.array([[0, 1.5, 0], [0, 0, 0], [2, 0, 0]], dtype=np.float32))
    table = ScoreTable("burden", np.array(["a", "b", "c"]), ("G1", "G2", "G3"), values)
    out = GeneticRecord(burden=table).batch(["c", "zz", "a"])
    assert out["burden"].tolist() == [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.5, 0.0]]
    bad = sp.csr_matrix(np.array([[0, np.nan]], dtype=np.float32))
    with pytest.raises(RecordError, match="IID 'a', column 'G2'"):
        ScoreTable("burden", np.array(["a"]), ("G1", "G2"), bad)


def test_items_collate_to_the_batch(snp, pgs, burden):
    record = GeneticRecord(snp=snp, pgs=pgs, burden=burden)
    iids = ["s0", "nobody", "s3", "x9"]
    item = record.item("nobody")
    assert item["snp"].shape == (3,) and item[MASK_KEY].tolist() == [False, False, False]
    collated = collate_genetic([record.item(i) for i in iids])
    batch = record.batch(iids)
    assert collated.keys() == batch.keys()
    for key in batch:
        assert torch.equal(collated[key], batch[key])
    with pytest.raises(ValueError, match="keys"):
        collate_genetic([record.item("s0"), {"snp": item["snp"]}])


def test_dataloader_with_workers_and_pickling(snp, pgs):
    record = GeneticRecord(snp=snp, pgs=pgs)
    iids = ["s0", "s1", "s2", "s3", "zz"]
    dataset = GeneticRecordDataset(record, iids)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_genetic, num_workers=1)
    batches = list(loader)
    assert [b[MASK_KEY].shape[0] for b in batches] == [2, 2, 1]
    stacked = torch.cat([b["snp"] for b in batches])
    assert torch.equal(stacked, record.batch(iids)["snp"])
    clone = pickle.loads(pickle.dumps(record))
    assert torch.equal(clone.batch(iids)["pgs"], record.batch(iids)["pgs"])


def test_availability_report_and_device(snp, pgs):
    record = GeneticRecord(snp=snp, pgs=pgs)
    report = record.availability(["s1", "x9", "q"])
    assert list(report.columns) == ["IID", "snp", "pgs"]
    assert report[["snp", "pgs"]].to_numpy().tolist() == [[True, True], [False, True], [False, False]]
    out = record.batch(["s1"], device="cpu")
    assert out["pgs"].device.type == "cpu"
