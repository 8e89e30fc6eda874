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


def _place(array: np.ndarray, extent, value: int, target: np.ndarray, target_low, label: int) -> None:
    """Write ``label`` into ``target`` where ``array == value`` (extents in i, j, k order)."""
    offset = [extent[2 * axis] - target_low[axis] for axis in range(3)]
    window = target[
        offset[2] : offset[2] + array.shape[0],
        offset[1] : offset[1] + array.shape[1],
        offset[0] : offset[0] + array.shape[2],
    ]
    window[array == value] = label


def segment_label_image(segmentation_node, head_id: str, necrosis_id: str | None) -> sitk.Image | None:
    """A 0/1/2 label image (LPS) of the head (head ∪ necrosis) and necrosis, or ``None`` if empty.

    Handles one shared layer or two layers of one geometry (the grading checks that), a
    linear parent transform, and extents that differ between layers.
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
    layers = [layer for layer in layers if layer[0] is not None]
    if not layers:
        return None
    low = [min(layer[1][2 * a] for layer in layers) for a in range(3)]
    high = [max(layer[1][2 * a + 1] for layer in layers) for a in range(3)]
    labels = np.zeros((high[2] - low[2] + 1, high[1] - low[1] + 1, high[0] - low[0] + 1), np.uint8)
    for array, extent, value, label in layers:
        _place(array, extent, value, labels, low, label)
    if not labels.any():
        return None
    box = [np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    crop = tuple(slice(int(b[0]), int(b[-1]) + 1) for b in box)
    index_to_lps = _index_to_lps(head_image, to_world)
    start_ijk = np.array([low[0] + crop[2].start, low[1] + crop[1].start, low[2] + crop[0].start, 1.0])
    linear = index_to_lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels[crop]))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    image.SetOrigin([float(v) for v in (index_to_lps @ start_ijk)[:3]])
    return image


def compute_kerboul(segmentation_node, head_id: str | None, necrosis_id: str | None) -> KerboulResult | None:
    """Kerboul angles of the head and necrosis segments, or ``None`` (no head, non-linear transform)."""
    if not head_id:
        return None
    image = segment_label_image(segmentation_node, head_id, necrosis_id)
    return None if image is None else combined_necrotic_angle(image)
