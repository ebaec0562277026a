"""Write a volume as a DICOM series (one MR slice per file), for tests of the DICOM readers against the
volume it came from and against dcm2niix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_series(
    folder: Path,
    data: np.ndarray,
    affine: np.ndarray,
    slope: float = 0.5,
    intercept: float = -100.0,
    order: np.ndarray | None = None,
) -> list[Path]:
    """Write ``data`` (I, J, K) with its RAS ``affine`` as K slices: columns along i, rows along j.

    Stored values are ``round((data - intercept) / slope)`` as int16 with RescaleSlope/RescaleIntercept,
    so the modality values are ``data`` up to ``slope / 2``. Files are named by ``order`` (default: a
    shuffle) and InstanceNumber runs backwards, so a reader must order slices by geometry.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    lps = RAS_TO_LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_cosine, column_cosine = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    series, study = generate_uid(), generate_uid()
    k_count = data.shape[2]
    order = np.random.default_rng(0).permutation(k_count) if order is None else order
    paths = []
    for k in range(k_count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        path = folder / f"slice{int(order[k]):04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "MR"
        ds.InstanceNumber = k_count - k
        ds.ImageOrientationPatient = [float(v) for v in (*row_cosine, *column_cosine)]
        ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([0.0, 0.0, k, 1.0]))[:3]]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows, between columns
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = np.round((data[:, :, k].T - intercept) / slope).astype(np.int16)  # (rows, columns)
        ds.PixelData = stored.tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
