"""Volume preparation: orientation, resampling (linear vs nearest), normalisation, crop/pad, real NIfTI."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path
from scipy import ndimage

from imaging.errors import ImagingError
from imaging.io import write_nifti
from imaging.volumes import crop_or_pad, load_volume, normalize_intensity, resample, resize_2d

NIBABEL_DATA = Path(data_path)


def test_reorientation_to_ras(tmp_path):
    """A volume stored L→R (negative x axis) is flipped so that index 0 is the patient's left."""
    data = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2) + 1
    affine = np.diag([-2.0, 1.0, 3.0, 1.0])  # LAS, voxel sizes 2, 1, 3
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "las.nii.gz")
    out = load_volume(tmp_path / "las.nii.gz", normalize="none")
    np.testing.assert_array_equal(out, data[::-1])
    # a permuted orientation (axes stored as S, R, A) comes back in R, A, S order with spacing permuted
    permuted = np.zeros((4, 4))
    permuted[2, 0], permuted[0, 1], permuted[1, 2], permuted[3, 3] = 3.0, 2.0, 1.0, 1.0
    nib.save(nib.Nifti1Image(data, permuted), tmp_path / "sra.nii.gz")
    out = load_volume(tmp_path / "sra.nii.gz", normalize="none")
    np.testing.assert_array_equal(out, np.transpose(data, (1, 2, 0)))
    resampled = load_volume(tmp_path / "sra.nii.gz", target_spacing=(1.0, 1.0, 1.0), normalize="none")
    assert resampled.shape == (6, 2, 12)  # (3 × 2 mm, 2 × 1 mm, 4 × 3 mm)


def test_resample_labels_nearest_images_linear():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, size=(5, 6, 7)).astype(np.float32)
    out = resample(label, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), is_label=True)
    assert out.shape == (10, 12, 14)
    np.testing.assert_array_equal(out, ndimage.zoom(label, 2, order=0, grid_mode=True, mode="nearest"))
    image = resample(label, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0))
    assert not set(np.unique(image)) <= {0.0, 1.0, 2.0, 3.0}  # interpolated values between classes
    assert image.min() >= 0 and image.max() <= 3
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32)[:, None, None], (8, 4, 4))
    down = resample(ramp, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0))
    np.testing.assert_allclose(down[:, 0, 0], [0.5, 2.5, 4.5, 6.5])  # linear: mean of each voxel pair


def test_normalize_over_foreground():
    rng = np.random.default_rng(1)
    data = np.zeros((2, 6, 6, 6), np.float32)
    data[:, 1:5, 1:5, 1:5] = rng.normal(100, 15, size=(2, 4, 4, 4))
    data[1] *= 3
    out = normalize_intensity(data, "zscore")
    mask = data[0] != 0
    for channel in out:
        assert abs(channel[mask].mean()) < 1e-5 and abs(channel[mask].std() - 1) < 1e-4
        assert np.all(channel[~mask] == 0)
    scaled = normalize_intensity(data[0], "minmax")
    assert scaled[mask].min() == 0 and scaled[mask].max() == pytest.approx(1)
    assert np.all(normalize_intensity(np.zeros((3, 3, 3)), "zscore") == 0)


def test_crop_or_pad_centre():
    data = np.arange(5, dtype=np.float32)[None, None, :].repeat(2, 0).repeat(3, 1)
    out = crop_or_pad(data, (4, 3, 3))
    assert out.shape == (4, 3, 3)
    np.testing.assert_array_equal(out[1, 0], [1, 2, 3])  # cropped 5 → 3 keeps the centre
    np.testing.assert_array_equal(out[0], 0)  # padded 2 → 4: one zero plane before
    np.testing.assert_array_equal(out[3], 0)


def test_resize_2d_nearest_for_labels():
    label = np.array([[0, 1], [2, 3]], dtype=np.float32)
    np.testing.assert_array_equal(resize_2d(label, (4, 4), is_label=True), np.kron(label, np.ones((2, 2))))


def test_real_nifti_from_nibabel():
    anatomical = load_volume(NIBABEL_DATA / "anatomical.nii", target_spacing=(4.0, 4.0, 4.0), size=(8, 8, 8))
    assert anatomical.shape == (8, 8, 8) and anatomical.dtype == np.float32
    foreground = anatomical != 0
    assert foreground.any() and abs(anatomical[foreground].mean()) < 0.2  # z-scored before the crop
    raw = nib.as_closest_canonical(nib.load(NIBABEL_DATA / "anatomical.nii")).get_fdata()
    full = load_volume(NIBABEL_DATA / "anatomical.nii", normalize="none")
    np.testing.assert_allclose(full, raw, rtol=1e-6)  # nibabel's own canonical reorientation
    standard = load_volume(
        NIBABEL_DATA / "standard.nii.gz", target_spacing=(1.0, 1.0, 1.0), normalize="minmax"
    )
    assert standard.shape == (4, 15, 14)
    four_d = load_volume(NIBABEL_DATA / "example_nifti2.nii.gz", size=(8, 8, 8))
    assert four_d.shape == (2, 8, 8, 8)


def test_bad_files(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ImagingError, match="broken.nii.gz"):
        load_volume(broken)
    write_nifti(tmp_path / "soft.nii.gz", np.full((2, 2, 2), 0.5, np.float32))
    with pytest.raises(ImagingError, match="integer class values"):
        load_volume(tmp_path / "soft.nii.gz", is_label=True)
    with pytest.raises(ImagingError, match="normalize"):
        load_volume(tmp_path / "soft.nii.gz", normalize="robust")
