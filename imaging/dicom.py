"""DICOM files: 2D images (radiographs, photographs) and volumes (one series of slices, or one multi-frame file).

Two uses, two intensity conventions:

- **2D images** (:func:`read_dicom_image`): what a reader sees on a viewing station, in the range every
  2D pipeline of this package reads (``imaging.io.read_image``'s uint8/uint16). Stored values go through the
  modality LUT (RescaleSlope/RescaleIntercept), then the VOI LUT, else the first window (WindowCenter/
  WindowWidth, DICOM's linear function; a SIGMOID VOILUTFunction is read as linear), else the full range of
  the rescaled values; MONOCHROME1 is inverted so that bright means dense everywhere. Grey images come back
  as uint16 (0..65535), colour as uint8 RGB.
- **Volumes** (:func:`read_dicom_volume`): physical values (modality LUT only: Hounsfield units for CT) as
  float32 with the geometry of the headers. The slices of one series are ordered along the slice normal
  (ImageOrientationPatient × ImagePositionPatient), never by file name or InstanceNumber; slices that are not
  parallel, repeat a position (echoes, time points) or leave uneven gaps are refused, naming the series.
  Enhanced multi-frame files take position, orientation, spacing and rescale from their functional groups.

The voxel axes follow ``imaging.io``: data (D, H, W) are the NIfTI axes i, j, k, here i = column, j = row,
k = slice, and ``affine`` maps (i, j, k, 1) to RAS millimetres (DICOM's LPS with x and y negated), as
nibabel writes NIfTI. Reorienting to RAS+ gives what dcm2niix or nibabel give on the same files (tested).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imaging.errors import ImageFormatError

DICOM_SUFFIXES = (".dcm", ".dicom")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_PARALLEL_TOLERANCE = 1e-4  # direction cosines
_SPACING_TOLERANCE = 0.01  # relative deviation of one slice gap from the median gap


def is_dicom(path: str | os.PathLike) -> bool:
    """By name (``.dcm``, ``.dicom``) or, for a name without suffix, by the ``DICM`` preamble."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix or not path.is_file():
        return False
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def dicom_problem(path: str | os.PathLike) -> str | None:
    """A check without decoding pixels: every header parses and describes an image, and uncompressed pixel
    data holds every byte the header promises (a folder: every DICOM file in it). Returns the one-line
    problem, or None."""
    try:
        files, _ = _volume_files(path) if Path(path).is_dir() else ([Path(path)], str(path))
        for file in files:
            _check_pixel_length(_read(file), file)
    except ImageFormatError as error:
        return str(error)
    return None


def dicom_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """From the headers alone: (H, W) = (rows, columns) of a single-frame file; (columns, rows, slices) of a
    multi-frame file or of a series folder, the axes :func:`read_dicom_volume` returns."""
    path = Path(path)
    if path.is_dir():
        files, _ = _volume_files(path)
        headers = [_header(file) for file in files]
        frames = sum(int(h.get("NumberOfFrames", 1) or 1) for h in headers)
        return (int(headers[0].Columns), int(headers[0].Rows), frames)
    dataset = _header(path)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return (int(dataset.Columns), int(dataset.Rows), frames)
    return (int(dataset.Rows), int(dataset.Columns))


def read_dicom_image(path: str | os.PathLike) -> np.ndarray:
    """One 2D DICOM image for viewing and 2D training.

    Returns:
        (H, W) uint16 for grey images (modality LUT, then window or VOI LUT, scaled to 0..65535,
        MONOCHROME1 inverted), or (H, W, 3) uint8 RGB for colour images.

    Raises:
        ImageFormatError: not DICOM, not an image, multi-frame, truncated pixel data, undecodable
            compression.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = Path(path)
    dataset = _read(path)
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageFormatError(
            f"{path}: a multi-frame DICOM ({dataset.NumberOfFrames} frames) is a volume, not a 2D image; "
            "read it with read_volume or give one frame per file"
        )
    pixels = _pixels(dataset, path)
    if int(dataset.get("SamplesPerPixel", 1)) == 3:
        from pydicom.pixels import convert_color_space

        if str(dataset.PhotometricInterpretation).startswith("YBR"):
            pixels = convert_color_space(pixels, str(dataset.PhotometricInterpretation), "RGB")
        return _to_uint8(pixels)
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    if "VOILUTSequence" in dataset:
        values = np.asarray(apply_voi_lut(values, dataset, index=0), dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if "WindowCenter" in dataset and "WindowWidth" in dataset and "VOILUTSequence" not in dataset:
        center, width = _first(dataset.WindowCenter), max(_first(dataset.WindowWidth), 2.0)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2  # DICOM's linear window
    scaled = (values - low) / max(high - low, 1e-12)
    if str(dataset.PhotometricInterpretation) == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.round(np.clip(scaled, 0.0, 1.0) * 65535.0).astype(np.uint16)


def read_dicom_volume(path: str | os.PathLike | Sequence[str | os.PathLike]):
    """A volume from a folder holding one series, a list of slice files, or one multi-frame file.

    Returns:
        ``imaging.io.Volume``: float32 (D, H, W) = (columns, rows, slices) in modality units, spacing in mm
        along those axes, RAS affine.

    Raises:
        ImageFormatError: no DICOM image found; several series; slices not parallel, repeated or unevenly
            spaced; a slice of another size; a header without geometry.
    """
    from imaging.io import Volume

    files, where = _volume_files(path)
    slices = []
    for file in files:
        dataset = _read(file)
        slices.extend(_frames(dataset, file))
    series = sorted({s["series"] for s in slices})
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({sum(s['series'] == uid for s in slices)} slices)" for uid in series[:4])
        raise ImageFormatError(
            f"{where}: holds {len(series)} series ({counts}); give the folder or files of one series"
        )
    data, affine = _stack(slices, where)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return Volume(data=data, spacing=spacing, affine=affine)


# ------------------------------------------------------------------------------------------------ helpers


def _header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise ImageFormatError(f"{path}: no such DICOM file; check the path")
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageFormatError(f"{path}: not a readable DICOM file ({exc}); re-export or re-copy it") from exc
    if "Rows" not in dataset or "Columns" not in dataset:
        kind = getattr(dataset.get("SOPClassUID"), "name", None) or "no image"
        raise ImageFormatError(f"{path}: a DICOM file without an image ({kind}); give image files only")
    return dataset


def _read(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    _header(path)
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageFormatError(f"{path}: not a readable DICOM file ({exc}); re-export or re-copy it") from exc


def _check_pixel_length(dataset, path: Path) -> None:
    if "PixelData" not in dataset:
        raise ImageFormatError(f"{path}: a DICOM header without pixel data; give image files only")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return  # encapsulated fragments: only decoding can tell
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    bits = int(dataset.get("BitsAllocated", 8))
    expected = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1)) * frames
    expected = (expected * bits + 7) // 8
    if len(dataset.PixelData) < expected:
        raise ImageFormatError(
            f"{path}: truncated DICOM ({len(dataset.PixelData)} of {expected} bytes of pixel data); re-export "
            "or re-copy it"
        )


def _pixels(dataset, path: Path) -> np.ndarray:
    if "PixelData" not in dataset:
        raise ImageFormatError(f"{path}: a DICOM header without pixel data; give image files only")
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for truncated or unknown data
        raise ImageFormatError(
            f"{path}: the pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is truncated "
            "or uses a compression no installed decoder handles (pip install pylibjpeg pylibjpeg-libjpeg)"
        ) from exc


def _first(value) -> float:
    """The first value of a possibly multi-valued DICOM number (several windows → the first)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    top = float(np.iinfo(pixels.dtype).max) if np.issubdtype(pixels.dtype, np.integer) else 1.0
    return np.round(np.clip(pixels / top, 0, 1) * 255).astype(np.uint8)


def _volume_files(path) -> tuple[list[Path], str]:
    if isinstance(path, str | os.PathLike):
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_dicom(p))
            if not files:
                raise ImageFormatError(
                    f"{path}: no DICOM file (.dcm, or with the DICM preamble) in this folder"
                )
            return files, str(path)
        return [path], str(path)
    files = [Path(p) for p in path]
    if not files:
        raise ImageFormatError("no DICOM slice files given")
    return files, f"{files[0].parent} ({len(files)} files)"


def _frames(dataset, path: Path) -> list[dict]:
    """Per frame: series UID, orientation (6,), position (3,), pixel spacing (2,), slope, intercept,
    stored pixels (rows, columns)."""
    pixels = _pixels(dataset, path)
    series = str(dataset.get("SeriesInstanceUID", ""))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames == 1 and "PerFrameFunctionalGroupsSequence" not in dataset:
        geometry = _geometry(dataset, dataset, path)
        return [{"series": series, "pixels": pixels, "file": path, **geometry}]
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence", [])
    if len(per_frame) != frames:
        raise ImageFormatError(
            f"{path}: {frames} frames but {len(per_frame)} per-frame geometry entries; re-export the series"
        )
    pixels = pixels if pixels.ndim == 3 else pixels[None]
    return [
        {"series": series, "pixels": pixels[i], "file": path, **_geometry(per_frame[i], shared, path)}
        for i in range(frames)
    ]


def _geometry(own, shared, path: Path) -> dict:
    """Orientation, position, spacing and rescale of one frame: from the dataset itself (single frame) or
    from its per-frame functional group, falling back to the shared one (enhanced multi-frame)."""

    def find(sequence: str, keyword: str):
        for group in (own, shared):
            if group is not None and sequence in group and len(group[sequence].value):
                item = group[sequence][0]
                if keyword in item:
                    return item[keyword].value
        return own.get(keyword) if keyword in own else None

    orientation = find("PlaneOrientationSequence", "ImageOrientationPatient")
    position = find("PlanePositionSequence", "ImagePositionPatient")
    spacing = find("PixelMeasuresSequence", "PixelSpacing")
    if orientation is None or position is None or spacing is None:
        missing = [
            name
            for name, value in (("ImageOrientationPatient", orientation), ("ImagePositionPatient", position),
                                ("PixelSpacing", spacing))
            if value is None
        ]  # fmt: skip
        raise ImageFormatError(
            f"{path}: no {', '.join(missing)}: a 2D image (e.g. a radiograph) cannot be placed in a volume; "
            "read it as an image"
        )
    slope = find("PixelValueTransformationSequence", "RescaleSlope")
    intercept = find("PixelValueTransformationSequence", "RescaleIntercept")
    return {
        "orientation": np.asarray([float(v) for v in orientation]),
        "position": np.asarray([float(v) for v in position]),
        "spacing": np.asarray([float(v) for v in spacing]),
        "slope": 1.0 if slope in (None, "") else float(slope),
        "intercept": 0.0 if intercept in (None, "") else float(intercept),
    }


def _stack(slices: list[dict], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Order slices along their normal and build (columns, rows, slices) float32 data and the RAS affine."""
    first = slices[0]
    for s in slices[1:]:
        if not np.allclose(s["orientation"], first["orientation"], atol=_PARALLEL_TOLERANCE):
            raise ImageFormatError(
                f"{where}: slices are not parallel ({s['file'].name} is tilted against {first['file'].name}: "
                "a localizer or radial series); give a series of parallel slices"
            )
        if s["pixels"].shape != first["pixels"].shape or not np.allclose(s["spacing"], first["spacing"]):
            raise ImageFormatError(
                f"{where}: {s['file'].name} has {s['pixels'].shape} pixels of {s['spacing'].tolist()} mm, "
                f"{first['file'].name} {first['pixels'].shape} of {first['spacing'].tolist()} mm; give one series"
            )
    row_cosine, column_cosine = first["orientation"][:3], first["orientation"][3:]
    normal = np.cross(row_cosine, column_cosine)
    distance = np.asarray([float(s["position"] @ normal) for s in slices])
    order = np.argsort(distance, kind="stable")
    slices, distance = [slices[i] for i in order], distance[order]
    gaps = np.diff(distance)
    if len(slices) > 1 and np.any(gaps < 1e-3):
        i = int(np.argmin(gaps))
        raise ImageFormatError(
            f"{where}: {slices[i]['file'].name} and {slices[i + 1]['file'].name} lie at the same position "
            "(echoes, time points or a repeated acquisition); give the slices of one volume"
        )
    if len(slices) > 2 and np.any(np.abs(gaps - np.median(gaps)) > _SPACING_TOLERANCE * np.median(gaps)):
        raise ImageFormatError(
            f"{where}: uneven slice gaps ({gaps.min():.3g}..{gaps.max():.3g} mm): slices are missing or the "
            "series mixes stacks; give a complete series"
        )
    step = float(np.median(gaps)) if len(slices) > 1 else 1.0
    row_spacing, column_spacing = first["spacing"]  # between rows, between columns
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * column_spacing  # i: along a row (next column)
    lps[:3, 1] = column_cosine * row_spacing  # j: down a column (next row)
    lps[:3, 2] = normal * step  # k: next slice
    lps[:3, 3] = slices[0]["position"]
    data = np.stack(
        [(s["pixels"].astype(np.float32) * s["slope"] + s["intercept"]).T for s in slices], axis=-1
    )
    return np.ascontiguousarray(data, dtype=np.float32), _LPS_TO_RAS @ lps


__all__ = [
    "DICOM_SUFFIXES",
    "dicom_problem",
    "dicom_shape",
    "is_dicom",
    "read_dicom_image",
    "read_dicom_volume",
]
