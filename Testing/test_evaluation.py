"""Tests for onfh.evaluation and ``onfh evaluate``: file pairing, per-case rows, the study's table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from onfh import evaluation, evaluation_report, metrics
from onfh.agreement import cohen_kappas, confusion_matrix
from onfh.cli import main
from onfh.errors import OnfhError
from onfh.grading import grade_label_map
from onfh.segfile import write_seg_nrrd

SHAPE_ZYX = (36, 44, 44)
SPACING_XYZ_MM = (0.8, 0.8, 1.5)
SPACING_ZYX_MM = (1.5, 0.8, 0.8)  # the same, in array axis order, written out independently
HEAD_RADIUS_MM = 14.0


def hip_labels(cap_depth: float, shift_vox=(0, 0, 0), lesion: bool = True) -> np.ndarray:
    """A ball-shaped femoral head (label 1) with a superior necrotic cap (label 2).

    ``cap_depth`` is the cap's height as a fraction of the radius: 0.35 gives grade A,
    0.65 grade B, 0.85 grade C (cap volume fraction t^2 (3 - t) / 4).
    """
    z, y, x = np.indices(SHAPE_ZYX, dtype=float)
    centre = [(n - 1) / 2 + s for n, s in zip(SHAPE_ZYX, shift_vox)]
    dz, dy, dx = ((g - c) * s for g, c, s in zip((z, y, x), centre, SPACING_ZYX_MM))
    head = dz**2 + dy**2 + dx**2 <= HEAD_RADIUS_MM**2
    labels = head.astype(np.uint8)
    if lesion:
        labels[head & (dz > HEAD_RADIUS_MM * (1 - cap_depth))] = 2
    return labels


def label_image(labels: np.ndarray, spacing_xyz=SPACING_XYZ_MM, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    return image


def write_labels(labels: np.ndarray, path: Path, **geometry) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".seg.nrrd"):
        write_seg_nrrd(label_image(labels, **geometry), path)
    else:
        sitk.WriteImage(label_image(labels, **geometry), str(path), True)
    return path


def grade_of(labels: np.ndarray) -> str | None:
    return grade_label_map(labels, SPACING_XYZ_MM).grade


@pytest.fixture
def study(tmp_path):
    """Truth and prediction folders covering every pairing and metric rule."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truths = {
        "hip_a": hip_labels(0.35),
        "hip_b": hip_labels(0.65),
        "hip_c": hip_labels(0.65),
        "hip_d": hip_labels(0.85),
        "hip_e": hip_labels(0.35),
        "hip_f": hip_labels(0.85),
    }
    predictions = {
        "hip_a": truths["hip_a"],  # identical, as a Slicer segmentation
        "hip_b": hip_labels(0.65, shift_vox=(1, 0, 0)),  # one slice (1.5 mm) up
        "hip_c": hip_labels(0.85),  # lesion overestimated: B graded C
        "hip_d": truths["hip_d"],  # identical, on a finer grid
        "hip_f": hip_labels(0.0, lesion=False),  # lesion missed: grade A, necrosis empty
    }
    for case, labels in truths.items():
        write_labels(labels, truth_dir / (f"{case}.seg.nrrd" if case == "hip_f" else f"{case}.nii.gz"))
    write_labels(predictions["hip_a"], pred_dir / "run1" / "hip_a.seg.nrrd")
    write_labels(predictions["hip_b"], pred_dir / "run1" / "hip_b_label.nii.gz")
    write_labels(predictions["hip_c"], pred_dir / "run2" / "hip_c.nii.gz")
    fine = predictions["hip_d"].repeat(2, 0).repeat(2, 1).repeat(2, 2)
    half = tuple(s / 2 for s in SPACING_XYZ_MM)
    write_labels(
        fine,
        pred_dir / "run2" / "hip_d.nii.gz",
        spacing_xyz=half,
        origin=tuple(-s / 4 for s in SPACING_XYZ_MM),
    )
    write_labels(predictions["hip_f"], pred_dir / "hip_f.nii.gz")
    return {"truth_dir": truth_dir, "pred_dir": pred_dir, "truths": truths, "predictions": predictions}


def run_cli(*args: str) -> int:
    return main(["evaluate", *map(str, args)])


def test_end_to_end_report(study, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"], "-o", out) == 0
    captured = capsys.readouterr()
    for name in evaluation_report.REPORT_FILES:
        assert (out / name).is_file(), name
    for png in ("bland_altman.png", "confusion_matrix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    rows = {row["case"]: row for row in report["cases"]}
    assert summary["n_cases"] == 6 and summary["n_evaluated"] == 5
    assert summary["missing_predictions"] == ["hip_e"] and rows["hip_e"]["status"] == evaluation.MISSING

    # Identical masks, directly or after resampling from the finer grid, are perfect.
    for case in ("hip_a", "hip_d"):
        assert rows[case]["femoral_head_dice"] == 1.0 and rows[case]["necrosis_dice"] == 1.0
        assert rows[case]["femoral_head_asd_mm"] == 0.0 and rows[case]["necrosis_hd95_mm"] == 0.0
    assert rows["hip_d"]["resampled"] is True and rows["hip_a"]["resampled"] is False
    assert "hip_d.nii.gz: grid differs" in captured.err and "resampled" in captured.err

    # The shifted case matches the metrics computed directly with the spacing in z, y, x order.
    truth_b, pred_b = study["truths"]["hip_b"], study["predictions"]["hip_b"]
    head = metrics.overlap_metrics(pred_b > 0, truth_b > 0, SPACING_ZYX_MM)
    necrosis = metrics.overlap_metrics(pred_b == 2, truth_b == 2, SPACING_ZYX_MM)
    assert rows["hip_b"]["femoral_head_dice"] == pytest.approx(head.dice)
    assert rows["hip_b"]["femoral_head_asd_mm"] == pytest.approx(head.asd_mm)
    assert rows["hip_b"]["femoral_head_hd95_mm"] == pytest.approx(head.hd95_mm)
    assert rows["hip_b"]["necrosis_asd_mm"] == pytest.approx(necrosis.asd_mm)
    assert 0.0 < rows["hip_b"]["femoral_head_hd95_mm"] <= 1.5 + 1e-5  # one 1.5 mm slice

    # A missed lesion: Dice 0, infinite distances kept out of the medians and counted.
    assert rows["hip_f"]["necrosis_dice"] == 0.0
    assert rows["hip_f"]["necrosis_asd_mm"] is None  # inf is not JSON
    assert summary["metrics"]["necrosis"]["asd_mm"]["n_infinite"] == 1
    assert summary["metrics"]["necrosis"]["asd_mm"]["n"] == 4
    dice_values = [rows[c]["necrosis_dice"] for c in ("hip_a", "hip_b", "hip_c", "hip_d", "hip_f")]
    assert summary["metrics"]["necrosis"]["dice"]["median"] == pytest.approx(float(np.median(dice_values)))

    # Grades, confusion matrix and kappas follow from the label maps.
    cases = ["hip_a", "hip_b", "hip_c", "hip_d", "hip_f"]
    true_grades = [grade_of(study["truths"][c]) for c in cases]
    predicted_grades = [grade_of(study["predictions"][c]) for c in cases]
    assert [rows[c]["true_grade"] for c in cases] == true_grades
    assert [rows[c]["pred_grade"] for c in cases] == predicted_grades
    matrix = confusion_matrix(true_grades, predicted_grades)
    grading = summary["grading"]
    assert grading["confusion_matrix"] == matrix.tolist()
    assert grading["n_matched"] == int(np.trace(matrix)) == 3 and grading["n_graded"] == 5
    for weights, value in cohen_kappas(matrix).items():
        assert grading["kappa"][weights] == pytest.approx(value)
    assert summary["ratio_agreement"]["n"] == 5
    assert summary["ratio_agreement"]["bland_altman"]["bias"] == pytest.approx(
        np.mean([rows[c]["pred_ratio"] - rows[c]["true_ratio"] for c in cases])
    )

    # Kerboul angles: identical labels agree, a missed lesion has none, a deeper cap a larger one.
    for case in ("hip_a", "hip_d"):
        assert rows[case]["pred_kerboul_deg"] == rows[case]["true_kerboul_deg"]
    half_angle_deg = np.degrees(np.arccos(1 - 0.35))  # cap of depth 0.35 radius: 4 half-angles
    assert rows["hip_a"]["true_kerboul_deg"] == pytest.approx(4 * half_angle_deg, abs=15.0)
    assert rows["hip_f"]["pred_kerboul_deg"] == 0.0 and rows["hip_f"]["pred_kerboul_grade"] == 1
    assert rows["hip_c"]["pred_kerboul_deg"] > rows["hip_c"]["true_kerboul_deg"] + 40.0
    kerboul = summary["kerboul_agreement"]
    differences = [rows[c]["pred_kerboul_deg"] - rows[c]["true_kerboul_deg"] for c in cases]
    assert kerboul["n"] == 5 and kerboul["bias_deg"] == pytest.approx(np.mean(differences))
    assert "Kerboul angle" in captured.out

    # The console shows the study's table next to the reference figures.
    assert "reference study (n=63 hips)" in captured.out
    assert "0.95 (0.95-0.96)" in captured.out and "59/63 (93.7 %)" in captured.out
    assert "3/5 (60.0 %)" in captured.out and "missing prediction(s): hip_e" in captured.out
    markdown = (out / "report.md").read_text()
    assert "| Grade accuracy | 3/5 (60.0 %) | 59/63 (93.7 %) |" in markdown

    with (out / "cases.csv").open(newline="") as handle:
        csv_rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert set(csv_rows) == set(study["truths"])
    assert csv_rows["hip_e"]["status"] == evaluation.MISSING and csv_rows["hip_e"]["femoral_head_dice"] == ""
    assert float(csv_rows["hip_b"]["femoral_head_dice"]) == pytest.approx(head.dice)
    assert csv_rows["hip_f"]["necrosis_asd_mm"] == "inf"


def test_refuses_to_overwrite_an_earlier_report(study, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"], "-o", out) == 0
    before = (out / "report.json").read_bytes()
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"], "-o", out) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == before
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"], "-o", out, "--force") == 0


def test_default_report_folder_is_inside_predictions(study):
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"]) == 0
    assert (study["pred_dir"] / "evaluation" / "report.json").is_file()


def test_crossval_layout(tmp_path, capsys):
    from onfh.training.folds import write_crossval_json

    dataset, model = tmp_path / "dataset", tmp_path / "model"
    split = [["c0", "c2"], ["c1", "c3"]]
    depths = {"c0": 0.35, "c1": 0.65, "c2": 0.85, "c3": 0.65}
    for case, depth in depths.items():
        write_labels(hip_labels(depth), dataset / "labelsTr" / f"{case}.nii.gz")
    write_crossval_json(model, dataset, split)
    for fold, cases in enumerate(split):
        for case in cases:
            if case != "c3":  # fold 1 lost one prediction
                prediction = hip_labels(depths[case], shift_vox=(0, 0, fold))
                write_labels(
                    prediction, model / "crossval" / f"fold_{fold}" / "predictions" / f"{case}.nii.gz"
                )

    assert run_cli("--crossval", model) == 0
    out = model / "crossval" / "evaluation"
    report = json.loads((out / "report.json").read_text())
    folds = report["summary"]["per_fold"]
    assert folds["0"]["n_evaluated"] == 2 and folds["0"]["femoral_head_dice"]["median"] == 1.0
    assert folds["1"]["n_cases"] == 2 and folds["1"]["n_evaluated"] == 1
    assert folds["1"]["femoral_head_dice"]["median"] < 1.0
    assert report["summary"]["missing_predictions"] == ["c3"]
    with (out / "cases.csv").open(newline="") as handle:
        fold_of = {row["case"]: row["fold"] for row in csv.DictReader(handle)}
    assert fold_of == {"c0": "0", "c2": "0", "c1": "1", "c3": "1"}
    assert "Per fold:" in capsys.readouterr().out
    assert "## Per fold" in (out / "report.md").read_text()


def test_prediction_beyond_a_cropped_truth_keeps_its_false_positives(tmp_path, capsys):
    truth_full = hip_labels(0.65)
    prediction = truth_full.copy()
    prediction[2:6, 2:6, 2:6] = 1  # a false positive far outside the head
    # The truth file holds only a box around the head (as a cropped segmentation would).
    box = (slice(7, 31), slice(3, 41), slice(3, 41))
    assert truth_full[box].sum() == truth_full.sum()
    origin = tuple(float(start.start * s) for start, s in zip(box[::-1], SPACING_XYZ_MM))
    write_labels(truth_full[box], tmp_path / "t" / "hip.nii.gz", origin=origin)
    write_labels(prediction, tmp_path / "p" / "hip.nii.gz")
    assert run_cli("--pred", tmp_path / "p", "--truth", tmp_path / "t", "-o", tmp_path / "r") == 0
    assert "extended to hold the whole prediction" in capsys.readouterr().err
    row = json.loads((tmp_path / "r" / "report.json").read_text())["cases"][0]
    expected = metrics.overlap_metrics(prediction > 0, truth_full > 0, SPACING_ZYX_MM)
    assert row["femoral_head_dice"] == pytest.approx(expected.dice) and expected.dice < 1.0
    assert row["femoral_head_hd95_mm"] == pytest.approx(expected.hd95_mm)
    assert row["necrosis_dice"] == 1.0
    assert row["true_ratio"] == pytest.approx(grade_label_map(truth_full, SPACING_XYZ_MM).ratio)


def test_scoring_grid_rules():
    truth = label_image(hip_labels(0.35))
    inside = label_image(hip_labels(0.35).repeat(2, 0), spacing_xyz=(0.8, 0.8, 0.75))
    grid, extended = evaluation.scoring_grid(truth, inside)
    assert grid is truth and not extended
    far_away = label_image(hip_labels(0.35), origin=(0.0, 0.0, 10_000.0))
    grid, extended = evaluation.scoring_grid(truth, far_away)
    assert grid is truth and not extended  # mismatched geometry: no growth
    shifted_up = label_image(hip_labels(0.35), origin=(0.0, 0.0, 30 * SPACING_XYZ_MM[2]))
    grid, extended = evaluation.scoring_grid(truth, shifted_up)
    assert extended and grid.GetSpacing() == truth.GetSpacing() and grid.GetOrigin() == truth.GetOrigin()
    assert grid.GetSize()[:2] == truth.GetSize()[:2] and grid.GetSize()[2] > truth.GetSize()[2]


def test_prediction_outside_the_truth_image_is_flagged(tmp_path):
    truth = write_labels(hip_labels(0.35), tmp_path / "t" / "hip.nii.gz")
    prediction = write_labels(hip_labels(0.35), tmp_path / "p" / "hip.nii.gz", origin=(0.0, 0.0, 1e4))
    row, warnings = evaluation.evaluate_case(evaluation.CasePair("hip", truth, prediction))
    assert row["femoral_head_dice"] == 0.0 and math.isinf(row["femoral_head_asd_mm"])
    assert any("outside the truth image" in w for w in warnings)


def test_find_predictions_naming_and_preference(tmp_path):
    labels = hip_labels(0.35)
    write_labels(labels, tmp_path / "p" / "x" / "hip_a.nii.gz")  # e.g. the input MRI next to its result
    write_labels(labels, tmp_path / "p" / "x" / "hip_a.seg.nrrd")
    write_labels(labels, tmp_path / "p" / "x" / "hip_b.nii.gz")
    write_labels(labels, tmp_path / "p" / "x" / "hip_b_label.nii.gz")
    write_labels(labels, tmp_path / "p" / "y" / "deeper" / "hip_c_label.nrrd")
    write_labels(labels, tmp_path / "p" / "y" / "other_0000.nii.gz")
    (tmp_path / "p" / "y" / "hip_c.json").write_text("{}")
    found, unmatched = evaluation.find_predictions(tmp_path / "p", ["hip_a", "hip_b", "hip_c", "hip_d"])
    assert {case: path.name for case, path in found.items()} == {
        "hip_a": "hip_a.seg.nrrd",
        "hip_b": "hip_b_label.nii.gz",
        "hip_c": "hip_c_label.nrrd",
    }
    assert [p.name for p in unmatched] == ["other_0000.nii.gz"]
    pairs = evaluation.pair_cases({c: tmp_path / c for c in ["hip_a", "hip_d"]}, found)
    assert [(p.case_id, p.prediction_path is None) for p in pairs] == [("hip_a", False), ("hip_d", True)]


def test_truth_files_under_the_prediction_folder_are_not_predictions(study, tmp_path):
    truths = evaluation.find_truths(study["truth_dir"])
    found, _ = evaluation.find_predictions(tmp_path, list(truths), exclude=list(truths.values()))
    assert all(study["truth_dir"] not in path.parents for path in found.values())
    assert set(found) == {"hip_a", "hip_b", "hip_c", "hip_d", "hip_f"}


def test_same_case_in_two_folders_is_ambiguous(tmp_path):
    labels = hip_labels(0.35)
    write_labels(labels, tmp_path / "p" / "run1" / "hip_a.nii.gz")
    write_labels(labels, tmp_path / "p" / "run2" / "hip_a.seg.nrrd")
    with pytest.raises(OnfhError, match="two folders"):
        evaluation.find_predictions(tmp_path / "p", ["hip_a"])


def test_find_truths(tmp_path):
    labels = hip_labels(0.35)
    write_labels(labels, tmp_path / "ds" / "labelsTr" / "hip_a.nii.gz")
    write_labels(labels, tmp_path / "ds" / "imagesTr" / "hip_a_0000.nii.gz")
    assert list(evaluation.find_truths(tmp_path / "ds")) == ["hip_a"]
    write_labels(labels, tmp_path / "ds" / "labelsTr" / "hip_a.seg.nrrd")
    with pytest.raises(OnfhError, match="two truth files"):
        evaluation.find_truths(tmp_path / "ds")
    with pytest.raises(OnfhError, match="no such folder"):
        evaluation.find_truths(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OnfhError, match="no truth label files"):
        evaluation.find_truths(tmp_path / "empty")


def test_median_iqr_counts_infinite_values():
    stats = evaluation.median_iqr([1.0, 2.0, 3.0, 4.0, math.inf, None])
    assert stats["n"] == 4 and stats["n_infinite"] == 1
    assert stats["median"] == pytest.approx(2.5)
    assert stats["q1"] == pytest.approx(np.percentile([1, 2, 3, 4], 25))
    assert evaluation.median_iqr([math.inf])["median"] is None


def test_both_lesions_absent_count_as_agreement(tmp_path):
    healthy = hip_labels(0.0, lesion=False)
    truth = write_labels(healthy, tmp_path / "t" / "hip.nii.gz")
    prediction = write_labels(healthy, tmp_path / "p" / "hip.nii.gz")
    row, warnings = evaluation.evaluate_case(evaluation.CasePair("hip", truth, prediction))
    assert row["necrosis_dice"] == 1.0 and row["necrosis_asd_mm"] == 0.0
    assert row["true_grade"] == row["pred_grade"] == "A" and row["grade_match"] is True
    assert warnings == []


def test_empty_predicted_head_counts_as_misgraded():
    truth_rows = [
        {
            "case": c,
            "fold": None,
            "status": "ok",
            **{f"{s}_{m}": 1.0 for s in evaluation.STRUCTURES for m in evaluation.METRICS},
        }
        for c in ("a", "b", "c")
    ]
    grades = [("A", "A", 0.1, 0.1), ("B", None, 0.2, None), ("C", "C", 0.4, 0.4)]
    for row, (true_grade, pred_grade, true_ratio, pred_ratio) in zip(truth_rows, grades):
        row.update(true_grade=true_grade, pred_grade=pred_grade, true_ratio=true_ratio, pred_ratio=pred_ratio)
        row["grade_match"] = true_grade == pred_grade
    summary = evaluation.summarize(truth_rows)
    grading = summary["grading"]
    assert (grading["n_matched"], grading["n_graded"], grading["n_prediction_ungraded"]) == (2, 3, 1)
    assert grading["true_grade_counts"] == {"A": 1, "B": 1, "C": 1}
    assert sum(map(sum, grading["confusion_matrix"])) == 2
    assert summary["ratio_agreement"]["n"] == 2
    assert "1 prediction(s) without a grade" in evaluation_report.console_text(summary)


def test_bad_inputs_fail_with_one_line_and_no_report(study, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli("--pred", study["pred_dir"], "-o", out) == 2
    assert "--truth" in capsys.readouterr().err

    empty = tmp_path / "no_predictions"
    empty.mkdir()
    assert run_cli("--pred", empty, "--truth", study["truth_dir"], "-o", out) == 2
    assert "no prediction matches" in capsys.readouterr().err

    broken = study["pred_dir"] / "run2" / "hip_c.nii.gz"
    broken.write_bytes(b"not an image")
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"], "-o", out) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "hip_c.nii.gz" in error

    write_labels(np.full(SHAPE_ZYX, 5, np.uint8), broken)
    assert run_cli("--pred", study["pred_dir"], "--truth", study["truth_dir"], "-o", out) == 2
    assert "label values" in capsys.readouterr().err
    assert not out.exists()


def test_interval_coverage_is_read_from_the_segment_reports(tmp_path, capsys):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    for case, depth in (("hip_a", 0.35), ("hip_b", 0.65)):
        write_labels(hip_labels(depth), truth_dir / f"{case}.nii.gz")
        write_labels(hip_labels(depth), pred_dir / f"{case}.seg.nrrd")
    true_a = grade_label_map(hip_labels(0.35), SPACING_XYZ_MM).ratio
    true_b = grade_label_map(hip_labels(0.65), SPACING_XYZ_MM).ratio
    reports = {
        "hip_a": (true_a, [true_a - 0.01, true_a + 0.01]),  # holds the truth
        "hip_b": (true_b + 0.05, [true_b + 0.03, true_b + 0.07]),  # misses it by 0.03
    }
    for case, (ratio, interval) in reports.items():
        report = {
            "necrosis_ratio": ratio,
            "necrosis_ratio_interval": interval,
            "uncertainty": {"member_sd": 0.01 / 1.6449, "sd_scale": 1.0},
        }
        (pred_dir / f"{case}.json").write_text(json.dumps(report))
    out = tmp_path / "report"
    assert run_cli("--pred", pred_dir, "--truth", truth_dir, "-o", out) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]["interval_calibration"]
    assert summary["n"] == 2 and summary["coverage"] == 0.5
    assert summary["median_width"] == pytest.approx(0.03)
    # hip_a needs no spread, hip_b 5x its own (error 0.05 over 0.01): 90th percentile of 0 and 5
    assert summary["sd_scale_for_90_percent"] == pytest.approx(0.9 * 5, rel=1e-3)
    assert "holds the truth in 1/2" in capsys.readouterr().out
