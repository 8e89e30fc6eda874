"""A synthetic MRI written as a classic DICOM MR series: one MR Image Storage instance per slice.

The tests (DICOM SEG/SR round trips, ``onfh segment`` of a folder) and
``benchmarks/bench_dicom.py`` need the same series, so it is written here once. SimpleITK's
series writer leaves out the Frame of Reference and patient modules, which a SEG must copy,
so the slices are written with pydicom: ImagePositionPatient from the image grid, in
shuffled file order (readers must sort by position, not by name), each file named by its
SOP Instance UID like a PACS export.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for example UIDs


def write_mr_series(
    image: sitk.Image,
    folder: str | os.PathLike,
    series_uid: str,
    seed: int = 0,
    patient_id: str = "ONFH-TEST-1",
) -> list[Path]:
    """Write ``image`` (any direction) as one MR instance per slice; return the files.

    Intensities are rescaled to 0-2000 (unsigned 16 bit). The study and frame of reference
    UIDs derive from ``patient_id`` so that two series of one patient share them; slice
    ``k``'s SOP Instance UID is ``slice_uid(series_uid, k)``.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = sitk.GetArrayFromImage(sitk.Cast(sitk.RescaleIntensity(image, 0, 2000), sitk.sitkUInt16))
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = image.GetSpacing()
    study_uid = generate_uid(UID_ROOT, entropy_srcs=[patient_id, "study"])
    frame_uid = generate_uid(UID_ROOT, entropy_srcs=[patient_id, "frame"])
    order = np.random.default_rng(seed).permutation(image.GetDepth())
    files = []
    for k in order.tolist():
        sop_uid = slice_uid(series_uid, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.PatientName = "Phantom^Hip"
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.StudyInstanceUID = study_uid
        ds.StudyID = "1"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = datetime.date(2026, 1, 2).strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        ds.Modality = "MR"
        ds.Manufacturer = "onfh phantom"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.SeriesDescription = "3D SPGR hip phantom"
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "FFS"
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.ImagePositionPatient = [f"{v:.10g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.PixelSpacing = [f"{spacing[1]:.10g}", f"{spacing[0]:.10g}"]  # row spacing, column spacing
        ds.SliceThickness = f"{spacing[2]:.10g}"
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime = "20"
        ds.EchoTime = "4.6"
        ds.EchoTrainLength = "1"
        ds.FlipAngle = "20"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(pixels[k]).tobytes()
        path = folder / f"{sop_uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def slice_uid(series_uid: str, k: int) -> str:
    """The SOP Instance UID ``write_mr_series`` gives slice ``k`` of series ``series_uid``."""
    from pydicom.uid import generate_uid

    return generate_uid(UID_ROOT, entropy_srcs=[series_uid, str(k)])
