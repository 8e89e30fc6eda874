"""Segmentation files: Slicer ``.seg.nrrd`` and plain label maps, read and written.

Reading finds the femoral head and necrosis segments by terminology code, else by name,
in any layout Slicer writes (one shared layer or overlapping layers, any label values).
Writing produces a ``.seg.nrrd`` that Slicer opens as a segmentation with our names,
colours and terminology, on the input image's exact grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.dicom_seg import read_dicom_seg
from onfh.dicom_volume import is_dicom_file
from onfh.errors import OnfhError
from onfh.imageio import read_image_file, require_3d_scalar, write_image_atomic
from onfh.labels import NECROSIS, SEGMENTS, classify_segment


@dataclass
class Segmentation:
    """Femoral head and necrosis masks of one hip, on one grid.

    ``head_mask`` is the whole femoral head (head ∪ necrosis); arrays are (z, y, x) as
    SimpleITK returns them; ``image`` is the equivalent 0/1/2 label image with the
    file's geometry.
    """

    head_mask: np.ndarray
    necrosis_mask: np.ndarray
    image: sitk.Image
    source: str
    segment_names: dict[str, list[str]] = field(default_factory=dict)
    resampled: bool = False

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(self.image.GetSpacing())


def _segment_fields(metadata: dict[str, str]) -> list[dict[str, str]]:
    segments = []
    index = 0
    while f"Segment{index}_ID" in metadata or f"Segment{index}_Name" in metadata:
        prefix = f"Segment{index}_"
        segments.append({k[len(prefix) :]: v for k, v in metadata.items() if k.startswith(prefix)})
        index += 1
    return segments


def _terminology(tags: str) -> str:
    for tag in tags.split("|"):
        key, _, value = tag.partition(":")
        if key == "TerminologyEntry":
            return value
    return ""


def label_image_of(head: np.ndarray, necrosis: np.ndarray, geometry: sitk.Image) -> sitk.Image:
    """The 0/1/2 label image of (z, y, x) masks, with ``geometry``'s grid."""
    labels = head.astype(np.uint8)
    labels[necrosis] = NECROSIS
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(geometry)
    return image


def read_segmentation(path: str | os.PathLike, reference: sitk.Image | None = None) -> Segmentation:
    """Read a ``.seg.nrrd``, a DICOM SEG or a label file into head and necrosis masks.

    Args:
        path: Slicer segmentation (``.seg.nrrd``), DICOM Segmentation (``.dcm``, or any
            file with the DICOM preamble) or label map (0/1/2) in NIfTI/NRRD/MHA.
        reference: optional image whose grid the masks are resampled onto (nearest
            neighbour) when the file's grid differs.

    Raises:
        OnfhError: missing or unreadable file, not 3D, no femoral head segment, or label
            values other than 0, 1, 2 in a label file.
    """
    p = Path(path)
    if p.is_dir():
        raise OnfhError(f"{p}: is a folder; expected a .seg.nrrd, DICOM SEG or label file")
    if not p.exists():
        raise OnfhError(f"{p}: no such file")
    if is_dicom_file(p):
        result = read_dicom_seg(p)
    else:
        image, metadata = read_image_file(p)
        segments = _segment_fields(metadata)
        result = _from_slicer_segments(p, image, segments) if segments else _from_label_map(p, image)
    if reference is not None and not same_grid(result.image, reference):
        require_overlap(result.image, reference, p)
        had_head = bool(result.head_mask.any())
        result = _resampled(result, reference)
        if had_head and not result.head_mask.any():
            raise OnfhError(
                f"{p}: its femoral head lies outside the reference image's grid; "
                "check that both files belong to the same MRI"
            )
    return result


def require_overlap(image: sitk.Image, reference: sitk.Image, path: str | os.PathLike) -> None:
    """Refuse a segmentation whose grid and the reference image's grid share no space.

    Resampling one onto the other would give an empty head and a confident "no grade".
    """
    from onfh.preprocessing import physical_bounds

    low_a, high_a = physical_bounds(image)
    low_b, high_b = physical_bounds(reference)
    if np.any(np.minimum(high_a, high_b) <= np.maximum(low_a, low_b)):
        raise OnfhError(
            f"{path}: the segmentation and the reference image do not overlap in space "
            "(different scans or coordinate systems?)"
        )


def _layers(path: Path, image: sitk.Image) -> tuple[np.ndarray, sitk.Image]:
    """Array (layers, z, y, x) and a scalar geometry image of a (multi-layer) seg.nrrd."""
    if image.GetDimension() == 4:
        # Slicer writes multi-layer segmentations as 4D with a "list" axis; SimpleITK may read
        # that as a 4th dimension rather than components.
        array = sitk.GetArrayFromImage(image)  # (layers, z, y, x)
        geometry = image[:, :, :, 0]
        return array, geometry
    geometry = sitk.VectorIndexSelectionCast(image, 0) if image.GetNumberOfComponentsPerPixel() > 1 else image
    geometry = require_3d_scalar(geometry, path)
    array = sitk.GetArrayFromImage(image)
    array = np.moveaxis(array, -1, 0) if image.GetNumberOfComponentsPerPixel() > 1 else array[np.newaxis]
    return array, geometry


def _from_slicer_segments(path: Path, image: sitk.Image, segments: list[dict[str, str]]) -> Segmentation:
    layers, geometry = _layers(path, image)
    head = np.zeros(layers.shape[1:], dtype=bool)
    necrosis = np.zeros(layers.shape[1:], dtype=bool)
    names: dict[str, list[str]] = {"femoral_head": [], "necrosis": [], "other": []}
    for segment in segments:
        name = segment.get("Name", segment.get("ID", ""))
        kind = classify_segment(name, _terminology(segment.get("Tags", "")))
        names[kind or "other"].append(name)
        if kind is None:
            continue
        layer = int(segment.get("Layer", "0"))
        value = int(segment.get("LabelValue", "1"))
        if not 0 <= layer < layers.shape[0]:
            raise OnfhError(f"{path}: segment {name!r} refers to missing layer {layer}")
        target = head if kind == "femoral_head" else necrosis
        target |= layers[layer] == value
    if not names["femoral_head"]:
        found = ", ".join(repr(n) for n in names["necrosis"] + names["other"]) or "none"
        raise OnfhError(f"{path}: no femoral head segment (segments found: {found})")
    head |= necrosis
    return Segmentation(head, necrosis, label_image_of(head, necrosis, geometry), "seg.nrrd", names)


def _from_label_map(path: Path, image: sitk.Image) -> Segmentation:
    image = require_3d_scalar(image, path)
    array = sitk.GetArrayFromImage(image)
    if not np.isfinite(array).all():  # float label maps: NaN is no label, and compares unequal
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise OnfhError(f"{path}: label values must be 0, 1, 2; found NaN or infinite ({bad:,} voxels)")
    values = np.unique(array)
    unexpected = [v for v in values.tolist() if v not in (0, 1, 2)]
    if unexpected:
        shown = ", ".join(f"{v:g}" for v in unexpected[:5])
        raise OnfhError(f"{path}: label values must be 0, 1, 2 (background, head, necrosis); found {shown}")
    necrosis = array == 2
    head = (array == 1) | necrosis
    names = {"femoral_head": ["label 1"], "necrosis": ["label 2"], "other": []}
    return Segmentation(head, necrosis, label_image_of(head, necrosis, image), "label map", names)


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)
    )


def _resampled(segmentation: Segmentation, reference: sitk.Image) -> Segmentation:
    labels = sitk.Resample(
        segmentation.image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )
    array = sitk.GetArrayFromImage(labels)
    necrosis = array == NECROSIS
    head = (array > 0) | necrosis
    return Segmentation(
        head, necrosis, labels, segmentation.source, segmentation.segment_names, resampled=True
    )


def _extent(mask: np.ndarray) -> str:
    """Slicer's ``SegmentN_Extent`` (x0 x1 y0 y1 z0 z1) of a (z, y, x) mask; empty -> 0 -1 ..."""
    if not mask.any():
        return "0 -1 0 -1 0 -1"
    bounds = []
    for axis in (2, 1, 0):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        bounds += [int(hits[0]), int(hits[-1])]
    return " ".join(str(b) for b in bounds)


def write_seg_nrrd(
    label_image: sitk.Image, path: str | os.PathLike, tags: dict[str, str] | None = None
) -> None:
    """Write a 0/1/2 label image as a Slicer ``.seg.nrrd`` with our two segments.

    One shared layer: label 1 "Femoral head" (head without necrosis) and label 2
    "Necrosis"; the grading takes the head as their union. ``tags`` (e.g. model id and
    sha256) are added to both segments' tags. Written atomically.
    """
    labels = sitk.Cast(require_3d_scalar(label_image, path), sitk.sitkUInt8)
    array = sitk.GetArrayViewFromImage(labels)
    for index, spec in enumerate(SEGMENTS):
        prefix = f"Segment{index}_"
        segment_tags = {"TerminologyEntry": spec.terminology_entry, **(tags or {})}
        labels.SetMetaData(prefix + "ID", spec.key)
        labels.SetMetaData(prefix + "Name", spec.name)
        labels.SetMetaData(prefix + "NameAutoGenerated", "0")
        labels.SetMetaData(prefix + "Color", " ".join(f"{c:g}" for c in spec.color_rgb))
        labels.SetMetaData(prefix + "ColorAutoGenerated", "0")
        labels.SetMetaData(prefix + "LabelValue", str(spec.label_value))
        labels.SetMetaData(prefix + "Layer", "0")
        labels.SetMetaData(prefix + "Extent", _extent(array == spec.label_value))
        labels.SetMetaData(prefix + "Tags", "".join(f"{k}:{v}|" for k, v in segment_tags.items()))
    labels.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    labels.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    labels.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    write_image_atomic(labels, path)
