"""A bilateral field of view where the localiser finds one head: look where the other should be."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from model_fixtures import threshold_segment

from onfh.head_search import contralateral_centres
from onfh.inference import OTHER_HIP_STAGE

SPACING_MM = (1.5, 1.5, 1.5)
WIDE_SIZE = (250, 100, 80)  # 375 x 150 x 120 mm: a whole pelvis
NARROW_SIZE = (120, 100, 80)  # 180 mm wide: one hip
HEAD_RADIUS_MM = 23.0
RIGHT_HEAD_MM = np.array([-85.0, 0.0, 0.0])  # LPS: -x is the patient's right
LEFT_HEAD_MM = np.array([85.0, 0.0, 0.0])


def _grid(size) -> sitk.Image:
    image = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    image.SetSpacing(SPACING_MM)
    image.SetOrigin((-(np.asarray(size) - 1) / 2.0 * np.asarray(SPACING_MM)).tolist())
    return image


def _image(size, heads: dict) -> sitk.Image:
    """Background 20 with a ball of the given brightness at each ``{centre: value}``.

    A ball of 40 lies below the stand-in localiser's threshold (a quarter of the image's
    range) but is the brightest thing in a crop of its own, so the segmenter sees it:
    a localiser that misses a head the segmenter can find, as a network on an unfamiliar
    contrast can.
    """
    grid = _grid(size)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij"), axis=-1)
    points = np.asarray(grid.GetOrigin()) + index[..., ::-1] * np.asarray(SPACING_MM)
    values = np.full(points.shape[:3], 20.0, dtype=np.float32)
    for centre, value in heads.items():
        values[np.linalg.norm(points - np.asarray(centre), axis=-1) <= HEAD_RADIUS_MM] = value
    image = sitk.GetImageFromArray(values)
    image.CopyInformation(grid)
    return image


def test_the_other_place_is_inside_a_wide_field_of_view_only():
    wide = contralateral_centres(_grid(WIDE_SIZE), LEFT_HEAD_MM)
    assert wide, "a 375 mm field of view holds the other hip"
    assert all(place[0] < LEFT_HEAD_MM[0] - 150.0 for place in wide)  # towards the patient's right
    assert all(abs(place[1]) < 1e-9 and abs(place[2]) < 1e-9 for place in wide)
    assert contralateral_centres(_grid(NARROW_SIZE), np.array([40.0, 0.0, 0.0])) == []


def test_a_head_the_localiser_missed_is_found_by_the_look_and_sided():
    result, stages = threshold_segment(
        _image(WIDE_SIZE, {tuple(LEFT_HEAD_MM): 120.0, tuple(RIGHT_HEAD_MM): 40.0})
    )
    assert OTHER_HIP_STAGE in stages
    assert len(result.heads) == 2
    second = result.heads[1]
    assert second.check.passed and second.check.source == "other-hip look"
    assert np.linalg.norm(np.asarray(second.crop_centre_mm) - RIGHT_HEAD_MM) < 5.0
    assert {head.side for head in result.heads} == {"left", "right"}
    right = next(head for head in result.heads if head.side == "right")
    assert right is second
    assert result.quality["passed"] is True and "notes" not in result.quality
    label = sitk.GetArrayFromImage(result.label)
    assert label.any() and np.count_nonzero(label) > 1.6 * result.heads[0].head_voxels


def test_no_head_where_the_other_hip_should_be_gives_a_note_and_keeps_the_grade():
    result, stages = threshold_segment(_image(WIDE_SIZE, {tuple(LEFT_HEAD_MM): 120.0}))
    assert OTHER_HIP_STAGE in stages
    assert len(result.heads) == 1
    assert result.quality["passed"] is True  # the head that was found is graded as usual
    assert len(result.quality["notes"]) == 1
    assert "other hip" in result.quality["notes"][0]
    assert "check: one femoral head found" in result.quality["summary"]


def test_a_one_hip_field_of_view_is_not_searched_for_a_second_hip():
    result, stages = threshold_segment(_image(NARROW_SIZE, {(40.0, 0.0, 0.0): 120.0}))
    assert OTHER_HIP_STAGE not in stages
    assert len(result.heads) == 1
    assert "notes" not in result.quality and result.quality["summary"] == "passed"


def test_the_note_reaches_the_command_line_summary_csv_and_front_ends():
    from onfh.commands.segment import _format_result
    from onfh.segment_summary import summary_row
    from onfh.subprocess_runner import quality_warning

    result, _ = threshold_segment(_image(WIDE_SIZE, {tuple(LEFT_HEAD_MM): 120.0}))
    case_json = {
        "femoral_head_volume_ml": 48.1,
        "necrosis_volume_ml": 0.0,
        "necrosis_ratio": 0.0,
        "steinberg_grade": "A",
        "timings_s": {"total_s": 1.0},
        "quality": result.quality,
        "outputs": {"segmentation": "case.seg.nrrd", "report": "case.json"},
    }
    line = _format_result("case", case_json)
    assert "grade A" in line and "[CHECK: ONE FEMORAL HEAD FOUND" in line
    row = summary_row("case", "case.nii.gz", case_json, 1.0)
    assert row["status"] == "ok" and row["steinberg_grade"] == "A"
    assert "check: one femoral head found" in row["quality"]
    assert quality_warning(case_json).startswith("Check: one femoral head found")
