"""Live grading of a segmentation node: masks from MRML, recompute on every edit.

The Qt widget plugs a single-shot ``qt.QTimer`` in as the scheduler; pytest plugs in a
plain function. Everything else (finding segments, counting voxels in world units,
observing edits) lives here so it is tested on real MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from onfh.grading import GradeResult, count_label_values, count_pair, grade_from_voxel_counts
from onfh.labels import classify_segment

BINARY_LABELMAP = "Binary labelmap"
# vtkSegmentation events a segment edit can fire (the node re-invokes all of them; see
# Libs/MRML/Core/vtkMRMLSegmentationNode.cxx). Voxel edits fire only SourceRepresentation-
# Modified; "Clear selected segment" (vtkSlicerSegmentationsModuleLogic::ClearSegment in
# Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.cxx) fires only
# RepresentationModified; undo (vtkSegmentationHistory::RestoreState) may add, copy,
# remove and reorder segments; segment order decides the automatic choice.
SEGMENTATION_EVENTS = (
    "SegmentAdded",
    "SegmentRemoved",
    "SegmentModified",
    "SourceRepresentationModified",
    "RepresentationModified",
    "ContainedRepresentationNamesModified",
    "SegmentsOrderModified",
)


def segment_terminology(segment) -> str:
    """The ``TerminologyEntry`` tag of a ``vtkSegment`` (empty if unset)."""
    value = vtk.reference("")
    return str(value) if segment.GetTag("TerminologyEntry", value) else ""


def find_grading_segments(segmentation_node) -> dict[str, str | None]:
    """Segment IDs of the femoral head and the necrosis, by terminology code then name.

    Returns ``{"femoral_head": id or None, "necrosis": id or None}``; the first matching
    segment wins, in segment order.
    """
    segmentation = segmentation_node.GetSegmentation()
    found: dict[str, str | None] = {"femoral_head": None, "necrosis": None}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        kind = classify_segment(segment.GetName() or "", segment_terminology(segment))
        if kind and found[kind] is None:
            found[kind] = segmentation.GetNthSegmentID(index)
    return found


def resolve_segment_choice(
    chosen_head: str | None,
    chosen_necrosis: str | None,
    segment_ids: list[str],
    automatic: dict[str, str | None],
) -> tuple[str | None, str | None]:
    """The segments to grade: the user's choice where it still holds, else the automatic one.

    A chosen id that is no longer in the segmentation (removed, or removed and drawn again,
    which gives a new id) means "automatic", and so do two equal choices: one segment
    cannot be both the head and the lesion, and Slicer's segment selector jumps to the
    first segment on its own when its segment is removed (populateSegmentCombobox in
    Libs/MRML/Widgets/qMRMLSegmentSelectorWidget.cxx), which pins such a pair.

    Args:
        chosen_head, chosen_necrosis: segment ids the user picked, ``None`` for automatic.
        segment_ids: ids of the segments the segmentation holds now.
        automatic: ``find_grading_segments`` of the segmentation.

    Returns:
        ``(head_id, necrosis_id)``; an automatic pick equal to the other side is dropped.
    """
    present = set(segment_ids)
    clash = bool(chosen_head) and chosen_head == chosen_necrosis

    def keep(chosen: str | None) -> str | None:
        return chosen if chosen and not clash and chosen in present else None

    head, necrosis = keep(chosen_head), keep(chosen_necrosis)
    head_id = head or automatic.get("femoral_head")
    necrosis_id = necrosis or automatic.get("necrosis")
    if head_id is not None and head_id == necrosis_id:
        if necrosis is None:
            necrosis_id = None
        else:
            head_id = None
    return head_id, necrosis_id


def _world_volume_scale(segmentation_node) -> float:
    """Factor from voxel volume in the node's coordinates to world (RAS) volume.

    A linear parent transform scales volumes by ``|det(A)|`` of its 3x3 part.
    """
    transform_node = segmentation_node.GetParentTransformNode()
    if transform_node is None:
        return 1.0
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(matrix)
    linear = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    return abs(float(np.linalg.det(linear)))


def _labelmap(segmentation_node, segment_id: str):
    """The segment's binary labelmap (shared-layer image) and label value, without copying."""
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise ValueError(f"segmentation {segmentation_node.GetName()!r} has no segment {segment_id!r}")
    if segmentation.GetSourceRepresentationName() != BINARY_LABELMAP:
        segmentation_node.CreateBinaryLabelmapRepresentation()
    image = segment.GetRepresentation(BINARY_LABELMAP)
    return image, int(segment.GetLabelValue())


def _array_and_extent(image) -> tuple[np.ndarray | None, tuple[int, ...]]:
    extent = tuple(image.GetExtent())
    if image.GetPointData().GetScalars() is None or any(extent[2 * i] > extent[2 * i + 1] for i in range(3)):
        return None, extent
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape), extent


def _count(array: np.ndarray | None, value: int) -> int:
    return 0 if array is None else count_label_values(array, [value])[value]


def _pair_counts(a, a_value: int, b, b_value: int) -> tuple[int, int, int]:
    """Voxel counts of two segments in different layers and of their overlap."""
    array_a, ext_a = _array_and_extent(a)
    array_b, ext_b = _array_and_extent(b)
    if array_a is None or array_b is None:
        return _count(array_a, a_value), _count(array_b, b_value), 0
    if ext_a == ext_b:
        return count_pair(array_a, a_value, array_b, b_value)
    low = [max(ext_a[2 * i], ext_b[2 * i]) for i in range(3)]
    high = [min(ext_a[2 * i + 1], ext_b[2 * i + 1]) for i in range(3)]
    overlap = 0
    if all(lo <= hi for lo, hi in zip(low, high)):

        def window(array, ext):
            return array[
                low[2] - ext[4] : high[2] - ext[4] + 1,
                low[1] - ext[2] : high[1] - ext[2] + 1,
                low[0] - ext[0] : high[0] - ext[0] + 1,
            ]

        overlap = count_pair(window(array_a, ext_a), a_value, window(array_b, ext_b), b_value)[2]
    return _count(array_a, a_value), _count(array_b, b_value), overlap


def _same_geometry(a, b) -> bool:
    ma, mb = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    a.GetImageToWorldMatrix(ma)
    b.GetImageToWorldMatrix(mb)
    return all(abs(ma.GetElement(r, c) - mb.GetElement(r, c)) < 1e-6 for r in range(4) for c in range(4))


def _voxel_volume_mm3(image) -> float:
    """Voxel volume from the image-to-world matrix (holds for non-orthonormal directions too)."""
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    linear = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    return abs(float(np.linalg.det(linear)))


def compute_grade(
    segmentation_node, head_id: str | None = None, necrosis_id: str | None = None
) -> GradeResult:
    """Volumes, ratio and grade of a segmentation node, in world units.

    Args:
        segmentation_node: ``vtkMRMLSegmentationNode`` (overlapping or exclusive segments).
        head_id: femoral head segment; found automatically when ``None``.
        necrosis_id: necrosis segment; found automatically when ``None``. A missing
            necrosis segment counts as no necrosis.

    Raises:
        ValueError: no femoral head segment, or segments on different grids.
    """
    found = find_grading_segments(segmentation_node)
    head_id = head_id or found["femoral_head"]
    necrosis_id = necrosis_id or found["necrosis"]
    if not head_id:
        raise ValueError(f"segmentation {segmentation_node.GetName()!r} has no femoral head segment")
    if (
        segmentation_node.GetParentTransformNode() is not None
        and not segmentation_node.GetParentTransformNode().IsTransformToWorldLinear()
    ):
        return _grade_hardened_copy(segmentation_node, head_id, necrosis_id)
    head_image, head_value = _labelmap(segmentation_node, head_id)
    head_array, _ = _array_and_extent(head_image)
    necrosis_voxels = overlap = 0
    if not necrosis_id or necrosis_id == head_id:
        head_voxels = _count(head_array, head_value)
    else:
        necrosis_image, necrosis_value = _labelmap(segmentation_node, necrosis_id)
        if necrosis_image is head_image:  # one shared layer: one pass, no overlap possible
            counts = (
                count_label_values(head_array, [head_value, necrosis_value]) if head_array is not None else {}
            )
            head_voxels, necrosis_voxels = counts.get(head_value, 0), counts.get(necrosis_value, 0)
        else:
            if not _same_geometry(head_image, necrosis_image):
                raise ValueError("femoral head and necrosis segments are on different grids")
            head_voxels, necrosis_voxels, overlap = _pair_counts(
                head_image, head_value, necrosis_image, necrosis_value
            )
    voxel_mm3 = _voxel_volume_mm3(head_image) * _world_volume_scale(segmentation_node)
    edge_mm = voxel_mm3 ** (1.0 / 3.0)
    return grade_from_voxel_counts(head_voxels + necrosis_voxels - overlap, necrosis_voxels, (edge_mm,) * 3)


def _grade_hardened_copy(segmentation_node, head_id: str, necrosis_id: str | None) -> GradeResult:
    """Grade a node under a non-linear transform by hardening the transform on a copy."""
    scene = segmentation_node.GetScene()
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "onfh grading copy")
    try:
        copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
        copy.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
        copy.HardenTransform()
        return compute_grade(copy, head_id, necrosis_id)
    finally:
        scene.RemoveNode(copy)


@dataclass
class GradeUpdate:
    """What the panel shows after a recompute: a result, or why there is none."""

    result: GradeResult | None
    error: str | None
    head_id: str | None
    necrosis_id: str | None
    kerboul: dict | None = None  # onfh.kerboul.KerboulResult.to_dict()
    model_quality: str | None = None  # the AI result's flag, while its head segment carries one


def model_quality_note(segmentation_node, head_id: str | None) -> str | None:
    """What the engine said about the AI result the head segment came from, if it flagged it.

    ``"AI result: Low confidence: ..."`` while the segment is as imported; once edited,
    ``"AI result was flagged (...); edited since"``: the reader has been at work on it,
    but should still know why it needed a look.
    """
    from onfh.mrml.segmentation_import import (
        CONTENT_SHA256_TAG,
        MODEL_QUALITY_TAG,
        segment_fingerprint,
        segment_tag,
    )

    segment = segmentation_node.GetSegmentation().GetSegment(head_id) if head_id else None
    flag = segment_tag(segment, MODEL_QUALITY_TAG) if segment is not None else ""
    if not flag:
        return None
    if segment_tag(segment, CONTENT_SHA256_TAG) == segment_fingerprint(segmentation_node, head_id):
        return f"AI result: {flag}"
    return f"AI result was flagged ({flag}); edited since"


class LiveGrader:
    """Recompute the grade of a segmentation node whenever its segments change.

    Every observed event calls ``schedule()``; the owner calls ``recompute()`` when its
    timer fires. With a restarting single-shot timer a burst of events (one paint stroke)
    costs one recompute after the burst.

    Args:
        segmentation_node: node to observe.
        on_update: called with a ``GradeUpdate`` after every recompute.
        schedule: requests a ``recompute()`` soon (Qt: ``QTimer.start``).
        head_id, necrosis_id: fixed segment choice; ``None`` picks automatically.
    """

    def __init__(
        self,
        segmentation_node,
        on_update: Callable[[GradeUpdate], None],
        schedule: Callable[[], None],
        head_id: str | None = None,
        necrosis_id: str | None = None,
    ) -> None:
        self.node = segmentation_node
        self.on_update = on_update
        self.schedule = schedule
        self.head_id = head_id
        self.necrosis_id = necrosis_id
        self.paused = False
        self._stale = False
        self._observers: list[tuple[object, int]] = []
        events = [getattr(slicer.vtkSegmentation, name) for name in SEGMENTATION_EVENTS]
        events.append(slicer.vtkMRMLTransformableNode.TransformModifiedEvent)
        for event in events:
            tag = segmentation_node.AddObserver(event, self._on_event)
            self._observers.append((segmentation_node, tag))

    def _on_event(self, caller, event) -> None:
        self._request()

    def _request(self) -> None:
        if self.paused:
            self._stale = True
        else:
            self.schedule()

    def pause(self) -> None:
        """Stop recomputing (the panel is hidden); edits meanwhile are remembered."""
        self.paused = True

    def resume(self) -> GradeUpdate | None:
        """Recompute at once if anything changed while paused, then follow edits again."""
        self.paused = False
        if self._stale:
            self._stale = False
            return self.recompute()
        return None

    def set_segments(self, head_id: str | None, necrosis_id: str | None) -> None:
        """Fix which segments are graded (``None``: automatic) and request a recompute."""
        self.head_id, self.necrosis_id = head_id, necrosis_id
        self._request()

    def recompute(self) -> GradeUpdate:
        """Grade now and report the result to ``on_update``."""
        segmentation = self.node.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        head_id, necrosis_id = resolve_segment_choice(
            self.head_id, self.necrosis_id, ids, find_grading_segments(self.node)
        )
        from onfh.mrml.kerboul import compute_kerboul  # it imports this module

        try:
            update = GradeUpdate(compute_grade(self.node, head_id, necrosis_id), None, head_id, necrosis_id)
            kerboul = compute_kerboul(self.node, head_id, necrosis_id)
            update.kerboul = None if kerboul is None else kerboul.to_dict()
        except ValueError as error:
            update = GradeUpdate(None, str(error), head_id, necrosis_id)
        update.model_quality = model_quality_note(self.node, head_id)
        self.on_update(update)
        return update

    def close(self) -> None:
        """Stop observing the node."""
        for obj, tag in self._observers:
            obj.RemoveObserver(tag)
        self._observers.clear()
