"""Kerboul combined necrotic angle of a segmentation node (layer 1).

The segments' binary labelmaps become one 0/1/2 label image in LPS patient coordinates
(Slicer's world is RAS; ITK's and DICOM's is LPS), cropped to the head's bounding box, and
``onfh.kerboul`` measures it, so the panel and ``onfh grade`` give the same angle for the
same voxels.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk

from onfh.kerboul import KerboulResult, combined_necrotic_angle
from onfh.mrml.grading import _array_and_extent, _labelmap

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _index_to_lps(image, transform_to_world: np.ndarray) -> np.ndarray:
    """4x4 map from a labelmap's (i, j, k) structured index to LPS world millimetres."""
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    lps = np.eye(4)
    lps[:3, :3] = RAS_TO_LPS
    return lps @ transform_to_world @ to_world


def _content_box(array: np.ndarray, extent) -> tuple[list[int], list[int]] | None:
    """Lowest and highest (i, j, k) structured index holding any non-zero voxel, or ``None``.

    Slices first, then rows within those slices: a head fills a few dozen of a scan's
    hundreds of slices, so the later passes are cheap (a whole 512x512x300 layer is read
    once).
    """
    # ``max`` of the unsigned labels, not ``any``: the same answer, several times faster.
    slices = np.flatnonzero(array.reshape(array.shape[0], -1).max(axis=1))
    if slices.size == 0:
        return None
    sub = array[slices[0] : slices[-1] + 1]
    rows = np.flatnonzero(sub.max(axis=(0, 2)))
    columns = np.flatnonzero(sub[:, rows[0] : rows[-1] + 1].max(axis=(0, 1)))
    low_kji = [slices[0], rows[0], columns[0]]
    high_kji = [slices[-1], rows[-1], columns[-1]]
    return (
        [int(low_kji[2 - a]) + extent[2 * a] for a in range(3)],
        [int(high_kji[2 - a]) + extent[2 * a] for a in range(3)],
    )


def segment_label_image(segmentation_node, head_id: str, necrosis_id: str | None) -> sitk.Image | None:
    """A 0/1/2 label image (LPS) of the head (head ∪ necrosis) and necrosis, or ``None`` if empty.

    Handles one shared layer or two layers of one geometry (the grading checks that), a
    linear parent transform, and extents that differ between layers. The image covers
    the layers' content only (a shared layer's other segments may widen it).
    """
    transform_node = segmentation_node.GetParentTransformNode()
    to_world = np.eye(4)
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            return None
        matrix = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(matrix)
        to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    head_image, head_value = _labelmap(segmentation_node, head_id)
    layers = [(*_array_and_extent(head_image), head_value, 1)]
    if necrosis_id and necrosis_id != head_id:
        necrosis_image, necrosis_value = _labelmap(segmentation_node, necrosis_id)
        layers.append((*_array_and_extent(necrosis_image), necrosis_value, 2))
    boxes = [_content_box(array, extent) for array, extent, _, _ in layers if array is not None]
    boxes = [box for box in boxes if box is not None]
    if not boxes:
        return None
    low = [min(box[0][a] for box in boxes) for a in range(3)]
    high = [max(box[1][a] for box in boxes) for a in range(3)]
    labels = np.zeros((high[2] - low[2] + 1, high[1] - low[1] + 1, high[0] - low[0] + 1), np.uint8)
    for array, extent, value, label in layers:
        if array is None:
            continue
        # the part of this layer inside the box, and where it goes in ``labels``
        source = tuple(
            slice(max(low[a] - extent[2 * a], 0), min(high[a], extent[2 * a + 1]) - extent[2 * a] + 1)
            for a in (2, 1, 0)
        )
        target = tuple(
            slice(max(extent[2 * a] - low[a], 0), max(extent[2 * a] - low[a], 0) + (s.stop - s.start))
            for a, s in zip((2, 1, 0), source)
        )
        if any(s.stop <= s.start for s in source):
            continue
        labels[target][array[source] == value] = label
    if not labels.any():
        return None
    index_to_lps = _index_to_lps(head_image, to_world)
    linear = index_to_lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    image.SetOrigin([float(v) for v in (index_to_lps @ np.array([*low, 1.0]))[:3]])
    return image


def compute_kerboul(segmentation_node, head_id: str | None, necrosis_id: str | None) -> KerboulResult | None:
    """Kerboul angles of the head and necrosis segments, or ``None`` (no head, non-linear transform)."""
    if not head_id:
        return None
    image = segment_label_image(segmentation_node, head_id, necrosis_id)
    return None if image is None else combined_necrotic_angle(image)
