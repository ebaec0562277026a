"""Image-folder datasets: flat (3D and 2D), MSD, synthetic biobank, modalities, labels and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from nibabel.testing import data_path

from imaging.datasets import open_image_folder
from imaging.errors import ImagingError
from imaging.io import write_nifti, write_png
from imaging.volumes import load_volume


@pytest.fixture(scope="module")
def biobank(tmp_path_factory) -> Path:
    from contig.biobank import BiobankConfig, simulate_biobank

    out = tmp_path_factory.mktemp("biobank")
    simulate_biobank(out, BiobankConfig(n_individuals=30, image_kind="mri3d", image_size=16, progress=False))
    return out


def _volume(seed: int, shape=(6, 6, 6)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(50, 10, size=shape).astype(np.float32)


def test_flat_3d_with_labels(tmp_path):
    for index in range(3):
        write_nifti(tmp_path / f"case{index}.nii.gz", _volume(index))
        label = (np.arange(216).reshape(6, 6, 6) % (index + 2)).astype(np.uint8)
        write_nifti(tmp_path / "labels" / f"case{index}.nii.gz", label)
    dataset = open_image_folder(tmp_path, size=(8, 4, 4), with_labels=True)
    assert dataset.layout == "flat" and dataset.ids == ["case0", "case1", "case2"]
    assert dataset.modalities == ["image"]
    image, label = dataset[2]
    assert image.shape == (1, 8, 4, 4) and image.dtype == torch.float32
    assert label.shape == (8, 4, 4) and label.dtype == torch.int64
    expected = load_volume(tmp_path / "labels" / "case2.nii.gz", size=(8, 4, 4), is_label=True)
    np.testing.assert_array_equal(label.numpy(), expected)
    assert set(label.unique().tolist()) <= {0, 1, 2, 3}
    unlabelled = open_image_folder(tmp_path, size=(8, 4, 4))
    assert isinstance(unlabelled[0], torch.Tensor)
    subset = dataset.subset([2, 0])
    assert subset.ids == ["case2", "case0"] and torch.equal(subset[0][0], image)


def test_flat_modalities_become_channels(tmp_path):
    for key in ("a", "b"):
        for offset, modality in enumerate(("t1", "t2")):
            write_nifti(tmp_path / f"{key}_{modality}.nii", _volume(offset) * (offset + 1))
    dataset = open_image_folder(tmp_path, modalities=["t1", "t2"], size=(6, 6, 6), normalize="none")
    assert dataset.ids == ["a", "b"] and dataset.modalities == ["t1", "t2"]
    image = dataset[0]
    assert image.shape == (2, 6, 6, 6)
    np.testing.assert_allclose(image[1].numpy(), 2 * _volume(1), rtol=1e-6)
    (tmp_path / "b_t2.nii").unlink()
    with pytest.raises(ImagingError, match="lack some of the modalities"):
        open_image_folder(tmp_path, modalities=["t1", "t2"])


def test_flat_2d(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(2):
        write_png(tmp_path / f"img{index}.png", rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8))
        write_png(
            tmp_path / "labels" / f"img{index}.png",
            np.kron(np.eye(2, 3, dtype=np.uint8), np.ones((5, 4), np.uint8)),
        )
    (tmp_path / "labels.csv").write_text("id,grade\nimg0,2\nimg1,0\n")
    dataset = open_image_folder(tmp_path, dim=2, size=(20, 24), with_labels=True)
    image, label = dataset[0]
    assert image.shape == (3, 20, 24) and label.shape == (20, 24)
    assert dataset.modalities == ["channel0", "channel1", "channel2"]
    assert dataset.table["grade"].tolist() == [2, 0]
    assert set(label.unique().tolist()) == {0, 1}  # nearest: no interpolated class values
    for channel in image:
        assert abs(float(channel.mean())) < 1e-4 and abs(float(channel.std(unbiased=False)) - 1) < 1e-3
    assert open_image_folder(tmp_path, dim=2, size=(32, 32, 32))[1].shape == (3, 32, 32)


def test_msd_layout(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    training = []
    for index in range(2):
        name = f"BRATS_{index:03d}.nii.gz"
        write_nifti(tmp_path / "imagesTr" / name, np.stack([_volume(index), -_volume(index) + 200]))
        write_nifti(tmp_path / "labelsTr" / name, (_volume(index) > 50).astype(np.uint8))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (tmp_path / "imagesTr" / "._BRATS_000.nii.gz").write_bytes(b"resource fork")  # macOS debris is skipped
    meta = {
        "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "tumour"},
        "training": training,
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    dataset = open_image_folder(tmp_path, size=(4, 4, 4), with_labels=True)
    assert dataset.layout == "msd" and dataset.ids == ["BRATS_000", "BRATS_001"]
    assert dataset.modalities == ["FLAIR", "T1w"] and dataset.class_names == ["background", "tumour"]
    image, label = dataset[1]
    assert image.shape == (2, 4, 4, 4) and label.shape == (4, 4, 4)
    only_t1 = open_image_folder(tmp_path, modalities=["t1w"], size=(4, 4, 4))
    torch.testing.assert_close(only_t1[1][0], image[1])
    with pytest.raises(ImagingError, match="available: FLAIR, T1w"):
        open_image_folder(tmp_path, modalities=["T2"])


@pytest.mark.filterwarnings("ignore:LD from")
def test_biobank_layout(biobank):
    dataset = open_image_folder(biobank, size=(16, 16, 16), with_labels=True)
    assert dataset.layout == "biobank" and len(dataset) == 30
    assert dataset.modalities == ["t1", "t2", "flair"]
    assert dataset.ids[0] == "P000001"
    assert {"grade", "enlarged_ventricles", "split"} <= set(dataset.table.columns)
    image, label = dataset[0]
    assert image.shape == (3, 16, 16, 16) and label.shape == (16, 16, 16)
    assert int(label.max()) <= len(dataset.class_names) - 1 and int(label.max()) >= 3
    single = open_image_folder(biobank, modalities=["flair"], size=(16, 16, 16))
    torch.testing.assert_close(single[0][0], image[2])
    with pytest.raises(ImagingError, match="use dim=3"):
        open_image_folder(biobank, dim=2)


def test_real_nifti_folder(tmp_path):
    for name in ("anatomical.nii", "standard.nii.gz"):
        shutil.copy(Path(data_path) / name, tmp_path / name)
    dataset = open_image_folder(tmp_path, target_spacing=(2.0, 2.0, 2.0), size=(16, 16, 16))
    assert dataset.ids == ["anatomical", "standard"]
    for index in range(2):
        image = dataset[index]
        assert image.shape == (1, 16, 16, 16) and torch.isfinite(image).all() and image.abs().sum() > 0


def test_bad_folders(tmp_path):
    with pytest.raises(ImagingError, match="does not exist"):
        open_image_folder(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ImagingError, match="no .nii.gz or .nii images"):
        open_image_folder(tmp_path)
    write_nifti(tmp_path / "good.nii.gz", _volume(0))
    (tmp_path / "zcorrupt.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    with pytest.raises(ImagingError, match="1 of 2 files cannot be used: .*zcorrupt.nii.gz"):
        open_image_folder(tmp_path, size=(6, 6, 6))  # found when the folder is opened, not in training
    (tmp_path / "zcorrupt.nii.gz").unlink()
    assert open_image_folder(tmp_path, size=(6, 6, 6))[0].shape == (1, 6, 6, 6)
    (tmp_path / "acorrupt.nii").write_bytes(b"\x00" * 20)  # the first file is probed for its channels
    with pytest.raises(ImagingError, match="acorrupt.nii"):
        open_image_folder(tmp_path)
    (tmp_path / "acorrupt.nii").unlink()
    with pytest.raises(ImagingError, match="no label file"):
        open_image_folder(tmp_path, with_labels=True)


@pytest.mark.parametrize("size", [None, (16, 16)])
def test_a_label_of_another_shape_is_an_error_even_when_resizing_would_hide_it(tmp_path, size):
    from imaging.datasets import ImageFolderDataset, ImageRecord
    from imaging.errors import ImageFormatError
    from imaging.io import write_png

    write_png(tmp_path / "a.png", np.zeros((32, 32), np.uint8))
    write_png(tmp_path / "a_label.png", np.zeros((30, 32), np.uint8))
    record = ImageRecord("a", (tmp_path / "a.png",), tmp_path / "a_label.png")
    with pytest.raises(ImageFormatError, match=r"label shape \(30, 32\) differs from its image's \(32, 32\)"):
        ImageFolderDataset([record], dim=2, modalities=["x"], size=size, with_labels=True)
