"""The multimodal dataset and collate: images grouped by person, availability from the genetic record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from contig.dataset import ManifestError, MultimodalCollate, MultimodalDataset, group_people, read_manifest
from contig.genetic_inputs import GeneticInputsConfig, build_genetic_inputs, open_genetic_record
from genetics.record import GeneticRecord
from imaging.errors import ImagingError


def test_group_people_keeps_first_seen_order():
    iids, person = group_people(["b", "a", "b", "c", "a"])
    assert list(iids) == ["b", "a", "c"]
    assert person.tolist() == [0, 1, 0, 2, 1]


def test_collate_shares_one_genetic_row_per_person_and_marks_absent_modalities():
    pgs = pd.DataFrame({"IID": ["a", "b"], "S1": [1.0, 2.0], "S2": [3.0, 4.0]})
    burden = pd.DataFrame({"IID": ["b"], "G1": [5.0]})
    collate = MultimodalCollate(GeneticRecord(pgs=pgs, burden=burden))
    items = [{"image": torch.full((3, 4, 4), float(i)), "iid": iid} for i, iid in enumerate("abza")]
    batch = collate(items)
    assert batch["images"].shape == (4, 3, 4, 4)
    assert batch["iids"] == ["a", "b", "z"]
    assert batch["person"].tolist() == [0, 1, 2, 0]  # a's two images point at one row
    assert batch["genetics"]["pgs"].tolist() == [[1.0, 3.0], [2.0, 4.0], [0.0, 0.0]]
    assert batch["available"]["pgs"].tolist() == [True, True, False]
    assert batch["available"]["burden"].tolist() == [False, True, False]


def test_dataset_reads_the_biobank_images(tiny_biobank):
    manifest = read_manifest(tiny_biobank / "manifest.parquet")
    dataset = MultimodalDataset(manifest)
    item = dataset[0]
    assert item["iid"] == manifest["IID"].iloc[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0


def test_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    pd.DataFrame({"IID": ["p1"], "image": ["broken.png"]}).to_csv(tmp_path / "m.csv", index=False)
    dataset = MultimodalDataset(read_manifest(tmp_path / "m.csv"))
    with pytest.raises(ImagingError, match="broken.png"):
        dataset[0]


def test_manifest_without_image_column_is_a_clear_error(tmp_path):
    pd.DataFrame({"IID": ["p1"], "path": ["x.png"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ManifestError, match="no column"):
        read_manifest(tmp_path / "m.csv")


def test_genetic_inputs_use_training_statistics_and_leave_missing_people_absent(tiny_biobank, tmp_path):
    splits = pd.read_csv(tiny_biobank / "downstream" / "splits.tsv", sep="\t", dtype=str)
    train = splits.loc[splits["split"] == "train", "IID"]
    config = GeneticInputsConfig(burden_aaf_bins=(0.05,))  # a singleton in 60 people has AAF > 1%
    summary = build_genetic_inputs(tiny_biobank, tmp_path / "inputs", train, config)
    record = open_genetic_record(tmp_path / "inputs")
    assert record.modalities == ("snp", "pgs", "burden")
    assert 0 < summary["snp"]["variants_used"] <= 2_000
    manifest = pd.read_parquet(tiny_biobank / "manifest.parquet").drop_duplicates("IID")
    table = record.availability(manifest["IID"])
    genotyped = manifest["genotyped"].to_numpy()
    assert (table["snp"].to_numpy() == genotyped).all() and (table["pgs"].to_numpy() == genotyped).all()
    assert (table["burden"].to_numpy() == (manifest["burden"].to_numpy() & genotyped)).all()
    assert (~genotyped).any() and (genotyped & ~manifest["burden"].to_numpy()).any()
    # PGS columns are z-scored with the training people's mean and SD.
    scores = pd.read_parquet(tmp_path / "inputs" / "pgs.parquet")
    train_rows = scores[scores["IID"].isin(set(train))].drop(columns="IID").to_numpy(np.float64)
    np.testing.assert_allclose(train_rows.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_rows.std(0), 1.0, atol=1e-4)


def test_genetic_inputs_of_other_settings_or_people_are_refused_not_reused(tiny_biobank, tmp_path):
    from genetics.errors import GeneticsError

    people = pd.read_csv(tiny_biobank / "genotypes.fam", sep=r"\s+", header=None, dtype=str)[1].tolist()
    config = GeneticInputsConfig(modalities=("snp", "pgs"), max_snps=50)
    first = build_genetic_inputs(tiny_biobank, tmp_path / "inputs", people[:40], config)
    assert build_genetic_inputs(tiny_biobank, tmp_path / "inputs", people[:40], config) == first
    with pytest.raises(GeneticsError, match="another config"):
        build_genetic_inputs(tiny_biobank, tmp_path / "inputs", people[:40], GeneticInputsConfig(max_snps=60))
    with pytest.raises(GeneticsError, match="another train_people"):
        build_genetic_inputs(tiny_biobank, tmp_path / "inputs", people[:30], config)


@pytest.mark.parametrize("content, message", [("", "lists nobody"), ("X1\nX2\n", "none of its 2 IIDs")])
def test_useless_burden_sample_lists_name_the_file(tiny_biobank, tmp_path, content, message):
    import shutil

    from genetics.errors import GeneticsError

    data = tmp_path / "data"
    shutil.copytree(tiny_biobank, data)
    (data / "burden" / "samples.txt").write_text(content)
    people = pd.read_csv(data / "genotypes.fam", sep=r"\s+", header=None, dtype=str)[1].tolist()
    config = GeneticInputsConfig(modalities=("burden",), burden_aaf_bins=(0.05,))
    with pytest.raises(GeneticsError, match=f"samples.txt: {message}"):
        build_genetic_inputs(data, tmp_path / "inputs", people[:40], config)
    assert not (tmp_path / "inputs" / "inputs.json").exists()


def test_16_bit_and_dicom_images_are_scaled_to_the_unit_range_like_8_bit_ones(tmp_path):
    """Used to divide by 255 whatever the depth: a 16-bit PNG reached 257."""
    from contig.dataset import load_image
    from imaging.io import write_png

    ramp = np.linspace(0, 65535, 16, dtype=np.uint16).reshape(4, 4)
    write_png(tmp_path / "deep.png", ramp)
    write_png(tmp_path / "flat.png", (ramp // 257).astype(np.uint8))
    deep, flat = load_image([str(tmp_path / "deep.png")]), load_image([str(tmp_path / "flat.png")])
    assert deep.shape == flat.shape == (1, 4, 4) and deep.max() == 1.0
    np.testing.assert_allclose(deep, flat, atol=1 / 255)
