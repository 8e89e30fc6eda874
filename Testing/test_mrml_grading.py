"""Layer-1 live grading on a real MRML scene (slicer-core): edits change the grade."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("slicer")

from conftest import VOLUME_SHAPE_ZYX, VOLUME_SPACING_MM, set_segment_mask

from onfh.grading import grade_masks
from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT
from onfh.mrml.grade_table import append_grade_row, grade_table_row, panel_text, save_table_csv
from onfh.mrml.grading import LiveGrader, compute_grade, find_grading_segments


def ball(centre_zyx, radius_vox):
    z, y, x = np.indices(VOLUME_SHAPE_ZYX)
    cz, cy, cx = centre_zyx
    return (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius_vox**2


HEAD = ball((12, 20, 24), 10)
SMALL_LESION = HEAD & ball((12, 20, 31), 4)
LARGE_LESION = HEAD & ball((12, 20, 28), 8)


def add_segments(segmentation_node, head_name="Femoral head", necrosis_name="Necrosis"):
    segmentation = segmentation_node.GetSegmentation()
    head_id = segmentation.AddEmptySegment("", head_name)
    necrosis_id = segmentation.AddEmptySegment("", necrosis_name)
    return head_id, necrosis_id


@pytest.fixture
def graded_node(a_scene, a_volume_node, a_segmentation_node):
    head_id, necrosis_id = add_segments(a_segmentation_node)
    set_segment_mask(a_scene, a_segmentation_node, head_id, HEAD, a_volume_node)
    set_segment_mask(a_scene, a_segmentation_node, necrosis_id, SMALL_LESION, a_volume_node)
    return a_segmentation_node, head_id, necrosis_id


def test_compute_grade_matches_the_pure_function(graded_node):
    node, _, _ = graded_node
    expected = grade_masks(HEAD, SMALL_LESION, VOLUME_SPACING_MM)
    result = compute_grade(node)
    assert result.head_volume_mm3 == pytest.approx(expected.head_volume_mm3)
    assert result.necrosis_volume_mm3 == pytest.approx(expected.necrosis_volume_mm3)
    assert result.ratio == pytest.approx(expected.ratio)
    assert result.grade == expected.grade == "A"


def test_live_grader_follows_real_voxel_edits(a_scene, a_volume_node, graded_node):
    node, _, necrosis_id = graded_node
    requests = []
    updates = []
    grader = LiveGrader(node, updates.append, lambda: requests.append(1))
    assert grader.recompute().result.grade == "A"

    set_segment_mask(a_scene, node, necrosis_id, LARGE_LESION, a_volume_node)
    assert requests, "a voxel edit must request a recompute"
    update = grader.recompute()
    expected = grade_masks(HEAD, LARGE_LESION, VOLUME_SPACING_MM)
    assert update.result.ratio == pytest.approx(expected.ratio)
    assert update.result.grade == expected.grade == "C"

    set_segment_mask(a_scene, node, necrosis_id, np.zeros_like(HEAD), a_volume_node)
    assert grader.recompute().result.ratio == 0.0
    assert [u.result.grade for u in updates] == ["A", "C", "A"]
    grader.close()
    before = len(requests)
    set_segment_mask(a_scene, node, necrosis_id, LARGE_LESION, a_volume_node)
    assert len(requests) == before, "a closed grader must stop observing"


def test_segment_added_removed_and_renamed_request_recompute(graded_node):
    node, head_id, necrosis_id = graded_node
    requests = []
    grader = LiveGrader(node, lambda update: None, lambda: requests.append(1))
    segmentation = node.GetSegmentation()
    extra = segmentation.AddEmptySegment("", "Acetabulum")
    added = len(requests)
    assert added > 0
    segmentation.GetSegment(extra).SetName("Cup")
    renamed = len(requests)
    assert renamed > added
    segmentation.RemoveSegment(necrosis_id)
    assert len(requests) > renamed
    update = grader.recompute()
    assert update.necrosis_id is None and update.result.ratio == 0.0
    segmentation.RemoveSegment(head_id)
    update = grader.recompute()
    assert update.result is None and "no femoral head" in update.error
    grader.close()


def test_segments_found_by_terminology_when_renamed(a_scene, a_volume_node, a_segmentation_node):
    head_id, necrosis_id = add_segments(a_segmentation_node, "Segment_1", "Segment_2")
    segmentation = a_segmentation_node.GetSegmentation()
    segmentation.GetSegment(head_id).SetTag("TerminologyEntry", FEMORAL_HEAD.terminology_entry)
    segmentation.GetSegment(necrosis_id).SetTag("TerminologyEntry", NECROSIS_SEGMENT.terminology_entry)
    assert find_grading_segments(a_segmentation_node) == {"femoral_head": head_id, "necrosis": necrosis_id}


def test_chosen_segments_override_automatic_choice(a_scene, a_volume_node, graded_node):
    node, head_id, _ = graded_node
    other = node.GetSegmentation().AddEmptySegment("", "Other lesion")
    set_segment_mask(a_scene, node, other, LARGE_LESION, a_volume_node)
    grader = LiveGrader(node, lambda update: None, lambda: None)
    grader.set_segments(head_id, other)
    assert grader.recompute().result.grade == "C"
    grader.close()


def test_parent_transform_scaling_scales_volumes_not_ratio(a_scene, graded_node):
    import vtk

    node, _, _ = graded_node
    plain = compute_grade(node)
    transform = a_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 0, 2.0)
    matrix.SetElement(1, 1, 1.5)
    transform.SetMatrixTransformToParent(matrix)
    requests = []
    grader = LiveGrader(node, lambda update: None, lambda: requests.append(1))
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert requests, "moving the node under a transform must request a recompute"
    scaled = grader.recompute().result
    assert scaled.head_volume_mm3 == pytest.approx(3.0 * plain.head_volume_mm3)
    assert scaled.ratio == pytest.approx(plain.ratio)
    grader.close()


def test_overlapping_layers_count_the_union(a_scene, a_volume_node, a_segmentation_node):
    head_id, necrosis_id = add_segments(a_segmentation_node)
    lesion_partly_outside = ball((12, 20, 33), 5)  # pokes out of the head
    set_segment_mask(a_scene, a_segmentation_node, head_id, HEAD, a_volume_node)
    set_segment_mask(a_scene, a_segmentation_node, necrosis_id, lesion_partly_outside, a_volume_node)
    result = compute_grade(a_segmentation_node)
    expected = grade_masks(HEAD, lesion_partly_outside, VOLUME_SPACING_MM)
    assert result.head_volume_mm3 == pytest.approx(expected.head_volume_mm3)
    assert result.ratio == pytest.approx(expected.ratio)


def test_segment_geometry_different_from_reference_volume(a_scene, a_volume_node, a_segmentation_node):
    """Segments on a grid twice as fine as the reference volume still give physical volumes."""
    head_id, necrosis_id = add_segments(a_segmentation_node)
    set_segment_mask(a_scene, a_segmentation_node, head_id, HEAD, a_volume_node, oversample=2)
    set_segment_mask(a_scene, a_segmentation_node, necrosis_id, LARGE_LESION, a_volume_node, oversample=2)
    labelmap = a_segmentation_node.GetSegmentation().GetSegment(head_id).GetRepresentation("Binary labelmap")
    assert labelmap.GetSpacing()[0] == pytest.approx(VOLUME_SPACING_MM[0] / 2)
    expected = grade_masks(HEAD, LARGE_LESION, VOLUME_SPACING_MM)
    result = compute_grade(a_segmentation_node)
    assert result.head_volume_mm3 == pytest.approx(expected.head_volume_mm3)
    assert result.ratio == pytest.approx(expected.ratio)


def test_export_table_and_csv(a_scene, graded_node, tmp_path):
    node, _, _ = graded_node
    grader = LiveGrader(node, lambda update: None, lambda: None)
    update = grader.recompute()
    table_node = a_scene.AddNewNodeByClass("vtkMRMLTableNode", "ONFH grades")
    append_grade_row(table_node, grade_table_row(node.GetName(), update))
    append_grade_row(table_node, grade_table_row("second round", update))
    assert table_node.GetNumberOfRows() == 2
    assert table_node.GetCellText(0, 4) == update.result.grade
    path = tmp_path / "grades.csv"
    save_table_csv(table_node, str(path))
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["Segmentation"] for row in rows] == [node.GetName(), "second round"]
    assert rows[0]["Steinberg grade"] == update.result.grade
    assert float(rows[0]["Necrotic ratio (%)"]) == pytest.approx(100 * update.result.ratio)
    grader.close()


def test_non_linear_transform_grades_a_hardened_copy(a_scene, graded_node):
    """A grid transform of uniform 1.2x scaling: volumes x1.728, the node left untouched."""
    import vtk

    node, _, _ = graded_node
    plain = compute_grade(node)
    grid = vtk.vtkImageData()
    grid.SetOrigin(-60.0, -60.0, -60.0)
    grid.SetSpacing(10.0, 10.0, 10.0)
    grid.SetDimensions(16, 16, 16)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    from vtk.util import numpy_support

    points = np.stack(
        np.meshgrid(*[grid.GetOrigin()[i] + 10.0 * np.arange(16) for i in range(3)], indexing="ij"), axis=-1
    )
    # Displacement to parent: x -> 1.2 x, stored x-fastest as VTK expects.
    numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())[:] = (
        (0.2 * points).transpose(2, 1, 0, 3).reshape(-1, 3)
    )
    transform = vtk.vtkGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetInterpolationModeToLinear()
    transform_node = a_scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    transform_node.SetAndObserveTransformToParent(transform)
    node.SetAndObserveTransformNodeID(transform_node.GetID())
    nodes_before = a_scene.GetNumberOfNodes()
    warped = compute_grade(node)
    assert a_scene.GetNumberOfNodes() == nodes_before, "the hardened copy must be removed"
    assert node.GetParentTransformNode() is transform_node
    assert warped.head_volume_mm3 == pytest.approx(1.728 * plain.head_volume_mm3, rel=0.05)
    assert warped.ratio == pytest.approx(plain.ratio, abs=0.02)


def test_panel_text_formats_percent_with_one_decimal_and_colours(graded_node):
    node, _, _ = graded_node
    update = LiveGrader(node, lambda u: None, lambda: None).recompute()
    text = panel_text(update)
    assert text["ratio"] == f"{100 * update.result.ratio:.1f} %"
    assert text["grade"] == "Grade A" and text["colour"] == "#2e7d32"
    assert panel_text(None)["grade"] == "-"


def test_overlapping_layers_with_different_extents(a_segmentation_node):
    """Slicer crops each layer to its content: counts and overlap must use true extents."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    def layer(extent, fill_box, value):
        image = slicer.vtkOrientedImageData()
        image.SetExtent(*extent)
        image.SetSpacing(0.5, 0.5, 0.5)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        dims = [extent[2 * i + 1] - extent[2 * i] + 1 for i in range(3)]
        array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])
        array[:] = 0
        array[fill_box] = value
        return image

    segmentation = a_segmentation_node.GetSegmentation()
    head_id, necrosis_id = add_segments(a_segmentation_node)
    # Head: x 0..19, y 0..19, z 0..19 fully set (8000 voxels).
    segmentation.GetSegment(head_id).AddRepresentation(
        "Binary labelmap", layer((0, 19, 0, 19, 0, 19), ..., 1)
    )
    # Necrosis: x 15..24, y 0..9, z 0..9 (1000 voxels), half of it (x 15..19) inside the head.
    value = segmentation.GetSegment(necrosis_id).GetLabelValue()
    segmentation.GetSegment(necrosis_id).AddRepresentation(
        "Binary labelmap", layer((15, 24, 0, 9, 0, 9), ..., value)
    )
    result = compute_grade(a_segmentation_node)
    assert result.necrosis_volume_mm3 == pytest.approx(1000 * 0.125)
    assert result.head_volume_mm3 == pytest.approx((8000 + 500) * 0.125)
    assert result.ratio == pytest.approx(1000 / 8500)
