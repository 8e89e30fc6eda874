"""Tests for ``onfh demo``: synthesise, segment, compare with the truth, write a preview."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import tiny_model_dir  # noqa: F401 (fixture)

from onfh.cli import main
from onfh.commands.demo import DEMO_CASE, DEMO_SEED
from onfh.errors import OnfhError


def test_demo_writes_outputs_and_prints_prediction_next_to_truth(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    printed = capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    expected = {f"{DEMO_CASE}{s}" for s in (".nii.gz", "_truth.nii.gz", ".seg.nrrd", ".json", "_preview.png")}
    assert names == expected
    assert (out / f"{DEMO_CASE}_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads((out / f"{DEMO_CASE}.json").read_text())
    truth_label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{DEMO_CASE}_truth.nii.gz")))
    image = sitk.ReadImage(str(out / f"{DEMO_CASE}.nii.gz"))
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    assert report["truth"]["head_volume_ml"] == pytest.approx(np.count_nonzero(truth_label) * voxel_ml)
    assert report["truth"]["necrosis_volume_ml"] == pytest.approx(
        np.count_nonzero(truth_label == 2) * voxel_ml
    )
    assert report["grade_matches_truth"] == (report["steinberg_grade"] == report["truth"]["grade"])
    assert 0.0 <= report["dice"]["femoral_head"] <= 1.0
    for text in ("Femoral head volume", "Necrotic ratio", "Steinberg extent grade", "Dice", "true"):
        assert text in printed
    assert f"{report['truth']['head_volume_ml']:.2f} mL" in printed


def test_demo_refuses_a_file_as_output_folder(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["demo", "-o", str(target), "--model", str(tiny_model_dir)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


@pytest.mark.slow
def test_demo_with_the_installed_model_matches_the_synthetic_grade(tmp_path, capsys):
    from onfh.modelfolder import default_model_dir

    try:
        default_model_dir()
    except OnfhError:
        pytest.skip("no default model installed yet")
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    report = json.loads((tmp_path / "demo" / f"{DEMO_CASE}.json").read_text())
    assert report["grade_matches_truth"], (report["steinberg_grade"], report["truth"], DEMO_SEED)
    assert report["dice"]["femoral_head"] >= 0.9
    assert "matches the synthetic truth" in capsys.readouterr().out
