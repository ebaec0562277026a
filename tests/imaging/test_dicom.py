"""DICOM in: 2D images with their rescale and window, series and multi-frame files to volumes whose
geometry equals the volume they came from, nibabel's reading and dcm2niix's conversion; clear errors for
files that are not images, truncated, or not one volume."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imaging.errors import ImageFormatError
from imaging.io import check_image_files, image_file_problem, read_image, read_volume, spatial_shape
from tests.imaging.dicom_series import write_series

pydicom = pytest.importorskip("pydicom")
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_DATA = Path(nib.__file__).parent


def _canonical(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))


def _rotation(degrees_x: float, degrees_z: float) -> np.ndarray:
    a, c = np.radians(degrees_x), np.radians(degrees_z)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    rotation = np.eye(4)
    rotation[:3, :3] = rz @ rx
    return rotation


@pytest.fixture(scope="module")
def brain_series(tmp_path_factory):
    """nibabel's bundled anatomical scan, tilted 20° and 10°, written as a shuffled DICOM series."""
    anatomical = nib.load(NIBABEL_DATA / "tests" / "data" / "anatomical.nii")
    data = np.asarray(anatomical.get_fdata(), np.float64)
    affine = _rotation(20, 10) @ anatomical.affine
    folder = tmp_path_factory.mktemp("series") / "t1"
    write_series(folder, data, affine, slope=2.0, intercept=-100.0)  # int16 holds (data + 100) / 2
    return folder, data, affine


@pytest.fixture(scope="session")
def dcm2niix_bin() -> str:
    path = shutil.which("dcm2niix")
    if path is None:
        pytest.skip("dcm2niix is absent on this machine (CI installs Debian's dcm2niix package)")
    return path


def _dcm2niix(binary: str, source: Path, out: Path) -> nib.Nifti1Image:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([binary, "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(source)],
                   check=True, capture_output=True)  # fmt: skip
    return nib.load(out / "vol.nii")


# --------------------------------------------------------------------------------------------- 2D images


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1, written out, to 0..65535."""
    out = np.empty_like(values)
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    for index, x in np.ndenumerate(values):
        out[index] = 0.0 if x <= low else 1.0 if x > high else (x - (center - 0.5)) / (width - 1) + 0.5
    return np.round(out * 65535)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_a_grey_image_is_rescaled_then_windowed_like_the_standard_says(name):
    dataset = pydicom.dcmread(PYDICOM_FILES / name)
    values = dataset.pixel_array.astype(np.float64) * float(dataset.get("RescaleSlope", 1)) + float(
        dataset.get("RescaleIntercept", 0)
    )
    if "WindowCenter" in dataset:
        center = float(np.atleast_1d(dataset.WindowCenter)[0])
        expected = _linear_window(values, center, float(np.atleast_1d(dataset.WindowWidth)[0]))
    else:
        expected = np.round((values - values.min()) / (values.max() - values.min()) * 65535)
    image = read_image(PYDICOM_FILES / name)
    assert image.dtype == np.uint16 and image.shape == dataset.pixel_array.shape
    np.testing.assert_array_equal(image, expected.astype(np.uint16))
    assert spatial_shape(PYDICOM_FILES / name) == image.shape


def test_monochrome1_is_inverted_so_bright_means_dense(tmp_path):
    dataset = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    normal = read_image(PYDICOM_FILES / "MR_small.dcm").astype(np.int64)
    dataset.PhotometricInterpretation = "MONOCHROME1"
    dataset.save_as(tmp_path / "inverted.dcm")
    np.testing.assert_array_equal(read_image(tmp_path / "inverted.dcm"), 65535 - normal)


def test_colour_dicom_is_rgb_uint8():
    image = read_image(PYDICOM_FILES / "SC_rgb_jpeg.dcm")
    assert image.dtype == np.uint8 and image.shape == (256, 256, 3) and image.std() > 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("MR_truncated.dcm", "truncated DICOM"),
        ("rtplan.dcm", "without an image"),
    ],
)
def test_bad_dicom_files_are_found_by_the_up_front_check(name, message):
    assert message in image_file_problem(PYDICOM_FILES / name)
    with pytest.raises(ImageFormatError, match=message):
        check_image_files([PYDICOM_FILES / "CT_small.dcm", PYDICOM_FILES / name])


def test_a_multi_frame_file_is_not_read_as_one_image():
    with pytest.raises(ImageFormatError, match="multi-frame DICOM .* is a volume"):
        read_image(PYDICOM_FILES / "examples_ybr_color.dcm")


def test_a_file_that_is_not_dicom_is_named(tmp_path):
    fake = tmp_path / "scan.dcm"
    fake.write_bytes(b"not dicom at all" * 20)
    assert "not a readable DICOM file" in image_file_problem(fake)


# ------------------------------------------------------------------------------------------------ volumes


def test_a_series_reads_back_as_the_volume_it_was_written_from(brain_series):
    folder, data, affine = brain_series
    volume = read_volume(folder)
    ours, truth = _canonical(volume.data, volume.affine), _canonical(data, affine)
    assert ours.shape == truth.shape
    np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-4)
    np.testing.assert_allclose(ours.get_fdata(), truth.get_fdata(), atol=1.0 + 1e-6)  # slope / 2
    np.testing.assert_allclose(volume.spacing, np.linalg.norm(affine[:3, :3], axis=0), rtol=1e-6)
    assert spatial_shape(folder) == volume.data.shape and image_file_problem(folder) is None


def test_a_series_equals_dcm2niix(brain_series, dcm2niix_bin, tmp_path):
    folder, _, _ = brain_series
    reference = _dcm2niix(dcm2niix_bin, folder, tmp_path / "nii")
    volume = read_volume(folder)
    ours, theirs = _canonical(volume.data, volume.affine), nib.as_closest_canonical(reference)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    np.testing.assert_allclose(ours.get_fdata(), theirs.get_fdata(), atol=1e-3)


@pytest.fixture(scope="module")
def philips_multiframe(tmp_path_factory) -> Path:
    """A real enhanced multi-frame MR (176 frames of 256², Philips MPRAGE) shipped by nibabel."""
    path = tmp_path_factory.mktemp("philips") / "mprage.dcm"
    with gzip.open(NIBABEL_DATA / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz") as packed:
        path.write_bytes(packed.read())
    return path


def test_a_multi_frame_file_has_nibabels_geometry(philips_multiframe):
    from nibabel.nicom import dicomwrappers

    volume = read_volume(philips_multiframe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel calls its DICOM readers experimental
        wrapper = dicomwrappers.wrapper_from_file(str(philips_multiframe))
        nibabel_data, nibabel_affine = wrapper.get_data(), np.diag([-1.0, -1, 1, 1]) @ wrapper.affine
    ours, theirs = _canonical(volume.data, volume.affine), _canonical(nibabel_data, nibabel_affine)
    assert ours.shape == theirs.shape == (176, 256, 256)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=5e-3)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())


def test_a_multi_frame_file_equals_dcm2niix(philips_multiframe, dcm2niix_bin, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(philips_multiframe, source / "mprage.dcm")
    reference = nib.as_closest_canonical(_dcm2niix(dcm2niix_bin, source, tmp_path / "nii"))
    volume = read_volume(philips_multiframe)
    ours = _canonical(volume.data, volume.affine)
    np.testing.assert_allclose(ours.affine, reference.affine, atol=1e-3)


def test_slices_that_are_not_one_volume_are_refused(brain_series, tmp_path):
    with pytest.raises(ImageFormatError, match="not parallel"):
        read_volume(PYDICOM_FILES / "dicomdirtests" / "98892003" / "MR700")  # a radial localizer
    folder, _, _ = brain_series
    files = sorted(folder.glob("*.dcm"))
    gap = tmp_path / "gap"
    gap.mkdir()
    for file in files:
        shutil.copy(file, gap / file.name)
    middle = sorted(gap.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    middle[len(middle) // 2].unlink()
    with pytest.raises(ImageFormatError, match="uneven slice gaps"):
        read_volume(gap)
    twice = tmp_path / "twice"
    shutil.copytree(folder, twice)
    shutil.copy(files[0], twice / "copy_of_a_slice.dcm")
    with pytest.raises(ImageFormatError, match="same position"):
        read_volume(twice)
