"""DICOM series built in code: a phantom written as a valid MR Image Storage series.

SimpleITK's series writer leaves out the Frame of Reference and patient modules, which a
SEG must copy, so these slices are written with pydicom: one MR instance per slice, with
ImagePositionPatient from the image grid, in shuffled file order (the reader must sort by
position, not by name), each file named by its SOP Instance UID like a PACS export.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import tiny_model_dir  # noqa: F401 (fixture)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for example UIDs


def write_mr_series(
    image: sitk.Image, folder: Path, series_uid: str, seed: int = 0, patient_id: str = "ONFH-TEST-1"
) -> list[Path]:
    """Write ``image`` (any direction) as one MR instance per slice; return the files.

    The study and frame of reference UIDs derive from ``patient_id`` so that two series of
    one patient share them.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

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
    """The SOP Instance UID ``write_mr_series`` gives slice ``k`` (tests check the mapping with it)."""
    from pydicom.uid import generate_uid

    return generate_uid(UID_ROOT, entropy_srcs=[series_uid, str(k)])


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """``dciodvfy PATH``: its Error lines and its Warning lines (printed for the log).

    Skips the test when dicom3tools is not installed, unless ``ONFH_REQUIRE_DCIODVFY`` is
    set (``.ci/run`` installs it and sets it: CI must not skip the validation silently).
    """
    import os
    import shutil
    import subprocess

    import pytest

    if shutil.which("dciodvfy") is None:
        if os.environ.get("ONFH_REQUIRE_DCIODVFY"):
            raise RuntimeError("ONFH_REQUIRE_DCIODVFY is set but dciodvfy (dicom3tools) is not installed")
        pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools)")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    print(f"dciodvfy {path.name}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in sorted(set(warnings)):
        print("  ", line)
    return errors, warnings


PHANTOM_SERIES_UID = "1.2.826.0.1.3680043.8.498.4242"


@pytest.fixture(scope="session")
def segmented_dicom_case(tiny_model_dir, tmp_path_factory) -> dict:  # noqa: F811
    """A phantom written as an MR series and run through ``onfh segment --label-map`` once.

    Returns the paths (``series``, ``out`` and each output by its report key), the case
    report and the phantom's image.
    """
    import json

    from model_fixtures import DIRECTIONS, phantom

    from onfh.cli import main

    root = tmp_path_factory.mktemp("dicom_case")
    image, _ = phantom(DIRECTIONS["oblique"], noise=8.0, seed=3)
    series = root / "hip_mr"
    write_mr_series(image, series, PHANTOM_SERIES_UID)
    out = root / "out"
    code = main(["segment", str(series), "-o", str(out), "--model", str(tiny_model_dir), "--label-map"])
    assert code == 0
    report = json.loads((out / "hip_mr.json").read_text())
    paths = {key: out / name for key, name in report["outputs"].items()}
    return {**paths, "series": series, "out": out, "case_json": report, "image": image}
