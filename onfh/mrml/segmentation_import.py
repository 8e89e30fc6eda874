"""Bring an ``onfh segment`` result into a Slicer scene without ever losing a user's edit.

The Segment button runs the model in a child process that writes ``<case>.seg.nrrd``;
this module loads that file into a new segmentation node next to the volume, or, when
the user agrees, refreshes the AI segments of an earlier node. A segment the user has
touched is never replaced: the Segment Editor marks edited segments "in progress"
(``vtkSlicerSegmentationsModuleLogic`` segment status) and we also keep a fingerprint
of the voxels we imported, so an edit made by a script that skipped the status still
counts. Layer 1: the scene and nodes come in as arguments, no Qt; the Qt shell turns an
``ImportDecision`` into a question.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from onfh.errors import OnfhError
from onfh.labels import SEGMENTS, classify_segment
from onfh.segfile import read_segmentation
from onfh.subprocess_runner import quality_warning

MODEL_ID_TAG = "ONFH.ModelId"
MODEL_SHA256_TAG = "ONFH.ModelSha256"
CONTENT_SHA256_TAG = "ONFH.ContentSha256"
"""Fingerprint of a segment's voxels as imported; a different value means it was edited."""
MODEL_QUALITY_TAG = "ONFH.ModelQuality"
"""The engine's verdict on the AI result it came with ("Low confidence: ..." or "Check: ..."),
kept on the segments so that ONFH Grading shows it wherever the node goes (saved scenes too)."""
TERMINOLOGY_TAG = "TerminologyEntry"
BINARY_LABELMAP = "Binary labelmap"
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a result, and its quality verdict: stored on every AI segment as tags."""

    model_id: str
    sha256: str
    quality: str = ""  # onfh.subprocess_runner.quality_warning of the report; "" when it passed


def read_model_info(report_path: str | os.PathLike) -> ModelInfo | None:
    """The ``model`` entry (``id``, ``sha256``) of an ``onfh segment`` per-case JSON report,
    with the report's quality warning (empty when its checks passed without a note).

    Returns ``None`` when the report has no model entry (e.g. a label file made by hand).

    Raises:
        OnfhError: the report is missing or not JSON.
    """
    path = Path(report_path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OnfhError(f"{path}: no such report") from None
    except ValueError as error:
        raise OnfhError(f"{path}: not a JSON report ({error})") from None
    model = report.get("model") if isinstance(report, dict) else None
    if not isinstance(model, dict) or not model.get("id"):
        return None
    return ModelInfo(str(model["id"]), str(model.get("sha256", "")), quality_warning(report) or "")


# --- volume <-> image --------------------------------------------------------------------


def _ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_geometry(volume_node, pixel_id: int = sitk.sitkUInt8) -> sitk.Image:
    """An empty SimpleITK image (LPS) on the grid of a volume node: the reference grid."""
    image_data = volume_node.GetImageData()
    if image_data is None:
        raise OnfhError(f"volume {volume_node.GetName()!r} has no image data")
    extent = image_data.GetExtent()
    size = [extent[2 * i + 1] - extent[2 * i] + 1 for i in range(3)]
    if min(size) < 1:
        raise OnfhError(f"volume {volume_node.GetName()!r} is empty (extent {extent})")
    ijk_to_ras = _ijk_to_ras(volume_node)
    linear = _LPS_FROM_RAS @ ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    origin = _LPS_FROM_RAS @ (ijk_to_ras[:3, :3] @ np.array(extent[::2], float) + ijk_to_ras[:3, 3])
    image = sitk.Image([int(s) for s in size], pixel_id)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(v) for v in (linear / spacing).ravel()])
    return image


def volume_to_image(volume_node) -> sitk.Image:
    """The volume's voxels as a SimpleITK image with its geometry in LPS (a copy).

    The volume's own parent transform is not applied: results are written on the
    volume's grid and the segmentation node goes under the same transform.

    Raises:
        OnfhError: no voxels, or a multi-component (e.g. RGB) volume.
    """
    image_data = volume_node.GetImageData()
    scalars = image_data.GetPointData().GetScalars() if image_data is not None else None
    if scalars is None:
        raise OnfhError(f"volume {volume_node.GetName()!r} has no voxels")
    if image_data.GetNumberOfScalarComponents() != 1:
        count = image_data.GetNumberOfScalarComponents()
        raise OnfhError(f"volume {volume_node.GetName()!r}: expected a scalar MRI, got {count} components")
    geometry = volume_geometry(volume_node)
    x, y, z = geometry.GetSize()
    image = sitk.GetImageFromArray(numpy_support.vtk_to_numpy(scalars).reshape(z, y, x).copy())
    image.CopyInformation(geometry)
    return image


def add_volume_node(scene, image: sitk.Image, name: str):
    """A new scalar volume node holding a SimpleITK image (LPS), the inverse of ``volume_to_image``.

    Lets a shell load what ``onfh.imageio.read_image`` read (files and DICOM series, with
    the CLI's checks and one-line errors) without a second reader.
    """
    array = sitk.GetArrayFromImage(image)
    z, y, x = array.shape
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(x, y, z)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    linear = _LPS_FROM_RAS @ direction @ np.diag(image.GetSpacing())
    matrix = vtk.vtkMatrix4x4()
    origin = _LPS_FROM_RAS @ np.array(image.GetOrigin(), float)
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, float(linear[r, c]))
        matrix.SetElement(r, 3, float(origin[r]))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveImageData(image_data)
    node.CreateDefaultDisplayNodes()
    return node


def _mask_to_oriented_image(mask_zyx: np.ndarray, volume_node):
    z, y, x = mask_zyx.shape
    oriented = slicer.vtkOrientedImageData()
    extent = volume_node.GetImageData().GetExtent()
    oriented.SetExtent(
        extent[0], extent[0] + x - 1, extent[2], extent[2] + y - 1, extent[4], extent[4] + z - 1
    )
    oriented.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    oriented.SetImageToWorldMatrix(matrix)
    numpy_support.vtk_to_numpy(oriented.GetPointData().GetScalars())[:] = mask_zyx.astype(np.uint8).ravel()
    return oriented


# --- segments: tags, status, fingerprint --------------------------------------------------


def segment_tag(segment, name: str) -> str:
    """A ``vtkSegment`` tag's value, ``""`` when unset."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else ""


def segment_fingerprint(segmentation_node, segment_id: str) -> str:
    """sha256 of a segment's voxels: bounding box (absolute IJK) and the mask inside it.

    Independent of layer sharing, label value and padding, so it changes only when the
    set of voxels changes.
    """
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    image = segment.GetRepresentation(BINARY_LABELMAP) if segment is not None else None
    digest = hashlib.sha256()
    scalars = image.GetPointData().GetScalars() if image is not None else None
    extent = image.GetExtent() if image is not None else (0, -1, 0, -1, 0, -1)
    if scalars is None or any(extent[2 * i] > extent[2 * i + 1] for i in range(3)):
        return digest.hexdigest()
    shape = tuple(extent[2 * i + 1] - extent[2 * i] + 1 for i in (2, 1, 0))
    mask = numpy_support.vtk_to_numpy(scalars).reshape(shape) == segment.GetLabelValue()
    if not mask.any():
        return digest.hexdigest()
    hits = np.nonzero(mask)
    low = [int(h.min()) for h in hits]
    high = [int(h.max()) + 1 for h in hits]
    box = mask[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    start = (low[2] + extent[0], low[1] + extent[2], low[0] + extent[4])
    digest.update(json.dumps([start, list(box.shape)]).encode())
    digest.update(np.packbits(box).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class SegmentState:
    """One segment of an existing node, as the never-overwrite rules see it."""

    segment_id: str
    name: str
    kind: str | None  # "femoral_head", "necrosis" or None
    status: str  # machine-readable: notstarted, inprogress, completed, flagged
    from_model: bool  # imported by us from an ``onfh segment`` result
    changed_since_import: bool

    @property
    def replaceable(self) -> bool:
        """Only an AI segment nobody has touched or reviewed may be replaced."""
        return self.from_model and self.status == "notstarted" and not self.changed_since_import


def segment_states(segmentation_node) -> list[SegmentState]:
    """The state of every segment of a node, in segment order."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segmentation = segmentation_node.GetSegmentation()
    states = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        status = logic.GetSegmentStatusAsMachineReadableString(logic.GetSegmentStatus(segment))
        imported = segment_tag(segment, CONTENT_SHA256_TAG)
        changed = bool(imported) and imported != segment_fingerprint(segmentation_node, segment_id)
        states.append(
            SegmentState(
                segment_id,
                segment.GetName() or "",
                classify_segment(segment.GetName() or "", segment_tag(segment, TERMINOLOGY_TAG)),
                status,
                bool(imported),
                changed,
            )
        )
    return states


# --- the decision --------------------------------------------------------------------------


class ImportChoice(Enum):
    """What to do with a result when the volume already has a segmentation."""

    NEW_NODE = "new"
    UPDATE_UNEDITED = "update"
    CANCEL = "cancel"

    @property
    def label(self) -> str:
        """The button text offered for this choice."""
        return {
            "new": "Create new segmentation",
            "update": "Update unedited AI segments",
            "cancel": "Discard result",
        }[self.value]


@dataclass(frozen=True)
class ImportDecision:
    """What importing a result for a volume would do; the Qt layer asks when needed."""

    volume_name: str
    new_node_name: str
    existing_node_id: str | None = None
    existing_node_name: str = ""
    replaceable: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    choices: tuple[ImportChoice, ...] = field(default=(ImportChoice.NEW_NODE,))

    @property
    def needs_question(self) -> bool:
        """True when an existing node could be affected: never decide that silently."""
        return self.existing_node_id is not None

    def question(self) -> str:
        """The question for the user, naming what would be kept and what replaced."""
        if not self.needs_question:
            return ""
        lines = [f"'{self.volume_name}' already has a segmentation, '{self.existing_node_name}'."]
        if self.protected:
            lines.append("Edited or reviewed segments are never replaced: " + ", ".join(self.protected) + ".")
        if self.replaceable:
            lines.append("Unedited AI segments that could be updated: " + ", ".join(self.replaceable) + ".")
        lines.append(f"Create a new segmentation '{self.new_node_name}' instead?")
        return "\n".join(lines)


def segmentations_of_volume(scene, volume_node) -> list:
    """Segmentation nodes whose reference geometry is ``volume_node``, in scene order."""
    nodes = []
    collection = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for index in range(collection.GetNumberOfItems()):
        node = collection.GetItemAsObject(index)
        role = node.GetReferenceImageGeometryReferenceRole()
        if node.GetNodeReferenceID(role) == volume_node.GetID():
            nodes.append(node)
    return nodes


def plan_import(scene, volume_node) -> ImportDecision:
    """Decide how a new result for ``volume_node`` would enter the scene.

    The default is always a new node named after the volume. When the volume already
    has a segmentation (the latest one counts), the decision lists which of its segments
    are protected (edited, reviewed, or not ours) and which AI segments could be updated,
    and offers ``UPDATE_UNEDITED`` only if at least one is.
    """
    name = scene.GenerateUniqueName(f"{volume_node.GetName()} segmentation")
    existing = segmentations_of_volume(scene, volume_node)
    if not existing:
        return ImportDecision(volume_node.GetName(), name)
    node = existing[-1]
    states = segment_states(node)
    replaceable = tuple(s.name for s in states if s.replaceable and s.kind)
    protected = tuple(s.name for s in states if not s.replaceable)
    choices = (ImportChoice.NEW_NODE, ImportChoice.CANCEL)
    if replaceable:
        choices = (ImportChoice.NEW_NODE, ImportChoice.UPDATE_UNEDITED, ImportChoice.CANCEL)
    return ImportDecision(
        volume_node.GetName(), name, node.GetID(), node.GetName(), replaceable, protected, choices
    )


# --- the import ----------------------------------------------------------------------------


@dataclass
class ImportResult:
    """The node that holds the result and what happened to each segment (by name)."""

    segmentation_node: object
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def import_segmentation(
    scene,
    volume_node,
    seg_path: str | os.PathLike,
    model: ModelInfo | None,
    decision: ImportDecision,
    choice: ImportChoice = ImportChoice.NEW_NODE,
    show_3d: bool = True,
) -> ImportResult | None:
    """Load an ``onfh segment`` result (``.seg.nrrd`` or label file) for ``volume_node``.

    Args:
        scene: the MRML scene.
        volume_node: the volume that was segmented; the result is resampled onto its grid
            if the file's grid differs.
        seg_path: the result file.
        model: the model that made it (stored as segment tags), or ``None``.
        decision: from ``plan_import`` just before (re-checked here).
        choice: ``NEW_NODE`` (always safe), ``UPDATE_UNEDITED`` (only segments that are
            still replaceable are touched) or ``CANCEL`` (nothing happens, returns None).
        show_3d: also build the closed-surface representation for the 3D view.

    Raises:
        OnfhError: unreadable result, or a choice the decision did not offer.
    """
    if choice == ImportChoice.CANCEL:
        return None
    if choice not in decision.choices:
        raise OnfhError(f"cannot {choice.value}: offered choices are {[c.value for c in decision.choices]}")
    result = read_segmentation(seg_path, reference=volume_geometry(volume_node))
    masks = {
        "femoral_head": result.head_mask & ~result.necrosis_mask,  # exclusive, like the editor
        "necrosis": result.necrosis_mask,
    }
    if choice == ImportChoice.UPDATE_UNEDITED:
        node = scene.GetNodeByID(decision.existing_node_id)
        if node is None:
            raise OnfhError(f"segmentation {decision.existing_node_name!r} is no longer in the scene")
        outcome = ImportResult(node)
        states = {s.kind: s for s in segment_states(node) if s.kind}
    else:
        node = _new_segmentation_node(scene, volume_node, decision.new_node_name)
        outcome = ImportResult(node)
        states = {}
    for spec in SEGMENTS:
        state = states.get(spec.key)
        if state is not None and not state.replaceable:
            outcome.kept.append(state.name)
            continue
        if state is None:
            segment_id = node.GetSegmentation().AddEmptySegment(spec.key, spec.name, list(spec.color_rgb))
            outcome.added.append(spec.name)
        else:
            segment_id = state.segment_id
            outcome.replaced.append(state.name)
        _set_segment(node, segment_id, masks[spec.key], volume_node, spec, model)
    if show_3d:
        node.CreateClosedSurfaceRepresentation()
    return outcome


def _new_segmentation_node(scene, volume_node, name: str):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    display = node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2D(True)
    display.SetVisibility3D(True)
    place_next_to(scene, node, volume_node)
    return node


def place_next_to(scene, node, neighbour) -> None:
    """Put ``node`` under the same subject-hierarchy parent as ``neighbour`` (same study)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    neighbour_item = hierarchy.GetItemByDataNode(neighbour)
    parent = hierarchy.GetItemParent(neighbour_item) if neighbour_item else hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)


def _set_segment(node, segment_id: str, mask_zyx: np.ndarray, volume_node, spec, model) -> None:
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segment = node.GetSegmentation().GetSegment(segment_id)
    segment.SetName(spec.name)
    segment.SetColor(*spec.color_rgb)
    segment.SetTag(TERMINOLOGY_TAG, spec.terminology_entry)
    labelmap = _mask_to_oriented_image(mask_zyx, volume_node)
    if not logic.SetBinaryLabelmapToSegment(labelmap, node, segment_id, logic.MODE_REPLACE):
        raise OnfhError(f"could not set the voxels of segment {spec.name!r}")
    if model is not None:
        segment.SetTag(MODEL_ID_TAG, model.model_id)
        segment.SetTag(MODEL_SHA256_TAG, model.sha256)
    else:
        segment.RemoveTag(MODEL_ID_TAG)
        segment.RemoveTag(MODEL_SHA256_TAG)
    if model is not None and model.quality:
        segment.SetTag(MODEL_QUALITY_TAG, model.quality)
    else:
        segment.RemoveTag(MODEL_QUALITY_TAG)
    segment.SetTag(CONTENT_SHA256_TAG, segment_fingerprint(node, segment_id))
    logic.SetSegmentStatus(segment, logic.NotStarted)
