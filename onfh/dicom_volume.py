"""Enhanced multi-frame MR DICOM files as 3D images, and highdicom volume geometry in SimpleITK's terms.

An Enhanced MR file holds every slice as one frame of a single instance; where each frame
lies is in its PlanePositionSequence, with the PlaneOrientationSequence and
PixelMeasuresSequence shared or per frame, and the frames may come in any order. SimpleITK
(GDCM) reads such a file frame by frame in file order from the first frame's position,
which is a wrong grid when the frames are not sorted along the slice normal, and as the
only file of a series folder a 4D image. highdicom sorts the frames along the normal and
checks that they form one regularly spaced volume, so it reads them here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.errors import OnfhError

# Multi-frame MR images with functional groups: the only multi-frame objects read as an MRI.
MULTIFRAME_MR_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}


def is_dicom_file(path: str | os.PathLike) -> bool:
    """A ``.dcm`` name, or the DICOM preamble's ``DICM`` at byte 128 (files without a suffix)."""
    p = Path(path)
    if p.suffix.lower() == ".dcm":
        return True
    try:
        with open(p, "rb") as stream:
            return stream.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def number_of_frames(path: str | os.PathLike) -> int:
    """The frames of a DICOM file (1 for a classic single-slice instance), from its header only.

    Raises:
        OnfhError: not a readable DICOM file.
    """
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["NumberOfFrames"])
        return int(header.get("NumberOfFrames") or 1)
    except Exception as error:  # pydicom raises many types for damaged files
        raise OnfhError(f"{path}: not a readable DICOM file ({short_error(error)})") from None


def read_multiframe_image(path: str | os.PathLike) -> sitk.Image:
    """Read an Enhanced MR file as a 3D float32 image, its frames sorted along the slice normal.

    The grid comes from the frames' plane positions, orientation and pixel measures; stored
    values go through the modality rescale (slope, intercept) as SimpleITK applies it to a
    classic series.

    Raises:
        OnfhError: one line naming the file: another kind of multi-frame object, more than
            one voxel component, or frames that are no single regularly spaced 3D volume
            (several stacks, echoes or time points); the message says what arrived.
    """
    import highdicom as hd
    import pydicom

    from onfh.geometry_limits import require_voxel_count

    p = Path(path)
    try:
        header = pydicom.dcmread(p, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types for damaged files
        raise OnfhError(f"{p}: not a readable DICOM file ({short_error(error)})") from None
    sop_class = str(header.get("SOPClassUID", ""))
    frames = int(header.get("NumberOfFrames") or 1)
    if sop_class not in MULTIFRAME_MR_STORAGE:
        name = getattr(header.get("SOPClassUID"), "name", "") or "unknown SOP class"
        raise OnfhError(
            f"{p}: a multi-frame DICOM {name} ({sop_class or 'no SOP Class UID'}) of {frames} frames; "
            "onfh reads multi-frame files only as Enhanced MR images: export the MRI as an MR series"
        )
    if int(header.get("SamplesPerPixel", 1)) != 1:
        raise OnfhError(f"{p}: expected a scalar image, got {header.SamplesPerPixel} samples per pixel")
    require_voxel_count((int(header.Columns), int(header.Rows), frames), 1, p)
    try:
        image = hd.imread(p)
    except Exception as error:
        raise OnfhError(f"{p}: damaged Enhanced MR file ({short_error(error)})") from None
    try:
        volume = image.get_volume(
            dtype=np.float32, apply_real_world_transform=False, apply_voi_transform=False
        )
    except Exception as error:  # highdicom says why the frames are no volume
        raise OnfhError(
            f"{p}: its {frames} frames do not form one regularly spaced 3D volume ({short_error(error)}); "
            "export a single 3D series (one echo, one time point, one stack)"
        ) from None
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise OnfhError(f"{p}: expected a 3D image, got {array.ndim}D frames of shape {array.shape}")
    return volume_image(array, volume.affine)


def volume_image(array_zyx: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of a (slice, row, column) array whose geometry is a highdicom affine.

    highdicom's affine maps (slice, row, column) indices to LPS mm; SimpleITK's index is
    (column, row, slice), so the affine's columns come in reverse order.
    """
    affine = np.asarray(affine, dtype=float)
    steps = affine[:3, :3][:, ::-1]  # columns: column step, row step, slice step
    spacing = np.linalg.norm(steps, axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((steps / spacing).ravel().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image


def short_error(error: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]
