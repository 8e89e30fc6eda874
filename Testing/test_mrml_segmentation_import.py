"""Importing an ``onfh segment`` result into a real MRML scene, and the never-overwrite rules."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core wheel not installed")

import slicer
import vtk
from conftest import set_segment_mask
from model_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)
from vtk.util import numpy_support

from onfh.errors import OnfhError
from onfh.grading import grade_masks
from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT
from onfh.mrml.grading import compute_grade
from onfh.mrml.segmentation_import import (
    CONTENT_SHA256_TAG,
    MODEL_ID_TAG,
    MODEL_SHA256_TAG,
    ImportChoice,
    ModelInfo,
    import_segmentation,
    plan_import,
    read_model_info,
    segment_fingerprint,
    segment_states,
    segment_tag,
    volume_geometry,
    volume_to_image,
)
from onfh.segfile import write_seg_nrrd

MODEL = ModelInfo("onfh-dynunet-test", "ab" * 32)
LOGIC = slicer.vtkSlicerSegmentationsModuleLogic


def _ball(shape_zyx, centre_zyx, radius_vox, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape_zyx)]
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre_zyx, scale))
    return distance2 <= radius_vox**2


def _masks(volume_node, necrosis_offset=(0, 0, 0)):
    x, y, z = volume_node.GetImageData().GetDimensions()
    head = _ball((z, y, x), (12, 20, 24), 9.0, scale=(1.4, 1.0, 1.0))
    centre = np.array((9, 16, 24)) + np.array(necrosis_offset)
    necrosis = _ball((z, y, x), tuple(centre), 4.0) & head
    return head, necrosis


def _write_result(tmp_path, volume_node, head, necrosis, name="result.seg.nrrd"):
    labels = head.astype(np.uint8)
    labels[necrosis] = 2
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(volume_geometry(volume_node))
    path = tmp_path / name
    write_seg_nrrd(image, path, {MODEL_ID_TAG: MODEL.model_id})
    return path


def _segment_mask(segmentation_node, segment_id, volume_node) -> np.ndarray:
    """A segment's voxels on the volume's grid, read back through Slicer's own merge."""
    geometry = slicer.vtkOrientedImageData()
    x, y, z = volume_node.GetImageData().GetDimensions()
    geometry.SetDimensions(x, y, z)
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    geometry.SetImageToWorldMatrix(matrix)
    merged = slicer.vtkOrientedImageData()
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    ok = segmentation_node.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, geometry, ids
    )
    assert ok
    return numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(z, y, x) > 0


def _by_kind(node):
    return {s.kind: s for s in segment_states(node)}


def _import_new(a_scene, volume_node, path, model=MODEL):
    decision = plan_import(a_scene, volume_node)
    return import_segmentation(a_scene, volume_node, path, model, decision, ImportChoice.NEW_NODE)


def test_volume_to_image_keeps_world_positions_of_an_oblique_volume(a_scene, a_volume_node):
    rotation = vtk.vtkTransform()
    rotation.RotateWXYZ(30, 0.3, 1.0, 0.2)
    directions = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            directions.SetElement(r, c, rotation.GetMatrix().GetElement(r, c))
    a_volume_node.SetIJKToRASDirectionMatrix(directions)
    image = volume_to_image(a_volume_node)
    ijk_to_ras = vtk.vtkMatrix4x4()
    a_volume_node.GetIJKToRASMatrix(ijk_to_ras)
    for index in [(0, 0, 0), (47, 39, 23), (5, 31, 17)]:
        ras = ijk_to_ras.MultiplyPoint((*index, 1.0))[:3]
        lps = image.TransformIndexToPhysicalPoint(index)
        np.testing.assert_allclose(lps, (-ras[0], -ras[1], ras[2]), atol=1e-6)
    values = sitk.GetArrayFromImage(image)
    assert values.shape == (24, 40, 48)
    np.testing.assert_array_equal(values[3, 7], np.arange(48))  # the fixture's x ramp


def test_result_goes_into_a_new_node_named_after_the_volume(a_scene, a_volume_node, tmp_path):
    head, necrosis = _masks(a_volume_node)
    path = _write_result(tmp_path, a_volume_node, head, necrosis)
    decision = plan_import(a_scene, a_volume_node)
    assert not decision.needs_question and decision.question() == ""
    outcome = import_segmentation(a_scene, a_volume_node, path, MODEL, decision)
    node = outcome.segmentation_node
    assert node.GetName() == "Hip MRI segmentation"
    assert outcome.added == ["Femoral head", "Necrosis"] and not outcome.replaced and not outcome.kept
    role = node.GetReferenceImageGeometryReferenceRole()
    assert node.GetNodeReferenceID(role) == a_volume_node.GetID()
    display = node.GetDisplayNode()
    assert display.GetVisibility() and display.GetVisibility2D() and display.GetVisibility3D()
    assert node.GetSegmentation().ContainsRepresentation("Closed surface")
    segments = _by_kind(node)
    for spec in (FEMORAL_HEAD, NECROSIS_SEGMENT):
        segment = node.GetSegmentation().GetSegment(segments[spec.key].segment_id)
        assert segment.GetName() == spec.name
        np.testing.assert_allclose(segment.GetColor(), spec.color_rgb, atol=1e-6)
        assert segment_tag(segment, "TerminologyEntry") == spec.terminology_entry
        assert segment_tag(segment, MODEL_ID_TAG) == MODEL.model_id
        assert segment_tag(segment, MODEL_SHA256_TAG) == MODEL.sha256
        assert segments[spec.key].status == "notstarted" and segments[spec.key].replaceable
    head_ids = segments["femoral_head"].segment_id, segments["necrosis"].segment_id
    np.testing.assert_array_equal(_segment_mask(node, head_ids[0], a_volume_node), head & ~necrosis)
    np.testing.assert_array_equal(_segment_mask(node, head_ids[1], a_volume_node), necrosis)
    expected = grade_masks(head, necrosis, a_volume_node.GetSpacing())
    got = compute_grade(node)
    assert got.grade == expected.grade
    assert got.ratio == pytest.approx(expected.ratio, rel=1e-9)


def test_result_on_a_cropped_grid_lands_at_the_same_world_position(a_scene, a_volume_node, tmp_path):
    head, necrosis = _masks(a_volume_node)
    labels = head.astype(np.uint8)
    labels[necrosis] = 2
    full = sitk.GetImageFromArray(labels)
    full.CopyInformation(volume_geometry(a_volume_node))
    path = tmp_path / "crop.seg.nrrd"
    write_seg_nrrd(full[4:44, 2:38, 1:23], path)  # a crop keeps world coordinates
    node = _import_new(a_scene, a_volume_node, path).segmentation_node
    head_id = _by_kind(node)["femoral_head"].segment_id
    np.testing.assert_array_equal(_segment_mask(node, head_id, a_volume_node), head & ~necrosis)


def test_node_is_placed_next_to_the_volume_in_the_subject_hierarchy(a_scene, a_volume_node, tmp_path):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(a_scene)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "Study 1")
    hierarchy.CreateItem(study, a_volume_node)
    path = _write_result(tmp_path, a_volume_node, *_masks(a_volume_node))
    node = _import_new(a_scene, a_volume_node, path).segmentation_node
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study


def test_rerun_asks_and_new_node_leaves_the_first_untouched(a_scene, a_volume_node, tmp_path):
    head, necrosis = _masks(a_volume_node)
    first = _import_new(a_scene, a_volume_node, _write_result(tmp_path, a_volume_node, head, necrosis))
    before = {
        s.name: segment_fingerprint(first.segmentation_node, s.segment_id)
        for s in segment_states(first.segmentation_node)
    }
    decision = plan_import(a_scene, a_volume_node)
    assert decision.needs_question
    assert decision.existing_node_id == first.segmentation_node.GetID()
    assert set(decision.replaceable) == {"Femoral head", "Necrosis"} and decision.protected == ()
    assert ImportChoice.UPDATE_UNEDITED in decision.choices
    assert "Hip MRI segmentation" in decision.question()
    assert decision.choices[-1] == ImportChoice.CANCEL, "the Qt dialog makes the last choice Escape"
    assert len({c.label for c in decision.choices}) == len(decision.choices)
    moved = _write_result(tmp_path, a_volume_node, *_masks(a_volume_node, (2, 2, 0)), name="second.seg.nrrd")
    second = import_segmentation(a_scene, a_volume_node, moved, MODEL, decision, ImportChoice.NEW_NODE)
    assert second.segmentation_node is not first.segmentation_node
    assert second.segmentation_node.GetName() == decision.new_node_name != first.segmentation_node.GetName()
    after = {
        s.name: segment_fingerprint(first.segmentation_node, s.segment_id)
        for s in segment_states(first.segmentation_node)
    }
    assert after == before


def test_cancel_changes_nothing(a_scene, a_volume_node, tmp_path):
    path = _write_result(tmp_path, a_volume_node, *_masks(a_volume_node))
    _import_new(a_scene, a_volume_node, path)
    count = a_scene.GetNumberOfNodes()
    decision = plan_import(a_scene, a_volume_node)
    assert import_segmentation(a_scene, a_volume_node, path, MODEL, decision, ImportChoice.CANCEL) is None
    assert a_scene.GetNumberOfNodes() == count


def test_update_replaces_unedited_ai_segments_only(a_scene, a_volume_node, tmp_path):
    head, necrosis = _masks(a_volume_node)
    node = _import_new(
        a_scene, a_volume_node, _write_result(tmp_path, a_volume_node, head, necrosis)
    ).segmentation_node
    states = _by_kind(node)
    head_segment = node.GetSegmentation().GetSegment(states["femoral_head"].segment_id)
    # The Segment Editor marks a segment it modified "in progress".
    grown = _ball(head.shape, (12, 20, 24), 10.0, scale=(1.4, 1.0, 1.0)) & ~necrosis
    set_segment_mask(a_scene, node, states["femoral_head"].segment_id, grown, a_volume_node)
    LOGIC.SetSegmentStatus(head_segment, LOGIC.InProgress)
    edited = segment_fingerprint(node, states["femoral_head"].segment_id)

    decision = plan_import(a_scene, a_volume_node)
    assert decision.protected == ("Femoral head",) and decision.replaceable == ("Necrosis",)
    new_head, new_necrosis = _masks(a_volume_node, (1, 3, 2))
    path = _write_result(tmp_path, a_volume_node, new_head, new_necrosis, name="rerun.seg.nrrd")
    outcome = import_segmentation(a_scene, a_volume_node, path, MODEL, decision, ImportChoice.UPDATE_UNEDITED)
    assert outcome.segmentation_node is node
    assert outcome.kept == ["Femoral head"] and outcome.replaced == ["Necrosis"] and not outcome.added
    assert segment_fingerprint(node, states["femoral_head"].segment_id) == edited
    assert LOGIC.GetSegmentStatus(head_segment) == LOGIC.InProgress
    np.testing.assert_array_equal(
        _segment_mask(node, states["femoral_head"].segment_id, a_volume_node), grown
    )
    np.testing.assert_array_equal(
        _segment_mask(node, states["necrosis"].segment_id, a_volume_node), new_necrosis
    )
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def test_an_edit_without_status_still_protects_the_segment(a_scene, a_volume_node, tmp_path):
    head, necrosis = _masks(a_volume_node)
    node = _import_new(
        a_scene, a_volume_node, _write_result(tmp_path, a_volume_node, head, necrosis)
    ).segmentation_node
    necrosis_id = _by_kind(node)["necrosis"].segment_id
    set_segment_mask(a_scene, node, necrosis_id, _ball(head.shape, (9, 16, 24), 2.0), a_volume_node)
    state = _by_kind(node)["necrosis"]
    assert state.status == "notstarted" and state.changed_since_import and not state.replaceable
    assert plan_import(a_scene, a_volume_node).protected == ("Necrosis",)


@pytest.mark.parametrize("status", ["Completed", "Flagged"])
def test_reviewed_segments_are_protected(a_scene, a_volume_node, tmp_path, status):
    node = _import_new(
        a_scene, a_volume_node, _write_result(tmp_path, a_volume_node, *_masks(a_volume_node))
    ).segmentation_node
    for state in segment_states(node):
        LOGIC.SetSegmentStatus(node.GetSegmentation().GetSegment(state.segment_id), getattr(LOGIC, status))
    decision = plan_import(a_scene, a_volume_node)
    assert decision.replaceable == () and set(decision.protected) == {"Femoral head", "Necrosis"}
    assert decision.choices == (ImportChoice.NEW_NODE, ImportChoice.CANCEL)
    path = _write_result(tmp_path, a_volume_node, *_masks(a_volume_node, (1, 1, 1)), name="again.seg.nrrd")
    with pytest.raises(OnfhError, match="cannot update"):
        import_segmentation(a_scene, a_volume_node, path, MODEL, decision, ImportChoice.UPDATE_UNEDITED)


def test_a_hand_made_segmentation_is_never_ours_to_replace(
    a_scene, a_volume_node, a_segmentation_node, tmp_path
):
    head, _ = _masks(a_volume_node)
    segment_id = a_segmentation_node.GetSegmentation().AddEmptySegment("", "Femoral head")
    set_segment_mask(a_scene, a_segmentation_node, segment_id, head, a_volume_node)
    decision = plan_import(a_scene, a_volume_node)
    assert decision.existing_node_id == a_segmentation_node.GetID()
    assert decision.protected == ("Femoral head",) and ImportChoice.UPDATE_UNEDITED not in decision.choices
    segment = a_segmentation_node.GetSegmentation().GetSegment(segment_id)
    assert segment_tag(segment, CONTENT_SHA256_TAG) == ""


def test_import_without_model_info_has_no_model_tags(a_scene, a_volume_node, tmp_path):
    path = _write_result(tmp_path, a_volume_node, *_masks(a_volume_node))
    node = _import_new(a_scene, a_volume_node, path, model=None).segmentation_node
    for state in segment_states(node):
        segment = node.GetSegmentation().GetSegment(state.segment_id)
        assert segment_tag(segment, MODEL_SHA256_TAG) == ""
        assert state.from_model, "still an imported result: unedited, it may be refreshed"


def test_read_model_info_from_the_case_report(tmp_path):
    report = tmp_path / "hip.json"
    report.write_text(json.dumps({"model": {"id": "m1", "sha256": "cd" * 32}, "steinberg_grade": "B"}))
    assert read_model_info(report) == ModelInfo("m1", "cd" * 32)
    report.write_text(json.dumps({"model": None}))
    assert read_model_info(report) is None
    report.write_text("{not json")
    with pytest.raises(OnfhError, match="not a JSON report"):
        read_model_info(report)
    with pytest.raises(OnfhError, match="no such report"):
        read_model_info(tmp_path / "missing.json")


def test_unreadable_result_is_a_one_line_error_and_adds_no_node(a_scene, a_volume_node, tmp_path):
    bad = tmp_path / "broken.seg.nrrd"
    bad.write_bytes(b"not an image")
    count = a_scene.GetNumberOfNodes()
    with pytest.raises(OnfhError, match=r"broken\.seg\.nrrd"):
        _import_new(a_scene, a_volume_node, bad)
    assert a_scene.GetNumberOfNodes() == count


def _volume_node_from_image(scene, image: sitk.Image, name: str = "Phantom"):
    """A scalar volume node holding ``image`` (LPS geometry -> Slicer's RAS IJK-to-RAS)."""
    values = sitk.GetArrayFromImage(image)
    z, y, x = values.shape
    data = vtk.vtkImageData()
    data.SetDimensions(x, y, z)
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.ravel().copy(), deep=True))
    ras_from_lps = np.diag([-1.0, -1.0, 1.0])
    direction = np.array(image.GetDirection()).reshape(3, 3)
    linear = ras_from_lps @ direction @ np.diag(image.GetSpacing())
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, linear[r, c])
        matrix.SetElement(r, 3, (ras_from_lps @ np.array(image.GetOrigin()))[r])
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(data)
    node.SetIJKToRASMatrix(matrix)
    return node


@pytest.mark.parametrize("orientation", ["axial", "flipped", "coronal", "sagittal", "oblique"])
def test_volumes_and_results_keep_their_geometry_in_every_orientation(a_scene, tmp_path, orientation):
    from model_fixtures import DIRECTIONS, phantom

    from onfh.segfile import same_grid

    image, truth = phantom(DIRECTIONS[orientation], size=(40, 36, 30))
    node = _volume_node_from_image(a_scene, image)
    back = volume_to_image(node)
    assert same_grid(back, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    path = tmp_path / "truth.seg.nrrd"
    write_seg_nrrd(truth, path)
    outcome = _import_new(a_scene, node, path)
    labels = sitk.GetArrayFromImage(truth)
    segments = _by_kind(outcome.segmentation_node)
    head_id, necrosis_id = segments["femoral_head"].segment_id, segments["necrosis"].segment_id
    np.testing.assert_array_equal(_segment_mask(outcome.segmentation_node, head_id, node), labels == 1)
    np.testing.assert_array_equal(_segment_mask(outcome.segmentation_node, necrosis_id, node), labels == 2)


@pytest.mark.slow  # trains the tiny model fixture (about a minute on 2 CPU cores) unless shared
@pytest.mark.skipif(
    importlib.util.find_spec("onfh.commands.segment") is None, reason="onfh segment not available yet"
)
def test_segment_flow_with_a_real_child_process(a_scene, tiny_model_dir):  # noqa: F811
    """What the Segment button does, minus Qt: volume -> child `onfh segment` -> new node."""
    import sys
    from pathlib import Path

    from model_fixtures import DIRECTIONS, phantom

    from onfh.modelfolder import load_model_folder
    from onfh.subprocess_runner import SegmentJob

    image, _ = phantom(DIRECTIONS["oblique"], noise=3.0)
    volume = _volume_node_from_image(a_scene, image, "Hip MRI")
    job = SegmentJob(
        volume_to_image(volume), sys.executable, Path(__file__).resolve().parents[1], tiny_model_dir
    )
    try:
        assert job.process.wait(timeout_s=300) == 0, job.process.stderr_lines
        events = job.process.poll()
        assert events and all(0.0 <= e.fraction <= 1.0 for e in events if e.fraction is not None)
        model = read_model_info(job.report_path)
        outcome = import_segmentation(a_scene, volume, job.seg_path, model, plan_import(a_scene, volume))
    finally:
        job.cleanup()
    folder = load_model_folder(tiny_model_dir)
    assert model == ModelInfo(folder.id, folder.sha256)
    node = outcome.segmentation_node
    assert node.GetName() == "Hip MRI segmentation"
    for state in segment_states(node):
        segment = node.GetSegmentation().GetSegment(state.segment_id)
        assert segment_tag(segment, MODEL_SHA256_TAG) == model.sha256
    assert not job.folder.exists()


def test_a_flagged_result_carries_its_flag_into_the_grading_panel_until_edited(
    a_scene, a_volume_node, tmp_path
):
    from onfh.mrml.grade_table import panel_text
    from onfh.mrml.grading import LiveGrader

    report = tmp_path / "hip.json"
    quality = {
        "passed": False,
        "summary": "low confidence: radius 12 mm",
        "heads": [{"passed": False, "reasons": ["radius 12 mm"]}],
    }
    report.write_text(json.dumps({"model": {"id": "m1", "sha256": "cd" * 32}, "quality": quality}))
    model = read_model_info(report)
    assert model.quality == "Low confidence: radius 12 mm"
    head, necrosis = _masks(a_volume_node)
    node = _import_new(
        a_scene, a_volume_node, _write_result(tmp_path, a_volume_node, head, necrosis), model
    ).segmentation_node
    updates = []
    grader = LiveGrader(node, updates.append, schedule=lambda: None)
    status = panel_text(grader.recompute())["status"]
    assert status == "AI result: Low confidence: radius 12 mm."
    head_id = _by_kind(node)["femoral_head"].segment_id
    edited = _segment_mask(node, head_id, a_volume_node) & ~_ball(head.shape, (12, 20, 30), 3.0)
    set_segment_mask(a_scene, node, head_id, edited, a_volume_node)
    status = panel_text(grader.recompute())["status"]
    assert status == "AI result was flagged (Low confidence: radius 12 mm); edited since."
    clean = _import_new(
        a_scene, a_volume_node, _write_result(tmp_path, a_volume_node, head, necrosis, "b.seg.nrrd")
    )
    assert (
        panel_text(LiveGrader(clean.segmentation_node, updates.append, lambda: None).recompute())["status"]
        == ""
    )
    grader.close()
