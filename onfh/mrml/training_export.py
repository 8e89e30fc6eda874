""" "Add to training set": a corrected segmentation and its volume become a training case.

Annotators pre-segment with the model, correct in the Segment Editor and feed the result
back for ``onfh train --init-from``. The case is written in the ``imagesTr/labelsTr/
dataset.json`` layout through ``onfh.dataset.add_case``, which never overwrites a case.
Labels follow the file convention (ARCHITECTURE.md section 4): 1 femoral head without
necrosis, 2 necrosis, with the head taken as head ∪ necrosis, so necrosis wins where the
two segments overlap. Layer 1: scene and nodes in, no Qt.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from onfh.dataset import CaseFiles, add_case, case_paths
from onfh.errors import OnfhError
from onfh.labels import HEAD_WITHOUT_NECROSIS, NECROSIS
from onfh.mrml.grading import find_grading_segments
from onfh.mrml.segmentation_import import volume_to_image


@dataclass(frozen=True)
class CaseIdPlan:
    """The case id proposed for a volume, and whether a case by that name already exists."""

    case_id: str
    exists: bool
    free_alternative: str


def case_id_from_name(name: str) -> str:
    """A valid dataset case id from a node name (letters, digits, ``_ - .``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")
    return cleaned or "case"


def _case_exists(root: Path, case_id: str) -> bool:
    files = case_paths(root, case_id)
    return files.image_path.exists() or files.label_path.exists()


def plan_case_id(dataset_root: str | os.PathLike, volume_node) -> CaseIdPlan:
    """Propose the volume's name as case id; if taken, also the first free ``<id>_<n>``.

    The Qt layer asks before using the alternative: exporting the same hip twice would
    put it in two cross-validation folds.
    """
    root = Path(dataset_root)
    case_id = case_id_from_name(volume_node.GetName() or "")
    exists = _case_exists(root, case_id)
    alternative = case_id
    number = 2
    while _case_exists(root, alternative):
        alternative = f"{case_id}_{number}"
        number += 1
    return CaseIdPlan(case_id, exists, alternative)


def _node_ids(scene) -> list[str]:
    """IDs of every node in the scene, in scene order."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def labels_on_volume_grid(scene, segmentation_node, volume_node) -> np.ndarray:
    """The 0/1/2 label array (z, y, x) of a segmentation on the volume's voxel grid.

    Uses Slicer's own export (which follows transforms and resamples segments stored on
    another grid) with the femoral head first and necrosis second, so necrosis wins where
    they overlap and necrosis drawn outside the head still counts as head ∪ necrosis.

    Raises:
        OnfhError: no femoral head segment, an empty one, or the export failed.
    """
    found = find_grading_segments(segmentation_node)
    name = segmentation_node.GetName()
    if not found["femoral_head"]:
        raise OnfhError(f"segmentation {name!r} has no 'Femoral head' segment; nothing to export")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(found["femoral_head"])
    if found["necrosis"]:
        ids.InsertNextValue(found["necrosis"])
    before = _node_ids(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "onfh training export")
    try:
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, volume_node):
            target = volume_node.GetName()
            raise OnfhError(f"segmentation {name!r}: could not export segments onto {target!r}")
        image_data = labelmap.GetImageData()
        x, y, z = image_data.GetDimensions()
        exported = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(z, y, x)
        labels = np.zeros(exported.shape, dtype=np.uint8)
        labels[exported == 1] = HEAD_WITHOUT_NECROSIS
        labels[exported == 2] = NECROSIS
    finally:
        # Without a colour table the export adds a "<name>_ColorTable" node and a display
        # node (ExportSegmentsToLabelmapNode in Modules/Loadable/Segmentations/Logic/
        # vtkSlicerSegmentationsModuleLogic.cxx); remove all it added, newest first.
        for node_id in reversed(_node_ids(scene)):
            if node_id not in before:
                node = scene.GetNodeByID(node_id)
                if node is not None:
                    scene.RemoveNode(node)
    if not labels.any():
        raise OnfhError(f"segmentation {name!r}: the femoral head segment is empty; nothing to export")
    return labels


def export_training_case(
    scene,
    segmentation_node,
    volume_node,
    dataset_root: str | os.PathLike,
    case_id: str | None = None,
    description: str = "",
) -> CaseFiles:
    """Write the volume and its (corrected) segmentation as one new training case.

    Args:
        scene: the MRML scene (a temporary labelmap node is added and removed).
        segmentation_node: holds "Femoral head" and, usually, "Necrosis".
        volume_node: the MRI; the label is written on its grid.
        dataset_root: dataset folder; created if missing.
        case_id: defaults to the volume's name (``case_id_from_name``).
        description: stored in ``dataset.json`` (kept if already set).

    Returns:
        The written case's id and file paths; ``dataset.json`` lists it.

    Raises:
        OnfhError: the case exists (never overwritten), no/empty head segment, or a
            volume that cannot be written.
    """
    root = Path(dataset_root)
    case_id = case_id or case_id_from_name(volume_node.GetName() or "")
    if _case_exists(root, case_id):
        raise OnfhError(f"{root}: case {case_id!r} already exists; not overwriting it")
    image = volume_to_image(volume_node)
    labels = labels_on_volume_grid(scene, segmentation_node, volume_node)
    if labels.shape != sitk.GetArrayViewFromImage(image).shape:
        raise OnfhError(f"label grid {labels.shape} does not match volume grid {image.GetSize()[::-1]}")
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return add_case(root, case_id, image, label_image, description=description)
