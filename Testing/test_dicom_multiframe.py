"""Enhanced multi-frame MR DICOM input: one file holding every slice (``onfh.dicom_volume``).

The files are real: a phantom written as a classic MR series (``write_mr_series``), converted
by highdicom's ``LegacyConvertedEnhancedMRImage``, its frames then shuffled with pydicom (a
reader must sort by plane position, not by frame order) and, for the Enhanced MR SOP class,
relabelled. The classic series read by SimpleITK is the reference grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from cli_checks import assert_refused, run_onfh
from model_fixtures import DIRECTIONS, phantom

from onfh.errors import OnfhError
from onfh.imageio import read_image
from onfh.synthetic.dicom_series import write_mr_series

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_CONVERTED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
SERIES_UID = "1.2.826.0.1.3680043.8.498.5151"


def enhanced_dataset(classic_folder: Path, sop_class: str, seed: int = 1):
    """The classic series as one multi-frame instance of ``sop_class``, frames in shuffled order."""
    classic = [pydicom.dcmread(path) for path in sorted(classic_folder.iterdir())]
    dataset = hd.legacy.LegacyConvertedEnhancedMRImage(classic, hd.UID(), 4, hd.UID(), 1)
    order = np.random.default_rng(seed).permutation(int(dataset.NumberOfFrames))
    frames = dataset.PerFrameFunctionalGroupsSequence
    dataset.PerFrameFunctionalGroupsSequence = pydicom.Sequence([frames[int(i)] for i in order])
    dataset.PixelData = np.ascontiguousarray(dataset.pixel_array[order]).tobytes()
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = sop_class
    return dataset


def save(dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def classic_series(tmp_path_factory) -> Path:
    image, _ = phantom(DIRECTIONS["oblique"], size=(40, 36, 24), noise=8.0, seed=3)
    folder = tmp_path_factory.mktemp("classic") / "hip_mr"
    write_mr_series(image, folder, SERIES_UID)
    return folder


def assert_same_voxels_in_patient_space(image: sitk.Image, reference: sitk.Image) -> None:
    """Every reference voxel centre finds the same value in ``image`` (nearest neighbour, none outside)."""
    assert sorted(image.GetSize()) == sorted(reference.GetSize())
    np.testing.assert_allclose(sorted(image.GetSpacing()), sorted(reference.GetSpacing()), atol=1e-6)
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(reference).astype(np.float32)
    )


@pytest.mark.parametrize("sop_class", [ENHANCED_MR, LEGACY_CONVERTED_MR])
def test_an_enhanced_mr_file_maps_voxels_where_the_classic_series_does(classic_series, tmp_path, sop_class):
    path = save(enhanced_dataset(classic_series, sop_class), tmp_path / "hip.dcm")
    reference = read_image(classic_series)
    image = read_image(path)
    assert image.GetDimension() == 3 and image.GetSize() == reference.GetSize()
    assert_same_voxels_in_patient_space(image, reference)
    # The in-plane axes are the file's row and column cosines; slices lie along their normal.
    np.testing.assert_allclose(image.GetDirection()[:2], reference.GetDirection()[:2], atol=1e-6)
    normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
    reference_normal = np.asarray(reference.GetDirection()).reshape(3, 3)[:, 2]
    assert abs(float(normal @ reference_normal)) == pytest.approx(1.0)


def test_a_folder_holding_one_enhanced_mr_file_reads_like_the_file(classic_series, tmp_path):
    folder = tmp_path / "enhanced"
    save(enhanced_dataset(classic_series, ENHANCED_MR), folder / "IM0001")  # no suffix, as PACS export
    assert_same_voxels_in_patient_space(read_image(folder), read_image(classic_series))


def test_frames_that_are_two_echoes_are_refused_in_one_line(classic_series, tmp_path):
    dataset = enhanced_dataset(classic_series, ENHANCED_MR)
    frames = list(dataset.PerFrameFunctionalGroupsSequence)
    dataset.PerFrameFunctionalGroupsSequence = pydicom.Sequence(frames + [pydicom.Dataset(f) for f in frames])
    dataset.PixelData = dataset.PixelData * 2
    dataset.NumberOfFrames = 2 * len(frames)
    path = save(dataset, tmp_path / "two_echoes.dcm")
    with pytest.raises(OnfhError) as refused:
        read_image(path)
    message = str(refused.value)
    assert message.startswith(str(path)) and "48 frames" in message and "one regularly spaced" in message
    assert "\n" not in message


def test_a_series_of_several_enhanced_files_is_refused_naming_the_folder(classic_series, tmp_path):
    folder = tmp_path / "two_files"
    for number in (1, 2):
        dataset = enhanced_dataset(classic_series, ENHANCED_MR, seed=number)
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = hd.UID()
        dataset.SeriesInstanceUID = SERIES_UID
        save(dataset, folder / f"{number}.dcm")
    with pytest.raises(OnfhError, match="is 2 multi-frame files") as refused:
        read_image(folder)
    assert str(refused.value).startswith(str(folder))


def test_another_multi_frame_object_is_refused_naming_its_sop_class(classic_series, tmp_path):
    dataset = enhanced_dataset(classic_series, ENHANCED_MR)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    path = save(dataset, tmp_path / "capture.dcm")
    with pytest.raises(OnfhError, match="Multi-frame Grayscale Word Secondary Capture") as refused:
        read_image(path)
    assert str(refused.value).startswith(str(path)) and "export the MRI as an MR series" in str(refused.value)


@pytest.mark.parametrize("as_folder", [False, True])
def test_a_single_slice_is_refused_with_its_dimension(classic_series, tmp_path, capfd, as_folder):
    """One classic MR slice, alone in a folder (the series reader gives 2D; it was a reshape
    traceback) or as a file (SimpleITK gives one slice of 3D); never a traceback."""
    one = sorted(classic_series.iterdir())[0]
    target = tmp_path / "one_slice" if as_folder else tmp_path / "slice.dcm"
    if as_folder:
        target.mkdir()
        (target / one.name).write_bytes(one.read_bytes())
    else:
        target.write_bytes(one.read_bytes())
    outcome = run_onfh(capfd, "grade", tmp_path / "missing.seg.nrrd", "--image", target)
    assert_refused(outcome, 2, str(target), "expected a 3D image, got ", "2D")


def test_segment_writes_no_dicom_outputs_over_a_multi_frame_source_and_says_why(tmp_path, capfd):
    """The SEG and SR reference classic instances one per slice: an enhanced source (the file
    or its folder) is segmented and graded without them, and the line and the report say why."""
    image, _ = phantom(DIRECTIONS["oblique"], noise=8.0, seed=3)
    write_mr_series(image, tmp_path / "classic", SERIES_UID)
    path = save(enhanced_dataset(tmp_path / "classic", ENHANCED_MR), tmp_path / "in" / "hip_mr.dcm")
    for number, source in enumerate((path, path.parent)):
        out = tmp_path / f"out{number}"
        outcome = run_onfh(capfd, "segment", source, "-o", out, "--no-interval", "--progress", "none")
        assert outcome.code == 0, outcome.err
        assert "no DICOM SEG/SR" in outcome.out and "Enhanced MR Image Storage" in outcome.out
        case = "hip_mr" if source == path else "in"
        assert sorted(p.name for p in out.iterdir()) == [f"{case}.json", f"{case}.seg.nrrd", "summary.csv"]
        report = json.loads((out / f"{case}.json").read_text())
        assert "multi-frame" in report["dicom_outputs_skipped"]
    outcome = run_onfh(
        capfd, "segment", path, "-o", tmp_path / "plain", "--no-interval", "--no-dicom", "--progress", "none"
    )
    assert outcome.code == 0, outcome.err
    assert "no DICOM SEG/SR" not in outcome.out
