"""Ensemble members (test-time augmentation, fold models) and the interval they give.

The threshold "model" is flip- and shift-invariant up to resampling, so its members agree
closely and the interval must hold the phantom's exact ratio; two networks that draw the
lesion differently must widen it.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import (
    DIRECTIONS,
    ThresholdModel,
    ThresholdNetwork,
    phantom,
    threshold_model_config,
    tiny_model_dir,  # noqa: F401 (fixture)
)

from onfh.cli import main
from onfh.ensemble import AUGMENTATIONS, Ensemble, find_fold_folders, load_ensemble
from onfh.inference import Segmenter


def segmented(direction="oblique", noise=0.0):
    image, truth = phantom(DIRECTIONS[direction], noise=noise, seed=1)
    model = ThresholdModel()
    result = Segmenter(model, threshold_model_config()).segment(image)
    label = sitk.GetArrayViewFromImage(result.label)
    ratio = np.count_nonzero(label == 2) / np.count_nonzero(label)
    truth_array = sitk.GetArrayViewFromImage(truth)
    return image, result, ratio, np.count_nonzero(truth_array == 2) / np.count_nonzero(truth_array), model


def test_augmentations_flip_left_right_only_and_shift_each_axis_both_ways():
    assert len(AUGMENTATIONS) == 8
    shifts = {a.shift_mm for a in AUGMENTATIONS}
    assert len(shifts) == 7 and (0.0, 0.0, 0.0) in shifts
    for axis in range(3):
        along = [a for a in AUGMENTATIONS if a.shift_mm[axis] != 0]
        assert sorted(a.flip_left_right for a in along) == [False, True]


@pytest.mark.parametrize("direction", ["axial", "oblique"])
def test_agreeing_members_give_a_narrow_interval_holding_the_true_ratio(direction):
    image, result, ratio, true_ratio, model = segmented(direction)
    ensemble = Ensemble([model.segmenter], threshold_model_config())
    fields = ensemble.measure(image, result.heads, ratio)
    low, high = fields["necrosis_ratio_interval"]
    assert low <= ratio <= high and low <= true_ratio <= high
    assert high - low < 0.05
    member_ratios = fields["uncertainty"]["member_ratios"]
    assert len(member_ratios) == 8 and max(member_ratios) - min(member_ratios) < 0.03
    probabilities = fields["grade_probabilities"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert fields["per_head"][0].low <= ratio <= fields["per_head"][0].high
    assert fields["uncertainty"]["calibrated"] is False  # the threshold config states no sd_scale


def test_disagreeing_networks_widen_the_interval():
    image, result, ratio, _, model = segmented()
    config = threshold_model_config()
    alone = Ensemble([model.segmenter], config).measure(image, result.heads, ratio)
    other = ThresholdNetwork((0.25, 0.55))  # draws the lesion margin further out
    both = Ensemble([model.segmenter, other], config).measure(image, result.heads, ratio)
    width = [f["necrosis_ratio_interval"][1] - f["necrosis_ratio_interval"][0] for f in (alone, both)]
    assert width[1] > 1.4 * width[0]  # the lone network's interval is at the spread's floor
    assert both["uncertainty"]["member_sd"] > 3 * alone["uncertainty"]["member_sd"]
    assert both["uncertainty"]["models"] == 2 and "fold model" in both["uncertainty"]["method"]


def test_sd_scale_comes_from_model_json():
    config = threshold_model_config()
    assert Ensemble([None], config).sd_scale == 1.0
    config["uncertainty"] = {"sd_scale": 2.5}
    assert Ensemble([None], config).sd_scale == 2.5


def test_fold_folders_need_weights_and_come_in_fold_order(tmp_path):
    for k in (10, 2, 0, 1, 3):
        fold = tmp_path / "crossval" / f"fold_{k}"
        fold.mkdir(parents=True)
        (fold / "model.json").write_text("{}")
        if k in (0, 2):
            (fold / "model.pt").write_bytes(b"")
        if k == 10:  # exported with --drop-torch-weights: the ONNX segmenter only
            (fold / "segmenter.onnx").write_bytes(b"")
    assert [p.name for p in find_fold_folders(tmp_path)] == ["fold_0", "fold_2", "fold_10"]
    assert find_fold_folders(tmp_path / "nowhere") == []


def test_load_ensemble_adds_fold_models_of_the_same_design(tiny_model_dir, tmp_path):  # noqa: F811
    from onfh.modelfolder import load_model, load_model_folder

    folder_path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder_path)
    shutil.copytree(tiny_model_dir, folder_path / "crossval" / "fold_0")
    other = folder_path / "crossval" / "fold_1"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "model.json").read_text())
    config["segmenter"]["patch_size"] = [48, 48, 48]
    (other / "model.json").write_text(json.dumps(config))
    folder = load_model_folder(folder_path)
    ensemble = load_ensemble(folder, load_model(folder))
    assert len(ensemble.networks) == 2  # fold_1's other crop size is left out


def test_segment_reports_interval_and_probabilities_unless_turned_off(tiny_model_dir, tmp_path):  # noqa: F811
    image, _ = phantom(DIRECTIONS["axial"], noise=8.0, seed=3)
    path = tmp_path / "hip.nii.gz"
    sitk.WriteImage(image, str(path))
    out = tmp_path / "out"
    assert main(
        ["segment", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--progress", "none"]
    ) in (0, 1)
    report = json.loads((out / "hip.json").read_text())
    low, high = report["necrosis_ratio_interval"]
    assert low <= report["necrosis_ratio"] <= high
    probabilities = report["grade_probabilities"] or report["unchecked_grade_probabilities"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-2)
    assert report["uncertainty"]["members"] == 8 and report["timings_s"]["interval_s"] > 0
    row = next(csv.DictReader((out / "summary.csv").open()))
    assert row["necrosis_ratio_interval"] == f"{low:.4f}-{high:.4f}"
    plain = tmp_path / "plain"
    main(
        [
            "segment",
            str(path),
            "-o",
            str(plain),
            "--model",
            str(tiny_model_dir),
            "--no-interval",
            "--progress",
            "none",
        ]
    )
    report = json.loads((plain / "hip.json").read_text())
    assert "necrosis_ratio_interval" not in report and "interval_s" not in report["timings_s"]
