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

from onfh.dicom_volume import is_dicom_file, number_of_frames, read_multiframe_image
from onfh.errors import OnfhError
from onfh.file_integrity import captured_native_stderr, require_intact_nifti, sounds_truncated
from onfh.geometry_limits import require_voxel_count

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
    suffix = image_suffix(p) or (".dcm" if p.name.lower().endswith(".dcm") else "")  # an Enhanced MR file
    name = p.name[: -len(suffix)] if suffix else p.name
    name = name[: -len(".seg")] if name.endswith(".seg") else name
    return name[: -len("_0000")] if suffix and name.endswith("_0000") and len(name) > 5 else name


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read a 3D scalar image from a NIfTI/NRRD/MHA file, a DICOM series folder or an
    Enhanced MR file (one DICOM file holding every slice as a frame).

    Args:
        path: image file, or folder holding one DICOM series.
        series_uid: which series to read when the folder holds several.

    Raises:
        OnfhError: missing path, unreadable, truncated or oversized file, several series
            without a choice, or an image that is not 3D and scalar.
    """
    p = Path(path)
    if not p.exists():
        raise OnfhError(f"{p}: no such file or folder")
    if p.is_dir():
        image = _read_dicom_series(p, series_uid)
    elif is_dicom_file(p) and number_of_frames(p) > 1:
        image = read_multiframe_image(p)
    else:
        image = read_image_file(p)[0]
    return require_3d_scalar(image, p)


def read_image_file(path: str | os.PathLike) -> tuple[sitk.Image, dict[str, str]]:
    """Read one image file, refusing damaged, truncated and oversized ones; image and metadata.

    The order matters: the file's completeness is checked first (NIfTI readers do not),
    then the header's size against ``MAX_VOXELS``, and only then are voxels allocated.
    What the native reader prints goes into the error message, not onto the console.

    Raises:
        OnfhError: missing file, a folder, a damaged or truncated file, too many voxels.
    """
    p = Path(path)
    if not p.exists():
        raise OnfhError(f"{p}: no such file")
    if p.is_dir():
        raise OnfhError(f"{p}: is a folder; expected an image file")
    if image_suffix(p) in (".nii", ".nii.gz"):
        require_intact_nifti(p)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    failure: RuntimeError | None = None
    with captured_native_stderr() as console:
        try:
            reader.ReadImageInformation()
            require_voxel_count(reader.GetSize(), reader.GetNumberOfComponents(), p)
            image = reader.Execute()
        except RuntimeError as error:
            failure = error
    if failure is not None:
        raise OnfhError(f"{p}: {_read_failure_text(str(failure), console.text)}")
    return image, {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}


def _read_failure_text(error: str, console: str) -> str:
    """One line for a failed read: truncation in plain words, else the reader's last line."""
    if sounds_truncated(console) or sounds_truncated(error):
        return "file is truncated or damaged (its data end before the size its header gives); copy it again"
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else "unknown format"
    return f"not a readable image ({reason[:160]})"


def image_files_in(folder: str | os.PathLike) -> list[Path]:
    """NIfTI/NRRD/MHA files directly in ``folder`` (hidden and partial files skipped), sorted."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and image_suffix(p) and not p.name.startswith(".") and not p.name.endswith(".seg.nrrd")
    )


def dicom_series_ids(folder: str | os.PathLike) -> list[str]:
    """The DICOM series UIDs GDCM finds in ``folder`` (its warnings kept off the console)."""
    with captured_native_stderr():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ())


def expand_input_folders(inputs: list[str]) -> list[str]:
    """Inputs with each folder that holds image files but no DICOM series replaced by those files.

    ``onfh segment scans/`` on a folder of NIfTI files then segments each of them; a
    folder of DICOM slices stays one input (one series, one case).
    """
    expanded: list[str] = []
    for item in inputs:
        path = Path(item)
        files = image_files_in(path) if path.is_dir() else []
        if files and not dicom_series_ids(path):
            expanded.extend(str(f) for f in files)
        else:
            expanded.append(item)
    return expanded


def dicom_series_files(folder: str | os.PathLike, series_uid: str | None = None) -> tuple[str, list[str]]:
    """The chosen series' UID and its files, in the order GDCM reads them.

    The one place that picks a folder's series (``series_uid``, else the only one), so the
    image and the DICOM SEG's source instances always come from the same files.

    Raises:
        OnfhError: no series, several without ``series_uid``, or no series ``series_uid``.
    """
    folder = Path(folder)
    series = dicom_series_ids(folder)
    if not series:
        files = image_files_in(folder)
        if files:
            shown = ", ".join(f.name for f in files[:3]) + (", ..." if len(files) > 3 else "")
            raise OnfhError(
                f"{folder}: folder holds no DICOM series but {len(files)} image file(s) ({shown}); "
                "give the files themselves"
            )
        raise OnfhError(f"{folder}: folder holds no DICOM series")
    if series_uid is None:
        if len(series) > 1:
            names = ", ".join(series)
            raise OnfhError(f"{folder}: folder holds {len(series)} DICOM series ({names}); choose one")
        series_uid = series[0]
    elif series_uid not in series:
        raise OnfhError(f"{folder}: no DICOM series {series_uid} (found: {', '.join(series)})")
    with captured_native_stderr():
        return series_uid, list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    series_uid, names = dicom_series_files(folder, series_uid)
    if number_of_frames(names[0]) > 1:
        # The series reader would stack each file's frames into a 4D image.
        if len(names) == 1:
            return read_multiframe_image(names[0])
        raise OnfhError(
            f"{folder}: DICOM series {series_uid} is {len(names)} multi-frame files; onfh reads one "
            "multi-frame (Enhanced MR) file as one 3D image: give the file of the series to segment"
        )
    first, _ = read_image_file(names[0])
    require_voxel_count((*first.GetSize()[:2], len(names)), first.GetNumberOfComponentsPerPixel(), folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    reader.MetaDataDictionaryArrayUpdateOn()  # each slice's position, for the gap check
    failure: RuntimeError | None = None
    with captured_native_stderr() as console:
        try:
            image = reader.Execute()
        except RuntimeError as error:
            failure = error
    if failure is not None:
        reason = _read_failure_text(str(failure), console.text)
        raise OnfhError(f"{folder}: DICOM series {series_uid} could not be read: {reason}")
    image = require_3d_scalar(image, folder)  # before the gap check, which needs a 3D grid
    gap = largest_slice_gap(reader, image)
    if gap is not None:
        # GDCM leaves out files it cannot parse (a truncated copy, for one): the volume would
        # be stretched over the gap silently.
        raise OnfhError(
            f"{folder}: DICOM series {series_uid} has missing slices (a {gap[0]:.2f} mm gap where "
            f"slices lie {gap[1]:.2f} mm apart; {len(names)} files readable); "
            "check that every file was copied completely"
        )
    return image


def largest_slice_gap(reader: sitk.ImageSeriesReader, image: sitk.Image) -> tuple[float, float] | None:
    """``(largest, usual)`` distance between neighbouring slices when the largest is 1.5 times
    the usual one (a slice is missing), else ``None``; from each slice's ImagePositionPatient."""
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    depths = []
    for index in range(image.GetDepth()):
        if not reader.HasMetaDataKey(index, "0020|0032"):
            return None
        try:
            position = [float(v) for v in reader.GetMetaData(index, "0020|0032").split("\\")]
        except ValueError:
            return None
        depths.append(float(np.dot(position, normal)))
    steps = np.diff(np.sort(depths))
    if steps.size < 2:
        return None
    usual = float(np.median(steps))
    return (float(steps.max()), usual) if usual > 0 and steps.max() > 1.5 * usual else None


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
        thick = sum(1 for extent in image.GetSize() if extent >= 2)  # a single DICOM slice: 2D
        raise OnfhError(
            f"{path}: expected a 3D image, got size {image.GetSize()}, i.e. {thick}D (one voxel thick)"
        )
    return image


def require_usable_intensities(array: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse images no model can segment: NaN/Inf voxels, all zero or constant.

    An image that is NaN throughout is named as such (it is not "constant").
    """
    finite = np.isfinite(array)
    if array.size and not finite.any():
        raise OnfhError(f"{path}: image holds no numbers (every voxel is NaN or infinite)")
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise OnfhError(f"{path}: image contains NaN or infinite values ({bad:,} voxels)")
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
