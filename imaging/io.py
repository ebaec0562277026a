"""Image and volume files: 2D images through pillow, 3D/4D NIfTI volumes through nibabel, DICOM (2D images,
series and multi-frame volumes) through ``imaging.dicom``.

Every reader checks the file before trusting it: a missing, empty, truncated or corrupt file, or one of
an unexpected shape, raises :class:`~imaging.errors.ImageFormatError` naming the file and what to do.
Every writer is atomic (a temporary sibling renamed over the target), so a crash never leaves a
half-written file that looks complete.

Axis conventions: images are (H, W) or (H, W, C); a volume is (D, H, W) or (C, D, H, W), where D, H, W
are the NIfTI voxel axes i, j, k in that order, so ``affine @ (d, h, w, 1)`` is the position in mm.
Channels are stored as the 4th NIfTI dimension.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_nifti(folder / "t1.nii.gz", np.zeros((4, 5, 6), np.float32), spacing=(1.0, 1.0, 2.5))
>>> volume = read_volume(folder / "t1.nii.gz")
>>> volume.data.shape, volume.spacing.tolist()
((4, 5, 6), [1.0, 1.0, 2.5])
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from PIL import Image

from imaging.dicom import dicom_problem, dicom_shape, is_dicom, read_dicom_image, read_dicom_volume
from imaging.errors import ImageFormatError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Exceptions that pillow and nibabel raise on a damaged file (pillow raises SyntaxError on broken PNG chunks).
_DECODE_ERRORS = (OSError, EOFError, SyntaxError, ValueError, struct.error, zlib.error, ImageFileError)


@dataclass(frozen=True)
class Volume:
    """A volume read from a NIfTI file.

    Attributes:
        data: float32 (D, H, W) or (C, D, H, W), scaling slope/intercept already applied.
        spacing: (3,) float64 voxel size in mm along D, H, W.
        affine: (4, 4) float64 voxel index (d, h, w, 1) → scanner position in mm.
    """

    data: np.ndarray
    spacing: np.ndarray
    affine: np.ndarray

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[-3:])


def _check_readable(path: Path, kind: str) -> None:
    if not path.exists():
        raise ImageFormatError(
            f"{path}: {kind} file does not exist; check the path (and the manifest that names it)"
        )
    if not path.is_file():
        raise ImageFormatError(f"{path}: is not a regular file; pass the path of a {kind} file")
    if path.stat().st_size == 0:
        raise ImageFormatError(f"{path}: {kind} file is empty (0 bytes); re-export or re-copy it")


def _describe(exc: BaseException) -> str:
    """The exception as one line (nibabel's messages span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def process_umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_target(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` ending in ``suffix``; on success it gets the permissions a
    plain ``open()`` would give (0o666 minus the umask) and is renamed onto ``target``; on failure it is
    removed. The one atomic writer of the imaging package."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------- 2D images


def image_file_problem(path: str | os.PathLike) -> str | None:
    """A fast check of one image or volume file before training (no full decode): it exists, is not
    empty, and its header opens (pillow ``verify``; NIfTI header, and for ``.nii`` the file holds all the
    voxels the header promises). Returns the one-line problem, or None."""
    path = Path(path)
    if path.is_dir() or is_dicom(path):
        return dicom_problem(path)
    try:
        if _is_nifti(path):
            _check_readable(path, "volume")
            image = nib.load(path)
            header = image.header
            if path.suffix == ".nii":
                needed = (
                    int(header["vox_offset"])
                    + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
                )
                if path.stat().st_size < needed:
                    return f"{path}: truncated NIfTI ({path.stat().st_size} of {needed} bytes); re-export or re-copy it"
        else:
            _check_readable(path, "image")
            with Image.open(path) as image:
                image.verify()
    except ImageFormatError as exc:
        return str(exc)
    except _DECODE_ERRORS as exc:
        return (
            f"{path}: not a readable image, truncated or corrupt ({_describe(exc)}); re-export or re-copy it"
        )
    return None


def check_image_files(paths: Sequence[str | os.PathLike], noun: str = "image files") -> None:
    """:func:`image_file_problem` for every path, all reported at once in one ``ImageFormatError``
    ("k of n <noun> cannot be used: ...", the first five named)."""
    problems = [problem for problem in map(image_file_problem, paths) if problem]
    if problems:
        more = f"; … and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ImageFormatError(
            f"{len(problems)} of {len(paths)} {noun} cannot be used: " + "; ".join(problems[:5]) + more
        )


def spatial_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The stored spatial shape from the file header alone: (H, W) of a 2D image, (D, H, W) of a volume
    (the first three NIfTI axes, before any resampling; for DICOM volumes (columns, rows, slices))."""
    path = Path(path)
    if path.is_dir() or is_dicom(path):
        return dicom_shape(path)
    if _is_nifti(path):
        return tuple(int(v) for v in nib.load(path).shape[:3])
    with Image.open(path) as image:
        return (int(image.height), int(image.width))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image (PNG, JPEG, TIFF, BMP, ... anything pillow decodes, and DICOM).

    Returns:
        uint8 or uint16 array: (H, W) for grey, (H, W, 3) RGB, (H, W, 4) RGBA, (H, W, 2) grey + alpha.
        16-bit grey PNGs stay uint16; palette images are expanded to RGB(A). Grey DICOM is uint16 after
        its rescale and display window (``imaging.dicom.read_dicom_image``).
    """
    path = Path(path)
    if is_dicom(path):
        return read_dicom_image(path)
    _check_readable(path, "image")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later inside a training loop
            array = _pillow_to_array(image, path)
    except ImageFormatError:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageFormatError(
            f"{path}: not a readable image, truncated or corrupt ({_describe(exc)}); "
            "re-export or re-copy the file"
        ) from exc
    return array


def _pillow_to_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("L" if mode == "1" else "RGB")
    elif mode.startswith("I;16"):
        return np.asarray(image, dtype=np.uint16)
    elif mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "F" or values.min() < 0 or values.max() > np.iinfo(np.uint16).max:
            raise ImageFormatError(
                f"{path}: {mode}-mode image ({values.dtype}, range {values.min()}..{values.max()}) does not fit "
                "uint8/uint16; store it as 8- or 16-bit PNG, or as NIfTI for real-valued data"
            )
        return values.astype(np.uint16)
    return np.asarray(image, dtype=np.uint8).copy()


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an (H, W) uint8/uint16, or (H, W, 1|2|3|4) uint8 array as PNG, atomically.

    Bool arrays are written as 0/255. Other dtypes or shapes raise ImageFormatError (convert first).
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))
    dtype_ok = array.dtype == np.uint8 or (array.dtype == np.uint16 and array.ndim == 2)
    if not (shape_ok and dtype_ok) or min(array.shape[:2], default=0) == 0:
        raise ImageFormatError(
            f"{path}: cannot write a {array.dtype} array of shape {array.shape} as PNG; expected (H, W) uint8/uint16 "
            "or (H, W, 2|3|4) uint8 (scale and cast with np.clip(...).astype(np.uint8) first)"
        )
    array = np.ascontiguousarray(array)
    image = Image.fromarray(array)
    with atomic_target(path, ".png") as tmp:
        image.save(tmp, format="PNG")


# ---------------------------------------------------------------------------------------------- 3D volumes


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI volume (.nii or .nii.gz) as float32 (D, H, W), or (C, D, H, W) for a 4D file; or a
    DICOM volume: a folder holding one series, or one multi-frame file (``imaging.dicom``).

    A 5D file whose 4th dimension is 1 (NIfTI vector intent) is read as (C, D, H, W) too.
    """
    path = Path(path)
    if path.is_dir() or is_dicom(path):
        return read_dicom_volume(path)
    if not _is_nifti(path):
        raise ImageFormatError(
            f"{path}: not a NIfTI or DICOM file name; volumes end in {' or '.join(NIFTI_SUFFIXES)}, "
            "or are DICOM (a folder of one series, or a .dcm file)"
        )
    _check_readable(path, "volume")
    try:
        image = nib.load(path)
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise ImageFormatError(
                f"{path}: {type(image).__name__} is not a NIfTI-1/2 image; convert it to NIfTI"
            )
        data = np.asarray(image.get_fdata(dtype=np.float32), dtype=np.float32)
        zooms = image.header.get_zooms()
        affine = np.asarray(image.affine, dtype=np.float64)
    except ImageFormatError:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageFormatError(
            f"{path}: not a readable NIfTI volume, truncated or corrupt ({_describe(exc)}); "
            "re-export or re-copy the file"
        ) from exc
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim not in (3, 4):
        raise ImageFormatError(
            f"{path}: has shape {data.shape} ({data.ndim}D); expected a 3D volume (D, H, W) or a 4D stack of "
            "channels (D, H, W, C); convert 2D slices to a volume first"
        )
    if data.ndim == 4:
        data = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    spacing = np.asarray(zooms[:3], dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ImageFormatError(
            f"{path}: voxel sizes {spacing.tolist()} are not positive; fix the header pixdim"
        )
    return Volume(data=data, spacing=spacing, affine=affine)


def write_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
) -> None:
    """Write a (D, H, W) or (C, D, H, W) array as NIfTI-1 (.nii or .nii.gz by suffix), atomically.

    Args:
        data: numeric or bool array; bool is stored as uint8, float64 as float32, integers as they are.
        spacing: voxel size in mm along D, H, W; used to build the affine when ``affine`` is None.
        affine: (4, 4) voxel index → mm. When given, the voxel sizes come from its columns and a
            ``spacing`` other than the default must agree with them.
    """
    path = Path(path)
    if not _is_nifti(path):
        raise ImageFormatError(
            f"{path}: volumes are written as NIfTI; end the name in {' or '.join(NIFTI_SUFFIXES)}"
        )
    data = np.asarray(data)
    if data.ndim not in (3, 4) or 0 in data.shape:
        raise ImageFormatError(
            f"{path}: cannot write an array of shape {data.shape} as a volume; expected (D, H, W) or (C, D, H, W)"
        )
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float64 or data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype.kind not in "uif":
        raise ImageFormatError(f"{path}: cannot write a {data.dtype} array as NIfTI; pass numbers")
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing must be three positive voxel sizes in mm, got {spacing.tolist()}")
    if affine is None:
        affine = np.diag([*spacing, 1.0])
    else:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"affine must be a finite (4, 4) matrix, got shape {affine.shape}")
        from_affine = np.linalg.norm(affine[:3, :3], axis=0)
        if not np.allclose(spacing, 1.0) and not np.allclose(spacing, from_affine, rtol=1e-5):
            raise ValueError(
                f"spacing {spacing.tolist()} disagrees with the affine's voxel sizes {from_affine.tolist()}"
            )
    if data.ndim == 4:
        data = np.moveaxis(data, 0, -1)  # channels become the 4th NIfTI dimension
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    with atomic_target(path, suffix) as tmp:
        nib.save(image, tmp)
