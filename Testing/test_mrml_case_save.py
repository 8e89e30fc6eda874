"""Saving a reviewed hip on a real MRML scene: files ``onfh grade`` reads back, never overwriting."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from conftest import set_segment_mask

from onfh.cli import main
from onfh.errors import OnfhError
from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT
from onfh.mrml.case_save import CSV_COLUMNS, CSV_NAME, append_csv_row, free_case_name, save_case
from onfh.mrml.grading import compute_grade
from onfh.mrml.segmentation_import import add_volume_node, volume_to_image
from onfh.segfile import read_segmentation


def _ball(shape_zyx, centre_zyx, radius_vox) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape_zyx)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre_zyx)) <= radius_vox**2


@pytest.fixture
def graded_hip(a_scene, a_volume_node, a_segmentation_node):
    x, y, z = a_volume_node.GetImageData().GetDimensions()
    segmentation = a_segmentation_node.GetSegmentation()
    head_id = segmentation.AddEmptySegment("", FEMORAL_HEAD.name, list(FEMORAL_HEAD.color_rgb))
    necrosis_id = segmentation.AddEmptySegment("", NECROSIS_SEGMENT.name, list(NECROSIS_SEGMENT.color_rgb))
    head = _ball((z, y, x), (12, 20, 24), 9.0)
    necrosis = _ball((z, y, x), (12, 17, 24), 4.0)  # inside the head
    set_segment_mask(a_scene, a_segmentation_node, head_id, head, a_volume_node)
    set_segment_mask(a_scene, a_segmentation_node, necrosis_id, necrosis, a_volume_node)
    assert not (necrosis & ~head).any()
    return head, necrosis


def test_saved_case_grades_back_to_the_scene_grade(
    a_scene, a_volume_node, a_segmentation_node, graded_hip, tmp_path, capsys
):
    head, necrosis = graded_hip
    saved = save_case(
        a_scene,
        a_segmentation_node,
        a_volume_node,
        tmp_path,
        tmp_path / "Hip MRI.nrrd",
        model={"id": "m1", "sha256": "abc"},
        model_quality="Low confidence: test",
    )
    scene_grade = compute_grade(a_segmentation_node)
    assert saved.case == "Hip MRI"
    assert saved.report["necrosis_ratio"] == pytest.approx(necrosis.sum() / head.sum())
    assert saved.report["necrosis_ratio"] == pytest.approx(scene_grade.ratio)
    assert saved.report["model_quality"] == "Low confidence: test" and saved.report["reviewed"] is True
    back = read_segmentation(saved.segmentation_path, reference=volume_to_image(a_volume_node))
    assert back.head_mask.sum() == head.sum() and back.necrosis_mask.sum() == necrosis.sum()
    assert main(["grade", str(saved.segmentation_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steinberg_grade"] == saved.report["steinberg_grade"] == scene_grade.grade
    assert report["necrosis_ratio"] == pytest.approx(saved.report["necrosis_ratio"])
    rows = list(csv.DictReader((tmp_path / CSV_NAME).open()))
    assert [r["case"] for r in rows] == ["Hip MRI"] and rows[0]["steinberg_grade"] == scene_grade.grade


def test_saving_twice_never_overwrites(a_scene, a_volume_node, a_segmentation_node, graded_hip, tmp_path):
    first = save_case(a_scene, a_segmentation_node, a_volume_node, tmp_path, tmp_path / "hip.nii.gz")
    before = first.segmentation_path.read_bytes()
    second = save_case(a_scene, a_segmentation_node, a_volume_node, tmp_path, tmp_path / "hip.nii.gz")
    assert (first.case, second.case) == ("hip", "hip-2")
    assert first.segmentation_path.read_bytes() == before
    assert free_case_name(tmp_path, "hip") == "hip-3"
    rows = list(csv.DictReader((tmp_path / CSV_NAME).open()))
    assert [r["case"] for r in rows] == ["hip", "hip-2"]


def test_csv_with_other_columns_is_left_alone(tmp_path):
    path = tmp_path / CSV_NAME
    path.write_text("a,b\n1,2\n")
    with pytest.raises(OnfhError, match="other columns"):
        append_csv_row(path, dict.fromkeys(CSV_COLUMNS, ""))
    assert path.read_text() == "a,b\n1,2\n"


def test_empty_head_is_a_one_line_error(a_scene, a_volume_node, a_segmentation_node, tmp_path):
    a_segmentation_node.GetSegmentation().AddEmptySegment("", FEMORAL_HEAD.name, list(FEMORAL_HEAD.color_rgb))
    with pytest.raises(OnfhError, match="empty"):
        save_case(a_scene, a_segmentation_node, a_volume_node, tmp_path, tmp_path / "hip.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_add_volume_node_is_the_inverse_of_volume_to_image(a_scene):
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 1.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    node = add_volume_node(a_scene, image, "Loaded")
    back = volume_to_image(node)
    assert node.GetName() == "Loaded"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
