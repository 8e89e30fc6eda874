"""Segmentation files (onfh/segfile.py): our writer, Slicer's writer, label maps, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.errors import OnfhError
from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT
from onfh.segfile import read_segmentation, write_seg_nrrd


def label_image(spacing=(0.7, 0.8, 1.2), direction=(0, 0, 1, 1, 0, 0, 0, 1, 0)):
    labels = np.zeros((20, 30, 40), np.uint8)
    labels[5:15, 5:25, 5:35] = 1
    labels[8:12, 8:12, 8:20] = 2
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 3.0))
    image.SetDirection(direction)
    return image, labels


def test_write_then_read_keeps_masks_and_geometry(tmp_path):
    image, labels = label_image()
    path = tmp_path / "case.seg.nrrd"
    write_seg_nrrd(image, path, {"ONFH.ModelId": "test-model"})
    segmentation = read_segmentation(path)
    assert np.array_equal(segmentation.head_mask, labels > 0)
    assert np.array_equal(segmentation.necrosis_mask, labels == 2)
    assert segmentation.spacing_mm == pytest.approx((0.7, 0.8, 1.2))
    assert segmentation.image.GetDirection() == pytest.approx(image.GetDirection())
    assert segmentation.image.GetOrigin() == pytest.approx(image.GetOrigin())
    assert not list(tmp_path.glob(".*partial*")), "no temporary file may remain"


def test_slicer_reads_our_file_with_names_colours_terminology_and_tags(tmp_path):
    slicer = pytest.importorskip("slicer")
    import vtk

    image, _ = label_image()
    path = tmp_path / "case.seg.nrrd"
    write_seg_nrrd(image, path, {"ONFH.ModelId": "test-model", "ONFH.ModelSha256": "abc"})
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    for spec in (FEMORAL_HEAD, NECROSIS_SEGMENT):
        segment = segmentation.GetSegment(spec.key)
        assert segment.GetName() == spec.name
        assert segment.GetColor() == pytest.approx(spec.color_rgb)
        terminology, model = vtk.reference(""), vtk.reference("")
        assert segment.GetTag("TerminologyEntry", terminology)
        assert str(terminology) == spec.terminology_entry
        assert segment.GetTag("ONFH.ModelId", model) and str(model) == "test-model"


def test_reads_seg_nrrd_written_by_slicer_with_overlapping_layers(tmp_path):
    """Slicer's own writer, renamed segments found by name, two layers that overlap."""
    slicer = pytest.importorskip("slicer")
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    head_id = node.GetSegmentation().AddEmptySegment("", "femoral_head")
    lesion_id = node.GetSegmentation().AddEmptySegment("", "Necrotic lesion")
    masks = {}
    for segment_id, box in (
        (head_id, (slice(2, 18), slice(4, 26), slice(4, 36))),
        (lesion_id, (slice(1, 8),) * 3),
    ):
        labelmap = slicer.vtkOrientedImageData()
        labelmap.SetDimensions(40, 30, 20)
        labelmap.SetSpacing(0.9, 0.8, 1.1)
        labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        array = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(20, 30, 40)
        array[:] = 0
        array[box] = 1
        masks[segment_id] = array.astype(bool)
        assert logic.SetBinaryLabelmapToSegment(labelmap, node, segment_id, logic.MODE_REPLACE)
    assert node.GetSegmentation().GetNumberOfLayers() == 2
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    path = tmp_path / "slicer.seg.nrrd"
    storage.SetFileName(str(path))
    assert storage.WriteData(node)

    segmentation = read_segmentation(path)
    head_voxels = np.count_nonzero(masks[head_id] | masks[lesion_id])
    assert np.count_nonzero(segmentation.head_mask) == head_voxels
    assert np.count_nonzero(segmentation.necrosis_mask) == np.count_nonzero(masks[lesion_id])
    assert segmentation.spacing_mm == pytest.approx((0.9, 0.8, 1.1))


def test_label_file_round_trip(tmp_path):
    image, labels = label_image()
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(image, str(path))
    segmentation = read_segmentation(path)
    assert np.count_nonzero(segmentation.head_mask) == np.count_nonzero(labels)
    assert np.count_nonzero(segmentation.necrosis_mask) == np.count_nonzero(labels == 2)


def test_resampled_onto_a_reference_grid(tmp_path):
    image, labels = label_image(spacing=(1, 1, 1), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    path = tmp_path / "labels.nrrd"
    sitk.WriteImage(image, str(path))
    reference = sitk.Image([80, 60, 40], sitk.sitkInt16)
    reference.SetSpacing((0.5, 0.5, 0.5))
    reference.SetOrigin(np.array(image.GetOrigin()) - 0.25)
    segmentation = read_segmentation(path, reference=reference)
    assert segmentation.resampled
    assert segmentation.head_mask.shape == (40, 60, 80)
    assert np.count_nonzero(segmentation.head_mask) == 8 * np.count_nonzero(labels)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("not an image"), "not a readable"),
        (
            lambda p: sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkUInt8) + 5, str(p)),
            "label values must be 0, 1, 2",
        ),
        (lambda p: sitk.WriteImage(sitk.Image([8, 8], sitk.sitkUInt8), str(p)), "expected a 3D image"),
        (lambda p: sitk.WriteImage(sitk.Image([8, 8, 8, 3], sitk.sitkUInt8), str(p)), "expected a 3D image"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.nrrd"
    make(path)
    with pytest.raises(OnfhError, match=message) as caught:
        read_segmentation(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_seg_nrrd_without_head_segment_is_refused(tmp_path):
    image, _ = label_image()
    image.SetMetaData("Segment0_ID", "x")
    image.SetMetaData("Segment0_Name", "Acetabulum")
    image.SetMetaData("Segment0_LabelValue", "1")
    image.SetMetaData("Segment0_Layer", "0")
    path = tmp_path / "other.seg.nrrd"
    sitk.WriteImage(image, str(path), True)
    with pytest.raises(OnfhError, match=r"no femoral head segment.*Acetabulum"):
        read_segmentation(path)


@pytest.mark.parametrize(
    "path, case",
    [
        ("imagesTr/hip_003_0000.nii.gz", "hip_003"),
        ("out/hip_003.seg.nrrd", "hip_003"),
        ("scan.nrrd", "scan"),
        ("dicom/series_0000", "series_0000"),  # folders keep their name
        ("enhanced/hip_mr.dcm", "hip_mr"),  # one Enhanced MR file
        ("_0000.nii.gz", "_0000"),
    ],
)
def test_case_names_match_dataset_truths(path, case):
    from onfh.imageio import case_name

    assert case_name(path) == case
