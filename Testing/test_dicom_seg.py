"""DICOM SEG out (``onfh segment`` on a DICOM series) and in (``onfh grade x.seg.dcm``).

The known answers: the label map ``onfh segment --label-map`` writes next to the SEG, and
the phantoms' exact labels. Every check maps voxels to source instances through UIDs the
test computes itself (``slice_uid``), not through the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from cli_checks import run_onfh
from dicom_fixtures import (  # noqa: F401 (fixtures)
    PHANTOM_SERIES_UID,
    bilateral_dicom_phantom,
    dciodvfy,
    segmented_dicom_case,
    tiny_model_dir,
)
from model_fixtures import DIRECTIONS, phantom

from onfh.dicom_seg import SEGMENTATION_STORAGE, read_dicom_seg, segment_masks, write_dicom_seg
from onfh.dicom_source import source_datasets
from onfh.imageio import read_image
from onfh.labels import SEGMENTS
from onfh.segfile import read_segmentation
from onfh.synthetic.dicom_series import slice_uid, write_mr_series

MODEL = {"id": "phantom-truth", "version": "1", "sha256": "0123456789abcdef" * 4}


def masks_by_source_instance(seg, series_uid: str, depth: int) -> np.ndarray:
    """The SEG's (slices, rows, columns, 2) masks, slice k read from the instance of slice k."""
    uids = [slice_uid(series_uid, k) for k in range(depth)]
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=[1, 2], assert_missing_frames_are_empty=True
    )
    return pixels.astype(bool)


def dcmqi_srgb(scaled_lab) -> list[int]:
    """The sRGB colour 3D Slicer shows for a RecommendedDisplayCIELabValue: dcmqi's
    ``ColorUtilities::getSRGBFromIntegerScaledCIELabPCS`` (QIICR/dcmqi libsrc/ColorUtilities.cpp,
    D65 white point), rewritten here so the check does not rest on highdicom's conversion."""
    lightness = scaled_lab[0] / 65535 * 100
    a, b = (v / 65535 * 255 - 128 for v in scaled_lab[1:])
    y = (lightness + 16) / 116
    xyz = [a / 500 + y, y, y - b / 200]
    xyz = [t**3 if t**3 > 0.008856 else (t - 16 / 116) / 7.787 for t in xyz]
    x, y, z = (t * w / 100 for t, w in zip(xyz, (95.047, 100.0, 108.883)))
    linear = [
        x * 3.2406 + y * -1.5372 + z * -0.4986,
        x * -0.9689 + y * 1.8758 + z * 0.0415,
        x * 0.0557 + y * -0.2040 + z * 1.0570,
    ]
    return [round(255 * (1.055 * c ** (1 / 2.4) - 0.055 if c > 0.0031308 else 12.92 * c)) for c in linear]


def test_seg_references_the_series_and_holds_the_label_map(segmented_dicom_case):  # noqa: F811
    case = segmented_dicom_case
    seg = hd.seg.segread(case["dicom_seg"])
    mr = pydicom.dcmread(next(case["series"].iterdir()), stop_before_pixels=True)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == PHANTOM_SERIES_UID
    assert seg.FrameOfReferenceUID == mr.FrameOfReferenceUID
    assert (seg.StudyInstanceUID, seg.PatientID) == (mr.StudyInstanceUID, mr.PatientID)
    assert seg.SeriesInstanceUID != mr.SeriesInstanceUID

    for number, spec in enumerate(SEGMENTS, start=1):
        item = seg.SegmentSequence[number - 1]
        assert item.SegmentNumber == number and item.SegmentLabel == spec.name
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == spec.type[1]
        assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == spec.category[1]
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == case["case_json"]["model"]["id"]
        assert case["case_json"]["model"]["sha256"] in algorithm.AlgorithmParameters
        assert item.SegmentAlgorithmName == algorithm.AlgorithmName  # what Slicer's plugin shows
        rgb = [round(255 * c) for c in spec.color_rgb]
        shown = dcmqi_srgb([int(v) for v in item.RecommendedDisplayCIELabValue])
        assert np.abs(np.subtract(shown, rgb)).max() <= 1, (spec.name, shown, rgb)
    necrosis = seg.SegmentSequence[1]
    assert necrosis.AnatomicRegionSequence[0].CodeValue == "2812003"

    label = sitk.ReadImage(str(case["label_map"]))
    labels = sitk.GetArrayFromImage(label)
    expected = segment_masks(labels)
    assert seg.NumberOfFrames == int(
        expected.any(axis=(1, 2)).sum()
    )  # one frame per non-empty slice and segment
    got = masks_by_source_instance(seg, PHANTOM_SERIES_UID, labels.shape[0])
    assert np.array_equal(got, expected)
    assert expected[..., 0].sum() > 1000  # a real head, not an empty comparison


def test_seg_and_sr_pass_dciodvfy(segmented_dicom_case):  # noqa: F811
    for key in ("dicom_seg", "dicom_sr"):
        errors, _ = dciodvfy(segmented_dicom_case[key])
        assert errors == [], f"{key}: {errors}"


@pytest.mark.parametrize("direction", ["axial", "flipped", "sagittal", "oblique"])
def test_every_orientation_maps_voxels_to_their_source_instance(tmp_path, direction):
    image, truth = phantom(DIRECTIONS[direction], spacing_mm=(1.5, 1.4, 1.6), size=(48, 44, 30))
    series_uid = f"{PHANTOM_SERIES_UID}.{len(direction)}"
    write_mr_series(image, tmp_path / "mr", series_uid)
    grid = read_image(tmp_path / "mr")
    labels = sitk.Resample(truth, grid, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(truth))  # same grid
    write_dicom_seg(labels, source_datasets(tmp_path / "mr", grid), MODEL, tmp_path / "hip.seg.dcm")

    seg = hd.seg.segread(tmp_path / "hip.seg.dcm")
    truth_array = sitk.GetArrayFromImage(truth)
    got = masks_by_source_instance(seg, series_uid, truth_array.shape[0])
    assert np.array_equal(got, segment_masks(truth_array))

    back = read_segmentation(tmp_path / "hip.seg.dcm", reference=grid)  # rebuilt, then onto the MR grid
    assert back.source == "DICOM SEG"
    assert np.array_equal(sitk.GetArrayFromImage(back.image), truth_array)
    alone = read_dicom_seg(tmp_path / "hip.seg.dcm")  # on the SEG's own grid: same voxel size and count
    assert np.allclose(sorted(alone.spacing_mm), sorted(grid.GetSpacing()), atol=1e-6)
    assert alone.head_mask.sum() == (truth_array > 0).sum()
    assert alone.necrosis_mask.sum() == (truth_array == 2).sum()


def test_a_bilateral_scan_has_one_head_segment_over_both_hips(tmp_path):
    truth, _, sources = bilateral_dicom_phantom(tmp_path / "mr")
    seg = write_dicom_seg(truth, sources, MODEL, tmp_path / "both.seg.dcm")
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Femoral head", "Necrosis"]
    back = read_dicom_seg(tmp_path / "both.seg.dcm")
    heads = sitk.ConnectedComponent(sitk.GetImageFromArray(back.head_mask.astype(np.uint8)))
    assert sitk.GetArrayFromImage(heads).max() == 2  # both hips in the one segment
    assert back.head_mask.sum() == (sitk.GetArrayFromImage(truth) > 0).sum()


def test_grade_of_the_dicom_seg_equals_grade_of_the_seg_nrrd(segmented_dicom_case, capfd):  # noqa: F811
    case = segmented_dicom_case
    reports = {}
    for key in ("dicom_seg", "segmentation"):
        outcome = run_onfh(capfd, "grade", case[key], "--json")
        assert outcome.code == 0, outcome.err
        reports[key] = json.loads(outcome.out)
    dicom, nrrd = reports["dicom_seg"], reports["segmentation"]
    for field in ("femoral_head_volume_ml", "necrosis_volume_ml", "necrosis_ratio"):
        assert dicom[field] == pytest.approx(nrrd[field], rel=1e-9, abs=1e-12), field
    assert dicom["steinberg_grade"] == nrrd["steinberg_grade"]
    assert dicom["kerboul"]["combined_angle_deg"] == pytest.approx(
        nrrd["kerboul"]["combined_angle_deg"], abs=0.1
    )
    assert dicom["segments"]["femoral_head"] == ["Femoral head"]

    outcome = run_onfh(capfd, "grade", case["dicom_seg"], "--image", case["series"], "--json")
    assert outcome.code == 0, outcome.err
    on_mr = json.loads(outcome.out)
    assert on_mr["femoral_head_volume_ml"] == pytest.approx(nrrd["femoral_head_volume_ml"], rel=1e-9)
    assert on_mr["input"]["size"] == list(case["image"].GetSize())


def _bad_files(case: dict, folder: Path) -> dict[str, tuple[Path, str]]:
    seg_bytes = case["dicom_seg"].read_bytes()
    truncated = folder / "truncated.seg.dcm"
    truncated.write_bytes(seg_bytes[: len(seg_bytes) * 2 // 3])
    garbage = folder / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 200 + b"not a dicom file at all")
    mr_slice = next(case["series"].iterdir())
    return {
        "truncated": (truncated, "truncated"),
        "garbage": (garbage, "not a readable DICOM file"),
        "mr slice": (mr_slice, "MR Image Storage"),
        "structured report": (case["dicom_sr"], "Comprehensive 3D SR"),
    }


@pytest.mark.parametrize("kind", ["truncated", "garbage", "mr slice", "structured report"])
def test_bad_dicom_files_give_one_line_naming_the_file(segmented_dicom_case, tmp_path, capfd, kind):  # noqa: F811
    path, phrase = _bad_files(segmented_dicom_case, tmp_path)[kind]
    outcome = run_onfh(capfd, "grade", path)
    assert outcome.code != 0
    assert len(outcome.error_lines) == 1, outcome.err
    assert str(path) in outcome.error_lines[0] and phrase in outcome.error_lines[0], outcome.error_lines[0]


def test_a_seg_without_a_femoral_head_segment_is_refused(tmp_path, capfd):
    image, truth = phantom(DIRECTIONS["axial"], spacing_mm=(2.0, 2.0, 2.0), size=(40, 40, 30))
    write_mr_series(image, tmp_path / "mr", PHANTOM_SERIES_UID)
    grid = read_image(tmp_path / "mr")
    seg = write_dicom_seg(truth, source_datasets(tmp_path / "mr", grid), MODEL, tmp_path / "x.seg.dcm")
    item = seg.SegmentSequence[0]
    item.SegmentLabel = "Acetabulum"
    item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "38552005"  # not a head of femur
    seg.save_as(tmp_path / "renamed.seg.dcm")
    outcome = run_onfh(capfd, "grade", tmp_path / "renamed.seg.dcm")
    assert outcome.code != 0 and len(outcome.error_lines) == 1
    assert "no femoral head segment" in outcome.error_lines[0] and "'Acetabulum'" in outcome.error_lines[0]

    item.SegmentLabel = "femoral head"  # found by its label when its code is not ours
    seg.save_as(tmp_path / "by_label.seg.dcm")
    assert (
        read_dicom_seg(tmp_path / "by_label.seg.dcm").head_mask.sum()
        == (sitk.GetArrayFromImage(truth) > 0).sum()
    )


def test_a_fractional_seg_from_another_tool_counts_voxels_more_than_half_inside(tmp_path):
    image, truth = phantom(DIRECTIONS["axial"], spacing_mm=(2.0, 2.0, 2.0), size=(40, 40, 30))
    write_mr_series(image, tmp_path / "mr", PHANTOM_SERIES_UID)
    grid = read_image(tmp_path / "mr")
    labels = sitk.GetArrayFromImage(truth)
    masks = segment_masks(labels).astype(np.float32)
    masks[..., 0] = np.where(labels > 0, 0.8, 0.0)  # inside: 0.8; a faint halo around: 0.3
    halo = sitk.GetArrayFromImage(
        sitk.BinaryDilate(sitk.GetImageFromArray((labels > 0).astype(np.uint8)), [2] * 3)
    )
    masks[..., 0][(halo > 0) & (labels == 0)] = 0.3
    from onfh.dicom_seg import segment_descriptions

    seg = hd.seg.Segmentation(
        source_images=source_datasets(tmp_path / "mr", grid),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=segment_descriptions(MODEL),
        series_instance_uid=hd.UID(),
        series_number=5,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="another tool",
        manufacturer_model_name="x",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(tmp_path / "fractional.seg.dcm")
    back = read_segmentation(tmp_path / "fractional.seg.dcm", reference=grid)
    assert np.array_equal(back.head_mask, labels > 0)
    assert np.array_equal(back.necrosis_mask, labels == 2)
