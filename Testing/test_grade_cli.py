"""``onfh grade`` end to end, as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.grading import grade_label_map
from onfh.segfile import write_seg_nrrd

ROOT = Path(__file__).resolve().parents[1]


def onfh(*args):
    return subprocess.run(
        [sys.executable, "-m", "onfh", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.fixture
def labels_nifti(tmp_path):
    labels = np.zeros((30, 40, 40), np.uint8)
    labels[5:25, 5:35, 5:35] = 1
    labels[5:12, 5:35, 5:35] = 2  # 7/20 of the head: grade C
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.7, 0.7, 1.0))
    path = tmp_path / "hip_label.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, labels


def test_grade_label_nifti_json(labels_nifti):
    path, labels = labels_nifti
    done = onfh("grade", path, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    expected = grade_label_map(labels, (0.7, 0.7, 1.0))
    assert report["steinberg_grade"] == expected.grade == "C"
    assert report["necrosis_ratio"] == pytest.approx(expected.ratio)
    assert report["femoral_head_volume_ml"] == pytest.approx(expected.head_volume_ml)
    assert report["input"]["spacing_mm"] == [0.7, 0.7, 1.0]
    assert report["model"] is None


def test_grade_seg_nrrd_table(labels_nifti, tmp_path):
    path, labels = labels_nifti
    seg = tmp_path / "hip.seg.nrrd"
    write_seg_nrrd(sitk.ReadImage(str(path)), seg)
    done = onfh("grade", seg)
    assert done.returncode == 0, done.stderr
    steinberg = next(line for line in done.stdout.splitlines() if line.startswith("Steinberg extent"))
    assert steinberg.split()[-1] == "C"
    assert f"{100 * np.count_nonzero(labels == 2) / np.count_nonzero(labels):.1f} %" in done.stdout


def test_grade_with_reference_image(labels_nifti, tmp_path):
    path, _ = labels_nifti
    reference = tmp_path / "mri.nrrd"
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkInt16) * 100, str(reference))
    done = onfh("grade", path, "--image", reference, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["input"]["path"] == str(reference)
    assert report["resampled_to_image"] is False


def test_grade_reports_the_kerboul_angle_of_an_oblique_cap_phantom(tmp_path):
    from test_kerboul import SUPERIOR, cap_phantom, oblique

    path = tmp_path / "cap_label.nii.gz"
    sitk.WriteImage(cap_phantom(oblique(), SUPERIOR, 55.0), str(path))
    done = onfh("grade", path, "--json")
    assert done.returncode == 0, done.stderr
    kerboul = json.loads(done.stdout)["kerboul"]
    assert kerboul["combined_angle_deg"] == pytest.approx(4 * 55.0, abs=10.0)
    assert kerboul["grade"] == 2 and kerboul["risk"] == "moderate"
    table = onfh("grade", path)
    assert "Kerboul grade" in table.stdout and "moderate risk" in table.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("garbage", "not a readable"),
        ("2d", "expected a 3D image"),
        ("4d", "expected a 3D"),
    ],
)
def test_bad_input_one_line_error_no_traceback(tmp_path, content, message):
    path = tmp_path / "seg.nrrd"
    if content == "garbage":
        path.write_text("garbage")
    elif content == "2d":
        sitk.WriteImage(sitk.Image([5, 5], sitk.sitkUInt8), str(path))
    elif content == "4d":
        sitk.WriteImage(sitk.Image([5, 5, 5, 2], sitk.sitkUInt8), str(path))
    done = onfh("grade", path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onfh: error: ") and str(path) in lines[0]
    assert message in lines[0] and "Traceback" not in done.stderr


def test_no_head_segment_is_an_error(tmp_path):
    image = sitk.Image([8, 8, 8], sitk.sitkUInt8)
    image.SetMetaData("Segment0_ID", "s")
    image.SetMetaData("Segment0_Name", "Necrosis")
    path = tmp_path / "lesion_only.seg.nrrd"
    sitk.WriteImage(image, str(path))
    done = onfh("grade", path)
    assert done.returncode == 2 and "no femoral head segment" in done.stderr


def test_help_is_fast_and_lists_commands():
    done = onfh("--help")
    assert done.returncode == 0 and "grade" in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, onfh.cli; onfh.cli.build_parser(); print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert probe.stdout.strip() == "False", "onfh --help must not import torch"
