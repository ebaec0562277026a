"""Image and volume IO: round trips, atomic writes, and a typed error for every kind of bad file."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import imaging.io as imaging_io
from imaging.errors import ImageFormatError, ImagingError
from imaging.io import Volume, read_image, read_volume, write_nifti, write_png

RNG = np.random.default_rng(0)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ------------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize(
    "array",
    [
        RNG.integers(0, 256, (9, 13), dtype=np.uint8),
        RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8),
        RNG.integers(0, 256, (9, 13, 4), dtype=np.uint8),
        RNG.integers(0, 256, (9, 13, 2), dtype=np.uint8),
        RNG.integers(0, 65536, (9, 13), dtype=np.uint16),
    ],
    ids=["grey8", "rgb", "rgba", "grey-alpha", "grey16"],
)
def test_png_round_trip(tmp_path, array):
    write_png(tmp_path / "x.png", array)
    back = read_image(tmp_path / "x.png")
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert _leftovers(tmp_path) == []


def test_png_bool_and_single_channel(tmp_path):
    mask = np.zeros((5, 6), dtype=bool)
    mask[2, 3] = True
    write_png(tmp_path / "m.png", mask)
    assert read_image(tmp_path / "m.png")[2, 3] == 255
    write_png(tmp_path / "c.png", np.full((5, 6, 1), 7, np.uint8))
    assert read_image(tmp_path / "c.png").shape == (5, 6)


def test_read_other_formats(tmp_path):
    rgb = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    jpeg = read_image(tmp_path / "x.jpg")
    assert jpeg.shape == (16, 16, 3) and jpeg.dtype == np.uint8
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")  # palette image → RGB
    assert read_image(tmp_path / "p.png").shape == (16, 16, 3)


def test_write_png_overwrites_atomically_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    write_png(target, np.zeros((4, 4), np.uint8))
    write_png(target, np.full((4, 4), 9, np.uint8))
    assert read_image(target)[0, 0] == 9

    def crash(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, np.full((4, 4), 200, np.uint8))
    monkeypatch.undo()
    assert read_image(target)[0, 0] == 9  # the previous complete file is untouched
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((4, 4, 3), np.uint16),
        np.zeros(4, np.uint8),
    ],
    ids=["float", "5-channels", "uint16-rgb", "1d"],
)
def test_write_png_rejects_unwritable_arrays(tmp_path, array):
    with pytest.raises(ImageFormatError, match="cannot write"):
        write_png(tmp_path / "x.png", array)
    assert not (tmp_path / "x.png").exists()


def test_bad_image_files(tmp_path):
    good = tmp_path / "good.png"
    write_png(good, RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    raw = good.read_bytes()
    (tmp_path / "half.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "noise.png").write_bytes(RNG.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (tmp_path / "folder.png").mkdir()
    cases = {
        "missing.png": "does not exist",
        "empty.png": "empty",
        "half.png": "truncated or corrupt",
        "noise.png": "truncated or corrupt",
        "folder.png": "not a regular file",
    }
    for name, message in cases.items():
        with pytest.raises(ImageFormatError, match=message) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)  # the message names the file
        assert isinstance(info.value, ImagingError)


# ----------------------------------------------------------------------------------------------- volumes


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_3d(tmp_path, suffix):
    data = RNG.normal(size=(5, 6, 7)).astype(np.float32)
    write_nifti(tmp_path / f"v{suffix}", data, spacing=(1.0, 1.5, 2.0))
    volume = read_volume(tmp_path / f"v{suffix}")
    assert isinstance(volume, Volume)
    assert volume.data.dtype == np.float32 and volume.data.shape == (5, 6, 7)
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.spacing, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(volume.affine, np.diag([1.0, 1.5, 2.0, 1.0]))
    assert volume.spatial_shape == (5, 6, 7)
    assert _leftovers(tmp_path) == []


def test_nifti_round_trip_channels_labels_and_affine(tmp_path):
    data = RNG.normal(size=(3, 4, 5, 6)).astype(np.float32)  # (C, D, H, W)
    angle = np.deg2rad(20)
    affine = np.array(
        [
            [np.cos(angle) * 2, -np.sin(angle), 0, 10],
            [np.sin(angle) * 2, np.cos(angle), 0, -5],
            [0, 0, 3, 1],
            [0, 0, 0, 1],
        ]
    )
    write_nifti(tmp_path / "c.nii.gz", data, affine=affine)
    volume = read_volume(tmp_path / "c.nii.gz")
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    np.testing.assert_allclose(volume.spacing, [2.0, 1.0, 3.0], rtol=1e-5)

    labels = RNG.integers(0, 5, (4, 5, 6)).astype(np.uint8)
    write_nifti(tmp_path / "labels.nii.gz", labels)
    assert nib.load(tmp_path / "labels.nii.gz").get_data_dtype() == np.uint8
    np.testing.assert_array_equal(read_volume(tmp_path / "labels.nii.gz").data, labels.astype(np.float32))


def test_write_nifti_rejects_bad_input(tmp_path):
    with pytest.raises(ImageFormatError, match="shape"):
        write_nifti(tmp_path / "flat.nii.gz", np.zeros((4, 5)))
    with pytest.raises(ImageFormatError, match="NIfTI"):
        write_nifti(tmp_path / "v.png", np.zeros((4, 5, 6)))
    with pytest.raises(ValueError, match="disagrees"):
        write_nifti(tmp_path / "v.nii", np.zeros((4, 5, 6)), spacing=(2, 2, 2), affine=np.eye(4))
    assert list(tmp_path.iterdir()) == []


def test_write_nifti_failure_leaves_nothing(tmp_path, monkeypatch):
    def crash(image, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("killed mid-write")

    monkeypatch.setattr(imaging_io.nib, "save", crash)
    with pytest.raises(OSError, match="killed"):
        write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 5, 6)))
    assert list(tmp_path.iterdir()) == []


def test_bad_volume_files(tmp_path):
    write_nifti(tmp_path / "good.nii.gz", RNG.normal(size=(16, 16, 16)))
    write_nifti(tmp_path / "good.nii", RNG.normal(size=(8, 8, 8)))
    gz, plain = (tmp_path / "good.nii.gz").read_bytes(), (tmp_path / "good.nii").read_bytes()
    (tmp_path / "half.nii.gz").write_bytes(gz[: len(gz) // 2])
    (tmp_path / "short.nii").write_bytes(plain[: len(plain) - 100])
    (tmp_path / "noise.nii.gz").write_bytes(RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (tmp_path / "noise.nii").write_bytes(RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    nib.save(nib.Nifti1Image(np.zeros((6, 7), np.float32), np.eye(4)), tmp_path / "slice.nii.gz")
    write_png(tmp_path / "image.png", np.zeros((4, 4), np.uint8))
    cases = {
        "missing.nii.gz": "does not exist",
        "empty.nii.gz": "empty",
        "half.nii.gz": "truncated or corrupt",
        "short.nii": "truncated or corrupt",
        "noise.nii.gz": "truncated or corrupt",
        "noise.nii": "truncated or corrupt",
        "slice.nii.gz": "expected a 3D volume",  # a 2D array where a volume is expected
        "image.png": "not a NIfTI or DICOM file name",
    }
    for name, message in cases.items():
        with pytest.raises(ImageFormatError, match=message) as info:
            read_volume(tmp_path / name)
        assert name in str(info.value)
        assert "\n" not in str(info.value)


def test_nifti_permissions_are_shareable(tmp_path):
    write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 4, 4)))
    assert os.stat(tmp_path / "v.nii.gz").st_mode & 0o044 == 0o044
