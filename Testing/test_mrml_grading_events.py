"""Live grading follows every way Slicer changes a segment (issue 11 items 4 and 6).

Real MRML (slicer-core): "Clear selected segment", the Segment Editor's undo (a
``vtkSegmentationHistory`` restoring copies of segments), removing and drawing a segment
again, and the segment-choice rule that keeps a removed or doubled choice from pinning
a wrong grade.
"""

from __future__ import annotations

import pytest

pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from conftest import VOLUME_SPACING_MM, set_segment_mask
from test_mrml_grading import HEAD, LARGE_LESION, SMALL_LESION, add_segments

from onfh.grading import grade_masks
from onfh.mrml.grade_table import csv_export_path
from onfh.mrml.grading import LiveGrader, find_grading_segments, resolve_segment_choice


@pytest.fixture
def graded(a_scene, a_volume_node, a_segmentation_node):
    head_id, necrosis_id = add_segments(a_segmentation_node)
    set_segment_mask(a_scene, a_segmentation_node, head_id, HEAD, a_volume_node)
    set_segment_mask(a_scene, a_segmentation_node, necrosis_id, LARGE_LESION, a_volume_node)
    requests = []
    grader = LiveGrader(a_segmentation_node, lambda update: None, lambda: requests.append(1))
    yield a_segmentation_node, head_id, necrosis_id, grader, requests
    grader.close()


def expected_ratio(necrosis_mask) -> float:
    return grade_masks(HEAD, necrosis_mask, VOLUME_SPACING_MM).ratio


def test_clear_segment_updates_the_grade(a_scene, graded):
    node, _, necrosis_id, grader, requests = graded
    assert grader.recompute().result.grade == "C"
    requests.clear()
    assert a_scene.segmentations_logic.ClearSegment(node, necrosis_id)
    assert requests, "ClearSegment fires only RepresentationModified; the grader must observe it"
    update = grader.recompute()
    assert update.result.ratio == 0.0 and update.result.grade == "A"


def test_undo_of_an_edit_updates_the_grade(a_scene, a_volume_node, graded):
    node, _, necrosis_id, grader, requests = graded
    import slicer

    history = slicer.vtkSegmentationHistory()
    history.SetSegmentation(node.GetSegmentation())
    assert history.SaveState()
    set_segment_mask(a_scene, node, necrosis_id, SMALL_LESION, a_volume_node)
    assert grader.recompute().result.ratio == pytest.approx(expected_ratio(SMALL_LESION))
    requests.clear()
    assert history.RestorePreviousState()
    assert requests, "restoring a segment copy must request a recompute"
    assert grader.recompute().result.ratio == pytest.approx(expected_ratio(LARGE_LESION))


def test_undo_of_a_removal_brings_the_grade_back(a_scene, graded):
    node, _, necrosis_id, grader, requests = graded
    import slicer

    history = slicer.vtkSegmentationHistory()
    history.SetSegmentation(node.GetSegmentation())
    assert history.SaveState()
    node.GetSegmentation().RemoveSegment(necrosis_id)
    assert grader.recompute().result.ratio == 0.0
    requests.clear()
    assert history.RestorePreviousState()
    assert requests
    assert grader.recompute().result.ratio == pytest.approx(expected_ratio(LARGE_LESION))


def test_removed_and_redrawn_necrosis_is_graded_after_the_selector_jumped(a_scene, a_volume_node, graded):
    """The shell once pinned Necrosis = "Femoral head" after a removal; the redraw was ignored."""
    node, head_id, necrosis_id, grader, _ = graded
    segmentation = node.GetSegmentation()
    segmentation.RemoveSegment(necrosis_id)
    # What qMRMLSegmentSelectorWidget reports after the removal: the first segment, for both.
    grader.set_segments(head_id, head_id)
    update = grader.recompute()
    assert (update.head_id, update.necrosis_id) == (head_id, None)
    assert update.result.ratio == 0.0
    redrawn = segmentation.AddEmptySegment("", "Necrosis")
    set_segment_mask(a_scene, node, redrawn, SMALL_LESION, a_volume_node)
    update = grader.recompute()
    assert update.necrosis_id == redrawn and redrawn != necrosis_id
    assert update.result.ratio == pytest.approx(expected_ratio(SMALL_LESION))


def test_a_removed_choice_falls_back_to_automatic(a_scene, a_volume_node, graded):
    node, _, necrosis_id, grader, _ = graded
    other = node.GetSegmentation().AddEmptySegment("", "Other lesion")
    set_segment_mask(a_scene, node, other, SMALL_LESION, a_volume_node)
    grader.set_segments(None, other)
    assert grader.recompute().result.ratio == pytest.approx(expected_ratio(SMALL_LESION))
    node.GetSegmentation().RemoveSegment(other)
    update = grader.recompute()
    assert update.necrosis_id == necrosis_id
    assert update.result.ratio == pytest.approx(expected_ratio(LARGE_LESION))


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        ((None, None), ("h", "n")),  # automatic
        (("h", "x"), ("h", "x")),  # a valid user choice holds
        (("h", "h"), ("h", "n")),  # equal choices: both automatic
        (("n", "n"), ("h", "n")),
        (("gone", None), ("h", "n")),  # removed: automatic
        (("h", "gone"), ("h", "n")),
        (("n", None), ("n", None)),  # the lesion chosen as head: automatic necrosis yields
        ((None, "h"), (None, "h")),  # and the other way round
    ],
)
def test_resolve_segment_choice_rule(chosen, expected):
    automatic = {"femoral_head": "h", "necrosis": "n"}
    assert resolve_segment_choice(*chosen, ["h", "n", "x"], automatic) == expected


def test_resolve_segment_choice_on_a_real_node(graded):
    node, head_id, necrosis_id, _, _ = graded
    ids = [node.GetSegmentation().GetNthSegmentID(i) for i in range(2)]
    found = find_grading_segments(node)
    assert resolve_segment_choice(head_id, head_id, ids, found) == (head_id, necrosis_id)


def test_a_paused_grader_does_not_recompute_and_catches_up_on_resume(a_scene, a_volume_node, graded):
    node, _, necrosis_id, _, _ = graded
    updates, requests = [], []
    grader = LiveGrader(node, updates.append, lambda: requests.append(1))
    grader.pause()
    set_segment_mask(a_scene, node, necrosis_id, SMALL_LESION, a_volume_node)
    assert not requests and not updates, "a hidden panel must not recompute"
    update = grader.resume()
    assert update.result.ratio == pytest.approx(expected_ratio(SMALL_LESION))
    assert grader.resume() is None, "nothing changed since: no recompute"
    set_segment_mask(a_scene, node, necrosis_id, LARGE_LESION, a_volume_node)
    assert requests, "after resume, edits request recomputes again"
    grader.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), (".", None), ("grades.csv", "grades.csv"), ("/x/a b/g.csv", "/x/a b/g.csv")],
)
def test_csv_export_path_treats_the_empty_path_field_as_no_file(value, expected):
    from pathlib import Path

    arg = value if value is None else Path(value)
    result = csv_export_path(arg)
    assert result == (None if expected is None else Path(expected))
