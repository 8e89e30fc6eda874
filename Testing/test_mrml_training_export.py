""" "Add to training set" on a real MRML scene: labels 1/2, dataset.json, never overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from conftest import set_segment_mask

from onfh.dataset import DATASET_JSON, list_cases
from onfh.errors import OnfhError
from onfh.grading import grade_masks
from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT
from onfh.mrml.grading import compute_grade
from onfh.mrml.segmentation_import import volume_geometry
from onfh.mrml.training_export import (
    case_id_from_name,
    export_training_case,
    labels_on_volume_grid,
    plan_case_id,
)
from onfh.segfile import read_segmentation


def _ball(shape_zyx, centre_zyx, radius_vox) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape_zyx)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre_zyx)) <= radius_vox**2


@pytest.fixture
def hip(a_scene, a_volume_node, a_segmentation_node):
    """Overlapping segments, as drawn with 'overwrite other segments: none'.

    The necrosis sticks out of the head a little, which a label file can only express as
    necrosis (head = head ∪ necrosis).
    """
    x, y, z = a_volume_node.GetImageData().GetDimensions()
    head = _ball((z, y, x), (12, 20, 24), 9.0)
    necrosis = _ball((z, y, x), (12, 12, 24), 4.0)
    segmentation = a_segmentation_node.GetSegmentation()
    head_id = segmentation.AddEmptySegment("", FEMORAL_HEAD.name, list(FEMORAL_HEAD.color_rgb))
    necrosis_id = segmentation.AddEmptySegment("", NECROSIS_SEGMENT.name, list(NECROSIS_SEGMENT.color_rgb))
    set_segment_mask(a_scene, a_segmentation_node, head_id, head, a_volume_node)
    set_segment_mask(a_scene, a_segmentation_node, necrosis_id, necrosis, a_volume_node)
    assert (necrosis & ~head).any() and (necrosis & head).any()
    return head, necrosis


def test_case_id_from_name_is_a_valid_case_id():
    assert case_id_from_name("Hip MRI") == "Hip_MRI"
    assert case_id_from_name("  patient #7 (left) ") == "patient_7_left"
    assert case_id_from_name("???") == "case"


def test_labels_follow_the_file_convention_necrosis_wins(a_scene, a_volume_node, a_segmentation_node, hip):
    head, necrosis = hip
    labels = labels_on_volume_grid(a_scene, a_segmentation_node, a_volume_node)
    expected = np.zeros(head.shape, np.uint8)
    expected[head] = 1
    expected[necrosis] = 2
    np.testing.assert_array_equal(labels, expected)
    assert a_scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0, "temp node left"


def test_export_writes_a_case_that_training_can_read(
    a_scene, a_volume_node, a_segmentation_node, hip, tmp_path
):
    head, necrosis = hip
    root = tmp_path / "dataset"
    files = export_training_case(a_scene, a_segmentation_node, a_volume_node, root, description="corrected")
    assert files.case_id == "Hip_MRI"
    assert [c.case_id for c in list_cases(root)] == ["Hip_MRI"]
    image = sitk.ReadImage(str(files.image_path))
    label = sitk.ReadImage(str(files.label_path))
    reference = volume_geometry(a_volume_node)
    for written in (image, label):
        assert written.GetSize() == reference.GetSize()
        np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[5, 9], np.arange(48))
    back = read_segmentation(files.label_path)
    np.testing.assert_array_equal(back.head_mask, head | necrosis)
    np.testing.assert_array_equal(back.necrosis_mask, necrosis)
    from_file = grade_masks(back.head_mask, back.necrosis_mask, back.spacing_mm)
    assert from_file.ratio == pytest.approx(compute_grade(a_segmentation_node).ratio, rel=1e-9)
    dataset = json.loads((root / DATASET_JSON).read_text())
    assert dataset["numTraining"] == 1 and dataset["description"] == "corrected"
    expected = {"image": "imagesTr/Hip_MRI_0000.nii.gz", "label": "labelsTr/Hip_MRI.nii.gz"}
    assert dataset["training"] == [expected]


def test_an_existing_case_is_never_overwritten(a_scene, a_volume_node, a_segmentation_node, hip, tmp_path):
    root = tmp_path / "dataset"
    first = export_training_case(a_scene, a_segmentation_node, a_volume_node, root)
    before = first.label_path.read_bytes(), first.image_path.read_bytes()
    plan = plan_case_id(root, a_volume_node)
    assert plan.exists and plan.case_id == "Hip_MRI" and plan.free_alternative == "Hip_MRI_2"
    with pytest.raises(OnfhError, match="already exists"):
        export_training_case(a_scene, a_segmentation_node, a_volume_node, root)
    assert (first.label_path.read_bytes(), first.image_path.read_bytes()) == before
    second = export_training_case(a_scene, a_segmentation_node, a_volume_node, root, plan.free_alternative)
    assert [c.case_id for c in list_cases(root)] == ["Hip_MRI", "Hip_MRI_2"]
    assert json.loads((root / DATASET_JSON).read_text())["numTraining"] == 2
    assert plan_case_id(root, a_volume_node).free_alternative == "Hip_MRI_3"
    assert second.label_path.read_bytes() == before[0]


def test_a_new_dataset_folder_plans_the_volume_name(a_volume_node, tmp_path):
    plan = plan_case_id(tmp_path / "nothing-yet", a_volume_node)
    assert (plan.case_id, plan.exists, plan.free_alternative) == ("Hip_MRI", False, "Hip_MRI")


def test_missing_or_empty_head_is_refused_without_writing(
    a_scene, a_volume_node, a_segmentation_node, tmp_path
):
    root = tmp_path / "dataset"
    segmentation = a_segmentation_node.GetSegmentation()
    segmentation.AddEmptySegment("", "Necrosis")
    with pytest.raises(OnfhError, match="no 'Femoral head' segment"):
        export_training_case(a_scene, a_segmentation_node, a_volume_node, root)
    segmentation.AddEmptySegment("", "Femoral head")
    with pytest.raises(OnfhError, match="femoral head segment is empty"):
        export_training_case(a_scene, a_segmentation_node, a_volume_node, root)
    assert not root.exists()


def test_export_leaves_the_scene_as_it_was(a_scene, a_volume_node, a_segmentation_node, hip, tmp_path):
    """Issue 11 item 5: no "<name>_ColorTable" (or any other) node left behind per export."""

    def node_ids():
        return [a_scene.GetNthNode(i).GetID() for i in range(a_scene.GetNumberOfNodes())]

    before = node_ids()
    export_training_case(a_scene, a_segmentation_node, a_volume_node, tmp_path / "dataset")
    labels_on_volume_grid(a_scene, a_segmentation_node, a_volume_node)
    added = [a_scene.GetNodeByID(i).GetName() for i in node_ids() if i not in before]
    assert node_ids() == before, f"export left nodes in the scene: {added}"
