"""Bad input from careless use (issue 16), part 2: the commands that run a model. Bad
images given to ``onfh segment``, outputs that cannot be written, results that must not
be replaced silently, folders of NIfTI files, broken weights, Ctrl-C.

Each refusal asserts the exit code, the one ``onfh: error:`` line and that no output
file appeared or changed (``cli_checks``). One real segmentation (module fixture) gives
the earlier results that later runs must respect.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

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
from model_fixtures import DIRECTIONS, phantom, tiny_model_dir  # noqa: F401 (fixture)

CASE = "hip"


def phantom_file(path: Path, seed: int = 3) -> Path:
    image, _ = phantom(DIRECTIONS["oblique"], noise=8.0, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _bad_image(kind: str, folder: Path) -> tuple[Path, str]:
    """An input ``onfh segment`` must refuse, and the phrase its error line holds."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        return truncate(phantom_file(folder / "cut.nii.gz")), "truncated"
    if kind == "voxels_10mm":
        return noise_image(folder / "coarse10.nii.gz", (30, 40, 40), (10.0, 10.0, 10.0)), "limit of 4 mm"
    if kind == "voxels_5mm":
        return noise_image(folder / "coarse5.nii.gz", (40, 60, 60), (5.0, 5.0, 5.0)), "limit of 4 mm"
    if kind == "field_of_view":
        return noise_image(folder / "long.nii.gz", (24, 24, 210), (3.5, 3.0, 3.0)), "limit of 700 mm"
    if kind == "all_nan":
        array = np.full((40, 40, 40), np.nan, np.float32)
        return write_image(folder / "allnan.nii.gz", array), "every voxel is NaN"
    if kind == "some_nan":
        array = rng.normal(size=(40, 40, 40)).astype(np.float32)
        array[3, 4, 5] = np.nan
        return write_image(folder / "nan.mha", array), "NaN or infinite"
    if kind == "constant":
        return write_image(folder / "constant.nrrd", np.full((40, 40, 40), 7, np.int16)), "constant (value 7"
    if kind == "2d":
        image = sitk.GetImageFromArray(rng.normal(size=(20, 20)).astype(np.float32))
        path = folder / "flat.nii.gz"
        sitk.WriteImage(image, str(path))
        return path, "expected a 3D image"
    if kind == "4d":
        volumes = [sitk.GetImageFromArray(rng.normal(size=(8, 8, 8)).astype(np.float32)) for _ in range(3)]
        path = folder / "series.nii.gz"
        sitk.WriteImage(sitk.JoinSeries(volumes), str(path))
        return path, "expected a 3D image"
    if kind == "empty_folder":
        (folder / "nothing").mkdir()
        return folder / "nothing", "holds no DICOM series"
    raise ValueError(kind)


BAD_IMAGES = [
    "truncated",
    "voxels_10mm",
    "voxels_5mm",
    "field_of_view",
    "all_nan",
    "some_nan",
    "constant",
    "2d",
    "4d",
    "empty_folder",
]


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_segment_refuses_a_bad_image_and_writes_nothing(tiny_model_dir, tmp_path, capfd, kind):  # noqa: F811
    path, phrase = _bad_image(kind, tmp_path / "in")
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    outcome = run_onfh(capfd, "segment", path, "-o", out, "--model", tiny_model_dir, "--progress", "none")
    assert_refused(outcome, 1, str(path), phrase)  # 1: a case of the batch failed
    assert snapshot(tmp_path) == before and not out.exists()


@pytest.mark.parametrize("command", ["segment", "demo", "evaluate", "train"])
def test_an_output_that_cannot_be_created_is_refused(tiny_model_dir, tmp_path, capfd, command):  # noqa: F811
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    out = blocker / "out"
    image = noise_image(tmp_path / "hip.nii.gz")
    write_image(tmp_path / "truth" / "hip.nii.gz", ball_labels())
    write_image(tmp_path / "pred" / "hip.nii.gz", ball_labels())
    args = {
        "segment": ("segment", image, "-o", out, "--model", tiny_model_dir),
        "demo": ("demo", "-o", out, "--model", tiny_model_dir),
        "evaluate": ("evaluate", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "-o", out),
        "train": ("train", tmp_path / "no-dataset-needed", "-o", out),
    }[command]
    before = snapshot(tmp_path)
    outcome = run_onfh(capfd, *args)
    assert_refused(outcome, 2, str(out), "cannot create the output folder", "file.txt is not a folder")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
@pytest.mark.parametrize("command", ["segment", "demo"])
def test_a_read_only_output_folder_is_refused(tiny_model_dir, tmp_path, capfd, command):  # noqa: F811
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    image = noise_image(tmp_path / "hip.nii.gz")
    try:
        args = ("segment", image) if command == "segment" else ("demo",)
        outcome = run_onfh(capfd, *args, "-o", locked / "out", "--model", tiny_model_dir)
        assert_refused(outcome, 2, "cannot create folders in")
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_broken_weights_and_unknown_model_keys_are_one_line(tiny_model_dir, tmp_path, capfd):  # noqa: F811
    image = phantom_file(tmp_path / "hip.nii.gz")
    for damage, phrase in (("tampered", "does not match model.json"), ("typo", "did you mean 'patch_size'")):
        model = tmp_path / damage
        shutil.copytree(tiny_model_dir, model)
        if damage == "tampered":  # the file the default (ONNX) backend reads
            with open(model / "segmenter.onnx", "r+b") as stream:
                stream.seek(200)
                stream.write(b"\x00\x01\x02\x03")
        else:
            config = json.loads((model / "model.json").read_text())
            config["segmenter"]["patchsize"] = config["segmenter"]["patch_size"]
            (model / "model.json").write_text(json.dumps(config))
        out = tmp_path / f"out_{damage}"
        outcome = run_onfh(capfd, "segment", image, "-o", out, "--model", model)
        assert_refused(outcome, 2, phrase)
        assert not out.exists()


# ---------------------------------------------------------------- earlier results


@pytest.fixture(scope="module")
def segmented(tiny_model_dir, tmp_path_factory):  # noqa: F811
    """``onfh segment FOLDER`` on a folder holding one NIfTI file, in a real process.

    Returns the folder of results and what the process printed (for the console checks).
    """
    root = tmp_path_factory.mktemp("segmented")
    phantom_file(root / "scans" / f"{CASE}.nii.gz")
    outcome = run_child("segment", root / "scans", "-o", root / "out", "--model", tiny_model_dir)
    assert outcome.code == 0, outcome.err
    return root / "out", outcome


@pytest.fixture
def earlier(segmented, tmp_path) -> Path:
    """A copy of the module's results folder (each test may change its own)."""
    out = tmp_path / "out"
    shutil.copytree(segmented[0], out)
    return out


def _summary(out: Path) -> list[tuple[str, str]]:
    return [(row["case"], row["status"]) for row in csv.DictReader((out / "summary.csv").open())]


def test_a_folder_of_nifti_files_is_segmented_file_by_file_without_itk_noise(segmented):
    out, outcome = segmented
    assert sorted(p.name for p in out.iterdir()) == [f"{CASE}.json", f"{CASE}.seg.nrrd", "summary.csv"]
    report = json.loads((out / f"{CASE}.json").read_text())
    assert report["input"]["path"].endswith(f"scans{os.sep}{CASE}.nii.gz")
    assert [case for case, _ in _summary(out)] == [CASE]
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert all(line.startswith(("model ", "1 of 1 case(s)")) for line in lines), outcome.err


def test_segment_never_replaces_results_unasked(tiny_model_dir, earlier, capfd):  # noqa: F811
    image = phantom_file(earlier.parent / "again" / f"{CASE}.nii.gz")
    before = snapshot(earlier)
    outcome = run_onfh(capfd, "segment", image, "-o", earlier, "--model", tiny_model_dir)
    assert_refused(outcome, 2, "already holds results", f"{CASE}.seg.nrrd", "--skip-existing", "--force")
    assert snapshot(earlier) == before


def test_skip_existing_keeps_results_and_the_summary_lists_the_folder(tiny_model_dir, earlier, capfd):  # noqa: F811
    image = phantom_file(earlier.parent / "again" / f"{CASE}.nii.gz")
    flat = earlier.parent / "again" / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((20, 20), np.float32)), str(flat))
    (earlier / "summary.csv").write_text("case,status\nlong_gone,ok\n")  # stale: lists a removed case
    kept = {p: h for p, h in snapshot(earlier).items() if not p.endswith("summary.csv")}
    outcome = run_onfh(
        capfd, "segment", image, flat, "-o", earlier, "--model", tiny_model_dir, "--skip-existing"
    )
    assert outcome.code == 1 and len(outcome.error_lines) == 1 and "flat.nii.gz" in outcome.error_lines[0]
    assert "1 case(s) already segmented" in outcome.err
    assert {p: h for p, h in snapshot(earlier).items() if not p.endswith("summary.csv")} == kept
    assert _summary(earlier) == [(CASE, "low_confidence"), ("flat", "failed")] or _summary(earlier) == [
        (CASE, "ok"),
        ("flat", "failed"),
    ]


def test_force_replaces_results_and_a_failed_replacement_leaves_none(tiny_model_dir, earlier, capfd):  # noqa: F811
    broken = truncate(phantom_file(earlier.parent / "again" / f"{CASE}.nii.gz"))
    outcome = run_onfh(capfd, "segment", broken, "-o", earlier, "--model", tiny_model_dir, "--force")
    assert outcome.code == 1 and len(outcome.error_lines) == 1 and "truncated" in outcome.error_lines[0]
    assert sorted(p.name for p in earlier.iterdir()) == ["summary.csv"]
    assert _summary(earlier) == [(CASE, "failed")]


def test_demo_never_replaces_an_earlier_demo_unasked(tiny_model_dir, tmp_path, capfd):  # noqa: F811
    out = tmp_path / "onfh_demo"
    out.mkdir()
    (out / "demo_hip.json").write_text("{}")
    before = snapshot(out)
    outcome = run_onfh(capfd, "demo", "-o", out, "--model", tiny_model_dir)
    assert_refused(outcome, 2, "holds an earlier demo", "--force")
    assert snapshot(out) == before


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_segment_with_one_line_and_no_output(tiny_model_dir, tmp_path):  # noqa: F811
    image = phantom_file(tmp_path / "hip.nii.gz")
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "ONFH_NUM_THREADS": "1"}
    argv = ["segment", str(image), "-o", str(out), "--model", str(tiny_model_dir), "--progress", "json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "onfh", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    first = process.stdout.readline()  # the first progress line: the command is at work
    assert json.loads(first)["stage"] == "load_model"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip() == "onfh: interrupted" and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
