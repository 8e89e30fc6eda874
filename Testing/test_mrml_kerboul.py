"""Layer-1 Kerboul angle on a real MRML scene: the same voxels give the engine's angle.

A cap phantom of known angle, built in LPS by the engine's tests, becomes a Slicer volume
and segmentation (RAS world); the node's angle must equal the engine's on the label file,
whatever the scan's direction, and follow edits in the live grader.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer")

from conftest import set_segment_mask
from test_kerboul import ANTEROSUPERIOR, SUPERIOR, cap_phantom, oblique

from onfh.kerboul import combined_necrotic_angle
from onfh.mrml.grade_table import TABLE_COLUMNS, grade_table_row, panel_text
from onfh.mrml.grading import LiveGrader
from onfh.mrml.kerboul import compute_kerboul

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_like(scene, image: sitk.Image):
    """A scalar volume node on ``image``'s grid (LPS converted to Slicer's RAS)."""
    import slicer
    import vtk

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Hip MRI")
    data = vtk.vtkImageData()
    data.SetDimensions(*image.GetSize())
    data.AllocateScalars(vtk.VTK_SHORT, 1)
    node.SetAndObserveImageData(data)
    node.SetSpacing(*image.GetSpacing())
    node.SetOrigin(*(LPS_TO_RAS @ np.asarray(image.GetOrigin())))
    direction = LPS_TO_RAS @ np.asarray(image.GetDirection()).reshape(3, 3)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, direction[r, c])
    node.SetIJKToRASDirectionMatrix(matrix)
    assert isinstance(node, slicer.vtkMRMLScalarVolumeNode)
    return node


@pytest.fixture
def cap_scene(a_scene):
    labels = cap_phantom(oblique(), ANTEROSUPERIOR, 55.0)
    volume = volume_like(a_scene, labels)
    node = a_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "caps")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentation = node.GetSegmentation()
    head_id = segmentation.AddEmptySegment("", "Femoral head")
    necrosis_id = segmentation.AddEmptySegment("", "Necrosis")
    array = sitk.GetArrayFromImage(labels)
    set_segment_mask(a_scene, node, head_id, array > 0, volume)
    set_segment_mask(a_scene, node, necrosis_id, array == 2, volume)
    return node, head_id, necrosis_id, labels, volume


def test_node_angle_equals_the_engine_angle_on_the_same_voxels(cap_scene):
    node, head_id, necrosis_id, labels, _ = cap_scene
    expected = combined_necrotic_angle(labels)
    result = compute_kerboul(node, head_id, necrosis_id)
    assert result.combined_angle_deg == pytest.approx(expected.combined_angle_deg, abs=1.0)
    assert result.coronal_angle_deg == pytest.approx(expected.coronal_angle_deg, abs=1.0)
    assert np.allclose(result.head_centre_mm, expected.head_centre_mm, atol=0.1)
    assert result.coronal_angle_deg < result.sagittal_angle_deg  # the axis is anterosuperior


def test_live_grader_shows_the_angle_and_follows_edits(a_scene, cap_scene):
    node, _, necrosis_id, _, volume = cap_scene
    grader = LiveGrader(node, lambda update: None, lambda: None)
    update = grader.recompute()
    assert update.kerboul["grade"] == combined_necrotic_angle(cap_scene[3]).grade
    assert "°" in panel_text(update)["kerboul"] and "risk" in panel_text(update)["kerboul"]
    row = dict(zip([name for name, _ in TABLE_COLUMNS], grade_table_row("caps", update)))
    assert row["Kerboul angle (deg)"] == update.kerboul["combined_angle_deg"]
    assert row["Kerboul grade"] == str(update.kerboul["grade"])
    superior = sitk.GetArrayFromImage(cap_phantom(oblique(), SUPERIOR, 70.0)) == 2
    set_segment_mask(a_scene, node, necrosis_id, superior, volume)
    larger = grader.recompute().kerboul
    assert larger["combined_angle_deg"] == pytest.approx(280.0, abs=10.0) and larger["grade"] == 3
    grader.close()


def test_no_head_no_angle(a_scene, a_segmentation_node):
    head_id = a_segmentation_node.GetSegmentation().AddEmptySegment("", "Femoral head")
    assert compute_kerboul(a_segmentation_node, head_id, None) is None
    assert panel_text(None)["kerboul"] == "-"


def test_layers_cropped_to_different_extents_give_the_engine_angle(a_segmentation_node):
    """Slicer crops each layer to its content: the necrosis layer starts where the cap does."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    labels = cap_phantom(np.eye(3), SUPERIOR, 60.0)
    array = sitk.GetArrayFromImage(labels)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        matrix.SetElement(r, r, LPS_TO_RAS[r, r])

    def layer(mask_zyx, value):
        k = np.flatnonzero(mask_zyx.any(axis=(1, 2)))
        image = slicer.vtkOrientedImageData()
        image.SetExtent(0, mask_zyx.shape[2] - 1, 0, mask_zyx.shape[1] - 1, int(k[0]), int(k[-1]))
        image.SetSpacing(*labels.GetSpacing())
        image.SetOrigin(*(LPS_TO_RAS @ np.asarray(labels.GetOrigin())))
        image.SetDirectionMatrix(matrix)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        values[:] = (mask_zyx[k[0] : k[-1] + 1] * value).astype(np.uint8).ravel()
        return image

    segmentation = a_segmentation_node.GetSegmentation()
    head_id = segmentation.AddEmptySegment("", "Femoral head")
    necrosis_id = segmentation.AddEmptySegment("", "Necrosis")
    segmentation.GetSegment(head_id).AddRepresentation("Binary labelmap", layer(array == 1, 1))
    value = segmentation.GetSegment(necrosis_id).GetLabelValue()
    segmentation.GetSegment(necrosis_id).AddRepresentation("Binary labelmap", layer(array == 2, value))
    result = compute_kerboul(a_segmentation_node, head_id, necrosis_id)
    expected = combined_necrotic_angle(labels)
    assert result.combined_angle_deg == pytest.approx(expected.combined_angle_deg, abs=1.0)
    assert np.allclose(result.head_centre_mm, expected.head_centre_mm, atol=0.1)
