"""Reading and writing images: files or DICOM series in, atomic writes out.

Every reader error names the file and the problem in one line (``OnfhError``), because
these messages reach surgeons and researchers, not developers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from onfh.errors import OnfhError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def image_suffix(path: str | os.PathLike) -> str:
    """The image extension of ``path`` (``.nii.gz`` counts as one), or ``""``."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def case_name(path: str | os.PathLike) -> str:
    """Case identifier from a file or folder name: the name without image extension.

    The nnU-Net channel suffix ``_0000`` of ``imagesTr`` files is dropped too, so
    ``onfh segment imagesTr/*`` names its outputs like the ``labelsTr`` truths and
    ``onfh evaluate`` pairs them.
    """
    p = Path(path)
    suffix = image_suffix(p)
    name = p.name[: -len(suffix)] if suffix else p.name
    name = name[: -len(".seg")] if name.endswith(".seg") else name
    return name[: -len("_0000")] if suffix and name.endswith("_0000") and len(name) > 5 else name


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read a 3D scalar image from a NIfTI/NRRD/MHA file or a DICOM series folder.

    Args:
        path: image file, or folder holding one DICOM series.
        series_uid: which series to read when the folder holds several.

    Raises:
        OnfhError: missing path, unreadable file, several series without a choice, or an
            image that is not 3D and scalar.
    """
    p = Path(path)
    if not p.exists():
        raise OnfhError(f"{p}: no such file or folder")
    image = _read_dicom_series(p, series_uid) if p.is_dir() else _read_file(p)
    return require_3d_scalar(image, p)


def _read_file(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown format"
        raise OnfhError(f"{path}: not a readable image ({reason[:160]})") from None


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    series = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ())
    if not series:
        raise OnfhError(f"{folder}: folder holds no DICOM series")
    if series_uid is None:
        if len(series) > 1:
            names = ", ".join(series)
            raise OnfhError(f"{folder}: folder holds {len(series)} DICOM series ({names}); choose one")
        series_uid = series[0]
    elif series_uid not in series:
        raise OnfhError(f"{folder}: no DICOM series {series_uid} (found: {', '.join(series)})")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise OnfhError(f"{folder}: DICOM series {series_uid} could not be read ({error})") from None


def require_3d_scalar(image: sitk.Image, path: str | os.PathLike) -> sitk.Image:
    """Return ``image`` if it is a 3D scalar image, else raise an ``OnfhError`` naming ``path``.

    A 4D image with a single time point is accepted as 3D (scanners export those).
    """
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise OnfhError(f"{path}: expected a 3D image, got {image.GetDimension()}D of size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        components = image.GetNumberOfComponentsPerPixel()
        raise OnfhError(f"{path}: expected a scalar image, got {components} components per voxel")
    if min(image.GetSize()) < 2:
        raise OnfhError(f"{path}: expected a 3D image, got size {image.GetSize()}")
    return image


def require_usable_intensities(array: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse images no model can segment: NaN/Inf voxels, all zero or constant."""
    if not np.isfinite(array).all():
        raise OnfhError(f"{path}: image contains NaN or infinite values")
    if array.size == 0 or float(array.max()) == float(array.min()):
        raise OnfhError(f"{path}: image is constant (value {float(array.flat[0]) if array.size else 'n/a'})")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``.

    An interrupted run leaves no half-written file under the final name, and the file is
    readable by others (0644) like any file a user writes: model folders and reports are shared.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = image_suffix(path) or path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_image_atomic(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write ``image`` to ``path`` atomically (temporary name, then rename)."""
    write_atomic(Path(path), lambda tmp: sitk.WriteImage(image, str(tmp), compress))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary name, then rename)."""
    write_atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
