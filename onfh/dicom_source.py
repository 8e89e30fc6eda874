"""The source DICOM series of an input, slice by slice in the order of its SimpleITK grid.

A DICOM SEG and SR must reference the very instances the label image was computed on:
frame ``k`` of the SEG is slice ``k`` of the image SimpleITK/GDCM built from the folder.
GDCM sorts slices along the normal, but a folder can hold files in any order and names,
so each slice is matched to its instance by ImagePositionPatient, never by file order.
Only headers are read (no pixel data): highdicom needs the geometry and the patient,
study and series identity, not the voxels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.errors import OnfhError

# How far a slice's ImagePositionPatient may lie from where the grid puts it (a fraction of
# the slice spacing: scanners round positions to 16 characters, and the reader derives one
# spacing for all slices), and how far apart orientation cosines may be.
POSITION_TOLERANCE_SLICES = 0.1
ORIENTATION_TOLERANCE = 1e-3


# Attributes a SEG or SR copies from its source; without them neither can be made.
class DicomOutputsUnsupported(OnfhError):
    """The input is a good image, but no DICOM SEG or SR can reference it (one multi-frame
    instance, or slices without what a SEG must copy).

    Not a bad input: ``onfh segment`` still segments and grades it, writes the other outputs
    and says in the report and on its line why the DICOM outputs are missing.
    """


REQUIRED_ATTRIBUTES = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
)


def is_dicom_input(path: str | os.PathLike) -> bool:
    """True for an input that is a DICOM series folder or a DICOM file (inputs with source instances)."""
    from onfh.dicom_volume import is_dicom_file

    p = Path(path)
    return p.is_dir() or (p.is_file() and is_dicom_file(p))


def source_datasets(folder: str | os.PathLike, image: sitk.Image, series_uid: str | None = None) -> list:
    """The headers of the input's DICOM instances, one per slice, ordered like the image's k axis.

    Args:
        folder: the DICOM series folder (or DICOM file) the image was read from.
        image: the image SimpleITK built from it (its grid is the label image's grid).
        series_uid: the series chosen with ``--series``, if the folder holds several.

    Raises:
        DicomOutputsUnsupported: the instances are one multi-frame instance or lack what a
            SEG must copy (e.g. no FrameOfReferenceUID).
        OnfhError: the folder's instances do not match the image's slices one to one (count,
            position, orientation, size); the message names the folder and the problem.
    """
    import pydicom

    from onfh.imageio import dicom_series_files

    files = [Path(folder)] if Path(folder).is_file() else dicom_series_files(folder, series_uid)[1]
    datasets = []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as error:  # pydicom raises many types for damaged files
            raise OnfhError(f"{path}: not a readable DICOM file ({type(error).__name__}: {error})") from None
    require_single_frame(datasets, folder)
    return order_by_grid(datasets, image, folder)


def require_single_frame(datasets: list, where: str | os.PathLike) -> None:
    """Refuse multi-frame sources (an Enhanced MR file): the SEG and SR reference one instance per slice.

    Raises:
        DicomOutputsUnsupported: naming ``where`` and the SOP class that arrived.
    """
    for dataset in datasets:
        frames = int(dataset.get("NumberOfFrames") or 1)
        if frames > 1:
            name = getattr(dataset.get("SOPClassUID"), "name", "") or "multi-frame image"
            raise DicomOutputsUnsupported(
                f"{where}: the source is one multi-frame DICOM {name} of {frames} frames; onfh writes "
                "a DICOM SEG and SR only over classic single-frame series"
            )


def order_by_grid(datasets: list, image: sitk.Image, where: str | os.PathLike) -> list:
    """``datasets`` reordered so that item ``k`` is the instance of the image's slice ``k``.

    Raises:
        OnfhError: see :func:`source_datasets`.
    """
    depth = image.GetDepth()
    if len(datasets) != depth:
        raise OnfhError(f"{where}: {len(datasets)} DICOM instances for an image of {depth} slices")
    for dataset in datasets:
        missing = [name for name in REQUIRED_ATTRIBUTES if name not in dataset]
        if missing:
            raise DicomOutputsUnsupported(
                f"{where}: DICOM instance {dataset.get('SOPInstanceUID', '?')} lacks {', '.join(missing)}; "
                "a DICOM SEG cannot reference it"
            )
    frames_of_reference = {str(ds.FrameOfReferenceUID) for ds in datasets}
    if len(frames_of_reference) > 1:
        raise OnfhError(f"{where}: the series' slices lie in {len(frames_of_reference)} frames of reference")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    in_plane = np.concatenate([direction[:, 0], direction[:, 1]])
    size = image.GetSize()
    expected = np.array([image.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(depth)])
    tolerance_mm = POSITION_TOLERANCE_SLICES * image.GetSpacing()[2]
    ordered: list = [None] * depth
    for dataset in datasets:
        if (int(dataset.Columns), int(dataset.Rows)) != (size[0], size[1]):
            raise OnfhError(
                f"{where}: instance {dataset.SOPInstanceUID} is {dataset.Columns}x{dataset.Rows} pixels, "
                f"the image {size[0]}x{size[1]}"
            )
        orientation = np.asarray([float(v) for v in dataset.ImageOrientationPatient])
        if not np.allclose(orientation, in_plane, atol=ORIENTATION_TOLERANCE):
            raise OnfhError(
                f"{where}: instance {dataset.SOPInstanceUID} is oriented {orientation.round(4).tolist()}, "
                "unlike the series' image grid"
            )
        position = np.asarray([float(v) for v in dataset.ImagePositionPatient])
        distances = np.linalg.norm(expected - position, axis=1)
        k = int(np.argmin(distances))
        if distances[k] > tolerance_mm or ordered[k] is not None:
            raise OnfhError(
                f"{where}: instance {dataset.SOPInstanceUID} at {position.round(3).tolist()} mm is not "
                "one slice of the image grid (duplicate or irregular slice positions)"
            )
        ordered[k] = dataset
    return ordered
