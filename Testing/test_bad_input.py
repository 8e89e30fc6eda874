"""Bad input from careless use (issue 16), part 1: damaged files, geometry, labels, grids,
bilateral truths, model.json, help text. No model is needed here; the commands that run
one are in ``test_bad_input_outputs.py``.

Each refusal asserts the exit code, the one ``onfh: error:`` line and that no output
file appeared or changed (``cli_checks``).
"""

from __future__ import annotations

import csv
import json
import re
import shlex

import numpy as np
import pytest
import SimpleITK as sitk
from cli_checks import (
    ROOT,
    assert_refused,
    ball_labels,
    noise_image,
    run_child,
    run_onfh,
    snapshot,
    truncate,
    write_image,
)

from onfh.errors import OnfhError
from onfh.geometry_limits import MAX_VOXELS, segmentation_geometry_problem, voxel_count_problem
from onfh.imageio import read_image
from onfh.plausibility import head_pair_problems, with_problems

# ---------------------------------------------------------------- 1. damaged files


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_a_truncated_label_file_is_refused_by_grade(tmp_path, capfd, suffix):
    path = write_image(tmp_path / f"hip_label{suffix}", ball_labels(), compress=suffix != ".nii")
    truncate(path)
    before = snapshot(tmp_path)
    outcome = run_onfh(capfd, "grade", path)
    assert_refused(outcome, 2, str(path), "truncated")
    assert outcome.out == "" and snapshot(tmp_path) == before


def test_a_compressed_stream_with_damage_inside_is_refused(tmp_path, capfd):
    path = write_image(tmp_path / "hip_label.nii.gz", ball_labels())
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 16):
        data[offset] ^= 0xFF  # a bad sector: same length, different bytes
    path.write_bytes(bytes(data))
    outcome = run_onfh(capfd, "grade", path)
    assert_refused(outcome, 2, str(path))
    assert "damaged" in outcome.err or "truncated" in outcome.err


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_every_reader_refuses_a_truncated_image(tmp_path, suffix):
    path = noise_image(tmp_path / f"hip{suffix}")
    if suffix == ".nii":
        path = write_image(tmp_path / "hip.nii", sitk.GetArrayFromImage(read_image(path)), compress=False)
    truncate(path)
    with pytest.raises(OnfhError, match="truncated"):
        read_image(path)


def test_intact_files_are_not_refused_even_when_oddly_named(tmp_path):
    plain = noise_image(tmp_path / "hip.nii")  # NIfTI without .gz is never compressed
    misnamed = tmp_path / "plain_inside.nii.gz"
    misnamed.write_bytes(plain.read_bytes())  # not gzip-compressed despite its name
    for path in (plain, misnamed, noise_image(tmp_path / "hip.nii.gz")):
        assert read_image(path).GetSize() == (40, 40, 40)


def test_a_dicom_series_with_a_truncated_slice_is_refused(tmp_path):
    from model_fixtures import DIRECTIONS, phantom

    from onfh.synthetic.dicom_series import slice_uid, write_mr_series

    image, _ = phantom(DIRECTIONS["axial"], size=(48, 48, 30))
    folder = tmp_path / "patient"
    series_uid = "1.2.826.0.1.3680043.2.1125.9"
    write_mr_series(image, folder, series_uid)
    truncate(folder / f"{slice_uid(series_uid, 12)}.dcm", 0.5)  # GDCM silently leaves such a file out
    with pytest.raises(OnfhError, match="has missing slices"):
        read_image(folder)


# ---------------------------------------------------------------- 2. geometry limits


@pytest.mark.parametrize(
    ("spacing", "size", "phrase"),
    [
        ((10.0, 10.0, 10.0), (40, 40, 30), "exceeds the limit of 4 mm"),
        ((5.0, 5.0, 5.0), (60, 60, 40), "exceeds the limit of 4 mm"),
        ((3.5, 3.0, 3.0), (210, 24, 24), "field of view 735 x 72 x 72 mm exceeds the limit of 700 mm"),
        ((0.01, 0.01, 0.01), (40, 40, 40), "below the limit of 0.1 mm"),
    ],
)
def test_geometry_outside_the_limits_is_named(spacing, size, phrase):
    assert phrase in segmentation_geometry_problem(size, spacing)


def test_clinical_geometries_are_within_the_limits():
    for spacing, size in [((0.7, 0.7, 1.0), (256, 256, 120)), ((1.4, 1.4, 1.0), (320, 256, 120))]:
        assert segmentation_geometry_problem(size, spacing) is None
    assert segmentation_geometry_problem((140, 140, 24), (0.6, 0.6, 3.0)) is None  # thick slices
    assert "exceeds the limit" in voxel_count_problem((2048, 2048, 2048))
    assert voxel_count_problem((512, 512, 400)) is None and MAX_VOXELS >= 512 * 512 * 400


def test_a_header_claiming_billions_of_voxels_is_refused_before_allocation(tmp_path, capfd):
    """A 3000^3 float header (108 GB) with no data: refused from the header, not by the kernel."""
    path = tmp_path / "huge.mha"
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 3000 3000 3000\nElementSpacing = 1 1 1\n"
        "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n"
    )
    outcome = run_onfh(capfd, "grade", path)
    assert_refused(outcome, 2, str(path), "3000 x 3000 x 3000", "exceeds the limit")


def test_two_heads_that_cannot_be_a_patients_two_hips_are_flagged():
    assert head_pair_problems([(0, 0, 0)], [40.0]) == []
    assert head_pair_problems([(-90, 0, 0), (90, 0, 0)], [40.0, 44.0]) == []  # a bilateral scan
    near = head_pair_problems([(-50, 0, 0), (55, 0, 0)], [40.0, 42.0])
    assert near == ["two heads 105 mm apart (adult hips: 130-260 mm)"]
    unequal = head_pair_problems([(-90, 0, 0), (90, 0, 0)], [12.0, 44.0])
    assert unequal == ["two heads of unequal size (12.0 and 44.0 mL)"]
    passed = {"passed": True, "summary": "passed", "heads": []}
    assert with_problems(passed, []) is passed
    flagged = with_problems(passed, near)
    assert not flagged["passed"] and flagged["summary"] == "low confidence: " + near[0]
    failed = {"passed": False, "summary": "low confidence: sphere radius 14 mm", "heads": []}
    assert with_problems(failed, unequal)["summary"] == (
        "low confidence: sphere radius 14 mm; two heads of unequal size (12.0 and 44.0 mL)"
    )


# ---------------------------------------------------------------- 5. grids that do not overlap


def test_grade_with_an_image_elsewhere_in_space_says_the_grids_do_not_overlap(tmp_path, capfd):
    labels = write_image(tmp_path / "hip_label.nii.gz", ball_labels())
    other = write_image(
        tmp_path / "other.nii.gz", np.ones((40, 40, 40), np.float32), origin_mm=(500.0, 0.0, 0.0)
    )
    before = snapshot(tmp_path)
    outcome = run_onfh(capfd, "grade", labels, "--image", other)
    assert_refused(outcome, 2, str(labels), "do not overlap")
    assert snapshot(tmp_path) == before


def test_grade_with_an_image_that_misses_the_head_says_so(tmp_path, capfd):
    labels = write_image(tmp_path / "hip_label.nii.gz", ball_labels())
    corner = write_image(  # overlaps the label grid only in a corner without head
        tmp_path / "corner.nii.gz", np.ones((10, 10, 10), np.float32), origin_mm=(35.0, 35.0, 35.0)
    )
    outcome = run_onfh(capfd, "grade", labels, "--image", corner)
    assert_refused(outcome, 2, "femoral head lies outside the reference image")


# ---------------------------------------------------------------- 7. NaN labels and NaN images


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_nan_in_a_float_label_map_is_invalid(tmp_path, capfd, suffix):
    labels = ball_labels().astype(np.float32)
    labels[labels == 2] = np.nan
    path = write_image(tmp_path / f"hip_label{suffix}", labels)
    outcome = run_onfh(capfd, "grade", path)
    assert_refused(outcome, 2, str(path), "NaN")


def test_an_all_nan_label_map_is_not_an_empty_head(tmp_path, capfd):
    path = write_image(tmp_path / "hip_label.nii.gz", np.full((20, 20, 20), np.nan, np.float32))
    outcome = run_onfh(capfd, "grade", path)
    assert_refused(outcome, 2, "NaN")
    assert "empty" not in outcome.err


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_an_all_nan_image_is_reported_as_nan_not_constant(tmp_path, suffix):
    from onfh.case_segmentation import read_input

    path = write_image(tmp_path / f"hip{suffix}", np.full((40, 40, 40), np.nan, np.float32))
    with pytest.raises(OnfhError, match="every voxel is NaN") as caught:
        read_input(path)
    assert "constant" not in str(caught.value)


# ---------------------------------------------------------------- 8. bilateral truths in evaluate


def _two_hips(right_lesion: int, left_lesion: int) -> np.ndarray:
    """Two heads 180 mm apart on a 2 mm grid (x: 120 voxels), lesions of the given radii."""
    shape = (30, 30, 120)
    right = ball_labels(shape, centre=(15, 15, 15), radius=11, lesion_radius=right_lesion)
    left = ball_labels(shape, centre=(15, 15, 105), radius=11, lesion_radius=left_lesion)
    return np.maximum(right, left)


def test_evaluate_grades_each_hip_of_a_bilateral_truth_and_says_how_it_pairs(tmp_path, capfd):
    spacing = (2.0, 2.0, 2.0)
    truth = _two_hips(right_lesion=5, left_lesion=9)
    write_image(tmp_path / "truth" / "both.nii.gz", truth, spacing)
    prediction = truth.copy()
    prediction[prediction == 2] = 1  # the prediction misses both lesions
    write_image(tmp_path / "pred" / "both.nii.gz", prediction, spacing)
    write_image(tmp_path / "truth" / "one.nii.gz", ball_labels(), spacing)
    write_image(tmp_path / "pred" / "one.nii.gz", ball_labels(), spacing)
    out = tmp_path / "report"
    outcome = run_onfh(
        capfd, "evaluate", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "-o", out
    )
    assert outcome.code == 0, outcome.err
    assert "1 case(s) with both hips" in outcome.err and "plane midway" in outcome.err
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [(r["case"], r["hip"]) for r in rows] == [("both", "right"), ("both", "left"), ("one", "")]
    from onfh.grading import grade_label_map

    x = np.arange(truth.shape[2])
    for row, side in zip(rows[:2], (x < 60, x >= 60)):
        alone = np.where(side[np.newaxis, np.newaxis, :], truth, 0)
        assert row["true_grade"] == grade_label_map(alone, spacing).grade
        assert row["pred_grade"] == "A"
    assert {rows[0]["true_grade"], rows[1]["true_grade"]} == {"A", "C"}  # pooled, one grade for both


def test_a_truth_with_one_head_and_a_small_fragment_stays_one_hip():
    from onfh.bilateral import bilateral_sides

    labels = _two_hips(5, 5)
    labels[:, :, 60:] = 0
    labels[14:16, 14:16, 100:102] = 1  # a stray voxel cluster far away
    grid = sitk.GetImageFromArray(labels)
    grid.SetSpacing((2.0, 2.0, 2.0))
    assert bilateral_sides(labels, grid) is None


# ---------------------------------------------------------------- 9. provenance without paths


def test_shipped_model_json_has_no_machine_paths():
    for path in sorted((ROOT / "model_weights").glob("*/model.json")):
        training = json.loads(path.read_text())["training"]
        assert "/" not in training["dataset"] and "\\" not in training["dataset"], path
        for argument in shlex.split(training.get("command") or ""):
            assert not argument.startswith("/") and "/" not in argument, (path, argument)


def test_training_command_keeps_options_and_drops_folders():
    from onfh.training.trainer import portable_argument

    assert portable_argument("/home/me/data/synth48") == "synth48"
    assert portable_argument("models/run-3/") == "run-3"
    assert portable_argument("--fold") == "--fold" and portable_argument("all") == "all"


def test_synthetic_dataset_json_is_named_after_its_folder(tmp_path, capfd):
    out = tmp_path / "cohort"
    size, spacing = ("--size", "96", "96", "72"), ("--spacing", "1.5", "1.5", "1.5")
    outcome = run_onfh(capfd, "synth", out, "--cases", "1", *size, *spacing)
    assert outcome.code == 0, outcome.err
    text = (out / "dataset.json").read_text()
    assert json.loads(text)["name"] == "cohort" and "partial" not in text


# ---------------------------------------------------------------- 10. small things


def test_grade_help_shows_plain_percent_signs(capfd):
    outcome = run_onfh(capfd, "grade", "--help")
    assert outcome.code == 0 and "15 % <= B <= 30 %" in outcome.out and "%%" not in outcome.out


def test_grade_on_a_folder_says_it_is_a_folder(tmp_path, capfd):
    outcome = run_onfh(capfd, "grade", tmp_path)
    assert_refused(outcome, 2, str(tmp_path), "is a folder")


def test_unknown_keys_in_model_json_are_refused_with_a_suggestion(tmp_path):
    from onfh.modelfolder import default_config, validate_config

    config = default_config()
    config["segmenter"]["patchsize"] = [64, 64, 64]
    with pytest.raises(
        OnfhError, match=re.escape("unknown key 'segmenter.patchsize' (did you mean 'patch_size'?)")
    ):
        validate_config(config, require_sha256=False)
    config = default_config()
    config["trainig"] = {}
    with pytest.raises(OnfhError, match="unknown key 'trainig'"):
        validate_config(config, require_sha256=False)


def test_folds_are_numbered_from_0_everywhere():
    from onfh.training.recipe import TrainingRecipe
    from onfh.training.trainer import TrainingPlan, plan_runs

    plan = TrainingPlan(dataset="d", model_dir="m", recipe=TrainingRecipe(), folds=2)
    runs = plan_runs(plan, ["a", "b"], [["a"], ["b"]])
    assert [(run.out_dir.name, run.title) for run in runs[:2]] == [
        ("fold_0", "fold 0 (of 0-1) "),
        ("fold_1", "fold 1 (of 0-1) "),
    ]


def test_demo_output_folder_is_ignored_by_git():
    assert "onfh_demo/" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------- no traceback, in a real shell


def test_bad_input_in_child_processes_gives_one_line_and_no_traceback(tmp_path):
    """What a user's terminal shows: real processes, real file descriptors, ITK included."""
    labels = truncate(write_image(tmp_path / "cut_label.nii.gz", ball_labels()))
    nan_labels = ball_labels().astype(np.float32)
    nan_labels[0, 0, 0] = np.nan
    nan_path = write_image(tmp_path / "nan_label.nrrd", nan_labels)
    good = write_image(tmp_path / "hip_label.nii.gz", ball_labels())
    far = write_image(tmp_path / "far.nii.gz", np.ones((8, 8, 8), np.float32), origin_mm=(900.0, 0, 0))
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    write_image(tmp_path / "truth" / "hip.nii.gz", ball_labels())
    write_image(tmp_path / "pred" / "hip.nii.gz", ball_labels())
    before = snapshot(tmp_path)
    cases = [
        (("grade", labels), "truncated"),
        (("grade", nan_path), "NaN"),
        (("grade", good, "--image", far), "do not overlap"),
        (("grade", tmp_path), "is a folder"),
        (
            ("evaluate", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "-o", blocker / "o"),
            "file.txt",
        ),
    ]
    for args, phrase in cases:
        assert_refused(run_child(*args), 2, phrase)
    assert snapshot(tmp_path) == before
