"""Tests for ``onfh segment``: outputs, summary, progress lines, bad input, bad weights.

They run the real command (in-process through ``onfh.cli.main``, and once as a child
process like the Slicer module does) with a tiny model trained on phantoms.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import DIRECTIONS, phantom, tiny_model_dir  # noqa: F401 (fixture)

from onfh.cli import main
from onfh.metrics import dice
from onfh.modelfolder import file_sha256
from onfh.report import kerboul_report, kerboul_reports
from onfh.segfile import read_segmentation
from onfh.synthetic.dicom_series import write_mr_series

ROOT = Path(__file__).resolve().parents[1]


def write_phantom(path: Path, direction: str = "oblique", seed: int = 3) -> tuple[Path, sitk.Image]:
    image, truth = phantom(DIRECTIONS[direction], noise=8.0, seed=seed)
    sitk.WriteImage(image, str(path))
    return path, truth


@pytest.fixture
def bad_inputs(tmp_path) -> dict[str, Path]:
    """Inputs no model can segment, one per kind of problem."""
    folder = tmp_path / "bad"
    folder.mkdir()
    paths = {}
    rng = np.random.default_rng(0)
    paths["2d"] = folder / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(rng.normal(size=(20, 20)).astype(np.float32)), str(paths["2d"]))
    paths["4d"] = folder / "series.nii.gz"
    volumes = [sitk.GetImageFromArray(rng.normal(size=(8, 8, 8)).astype(np.float32)) for _ in range(3)]
    sitk.WriteImage(sitk.JoinSeries(volumes), str(paths["4d"]))
    paths["constant"] = folder / "constant.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((40, 40, 40), 7, np.int16)), str(paths["constant"]))
    paths["nan"] = folder / "nan.mha"
    array = rng.normal(size=(40, 40, 40)).astype(np.float32)
    array[3, 4, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(paths["nan"]))
    paths["inf"] = folder / "inf.nrrd"
    array = rng.normal(size=(40, 40, 40)).astype(np.float32)
    array[0, 0, 0] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(array), str(paths["inf"]))
    paths["tiny"] = folder / "tiny.nii.gz"
    sitk.WriteImage(
        sitk.GetImageFromArray(rng.normal(size=(20, 20, 20)).astype(np.float32)), str(paths["tiny"])
    )
    paths["empty"] = folder / "empty.nii.gz"
    paths["empty"].write_bytes(b"")
    paths["missing"] = folder / "missing.nii.gz"
    return paths


def test_segment_writes_outputs_on_the_input_grid(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    input_path, truth = write_phantom(tmp_path / "hip_left.nii.gz")
    out = tmp_path / "out"
    code = main(["segment", str(input_path), "-o", str(out), "--model", str(tiny_model_dir), "--label-map"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["hip_left.json", "hip_left.seg.nrrd", "hip_left_label.nii.gz", "summary.csv"]

    segmentation = read_segmentation(out / "hip_left.seg.nrrd")
    image = sitk.ReadImage(str(input_path))
    for getter in ("GetSize", "GetOrigin", "GetSpacing", "GetDirection"):
        assert np.allclose(getattr(segmentation.image, getter)(), getattr(image, getter)(), atol=1e-4), getter
    assert dice(segmentation.head_mask, sitk.GetArrayFromImage(truth) > 0) > 0.8
    label = sitk.ReadImage(str(out / "hip_left_label.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(label) > 0, segmentation.head_mask)

    header = (out / "hip_left.seg.nrrd").read_bytes()[:4000].decode("latin-1")
    sha = file_sha256(Path(tiny_model_dir) / "model.pt")
    assert f"ONFHModelSHA256:{sha}" in header and "Femoral head" in header and "Necrosis" in header

    report = json.loads((out / "hip_left.json").read_text())
    assert report["model"]["sha256"] == sha and report["model"]["id"] == "tiny-test-model"
    assert report["input"]["size"] == list(image.GetSize())
    assert report["device"].startswith("cpu")
    assert report["timings_s"]["total_s"] > 0
    assert report["femoral_head_volume_ml"] == pytest.approx(
        segmentation.head_mask.sum() * np.prod(image.GetSpacing()) / 1000.0
    )
    assert report["kerboul"] == kerboul_report(segmentation.image)
    assert report["kerboul"]["grade"] in (1, 2, 3, 4)
    # The fixture's head is an ellipsoid of 12-19 mm semi-axes, smaller and less round than
    # any femoral head: the sphere check must withhold the grade and say why.
    assert report["steinberg_grade"] is None
    assert report["unchecked_steinberg_grade"] in ("A", "B", "C")
    assert report["quality"]["passed"] is False and "radius" in report["quality"]["summary"]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    summary = [(r["case"], r["status"], r["steinberg_grade"]) for r in rows]
    assert summary == [("hip_left", "low_confidence", "")]
    assert float(rows[0]["combined_necrotic_angle_deg"]) == report["kerboul"]["combined_angle_deg"]
    assert "hip_left: head" in capsys.readouterr().out


def test_batch_reports_every_bad_input_and_goes_on(tiny_model_dir, tmp_path, bad_inputs, capsys):  # noqa: F811
    good, _ = write_phantom(tmp_path / "good.nii.gz", direction="coronal")
    inputs = [
        str(bad_inputs["2d"]),
        str(good),
        *(str(bad_inputs[k]) for k in sorted(bad_inputs) if k != "2d"),
    ]
    out = tmp_path / "out"
    code = main(["segment", *inputs, "-o", str(out), "--model", str(tiny_model_dir), "--progress", "none"])
    assert code == 1
    rows = {r["case"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert len(rows) == len(inputs)
    assert rows["good"]["status"] == "low_confidence"  # segmented; the small ellipsoid fails the sphere check
    expected = {
        "flat": "expected a 3D image",
        "series": "expected a 3D image",
        "constant": "constant",
        "nan": "NaN",
        "inf": "infinite",
        "tiny": "too small to hold a femoral head",
        "empty": "not a readable image",
        "missing": "no such file",
    }
    for case, message in expected.items():
        assert rows[case]["status"] == "failed"
        assert message in rows[case]["error"], (case, rows[case]["error"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("onfh: error:")]
    assert len(errors) == len(expected)
    produced = sorted(p.name for p in out.iterdir())
    assert produced == ["good.json", "good.seg.nrrd", "summary.csv"]


def test_json_progress_lines_are_parseable_and_monotonic(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    first, _ = write_phantom(tmp_path / "a.nii.gz", direction="axial")
    second, _ = write_phantom(tmp_path / "b.nrrd", direction="sagittal")
    out = tmp_path / "out"
    argv = ["segment", str(first), str(second), "-o", str(out), "--model", str(tiny_model_dir)]
    assert main([*argv, "--progress", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all({"stage", "fraction", "case"} <= set(e) for e in events)
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [e["case"] for e in events if e["stage"] == "case_done"] == ["a", "b"]
    assert events[-1]["stage"] == "finished" and events[-1]["failed"] == 0


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m onfh`` as a child process, as the Slicer module does."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "ONFH_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "onfh", *args], capture_output=True, text=True, env=environment, timeout=300
    )


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


@pytest.mark.parametrize(
    "damage, backend",
    [("tampered", "torch"), ("tampered_onnx", "onnx"), ("missing", "onnx"), ("bad_json", "onnx")],
)
def test_broken_weights_give_one_line_and_no_output(tiny_model_dir, tmp_path, damage, backend):  # noqa: F811
    model = copy_model(Path(tiny_model_dir), tmp_path / "model")
    if damage in ("tampered", "tampered_onnx"):
        with open(model / ("model.pt" if damage == "tampered" else "segmenter.onnx"), "r+b") as stream:
            stream.seek(200)
            stream.write(b"\x00\x01\x02\x03")
        expected = "does not match model.json"
    elif damage == "missing":
        (model / "segmenter.onnx").unlink()
        expected = "listed in model.json are missing"
    else:
        (model / "model.json").write_text('{"format": 1')
        expected = "not valid JSON"
    input_path, _ = write_phantom(tmp_path / "hip.nii.gz")
    out = tmp_path / "out"
    result = run_cli("segment", str(input_path), "-o", str(out), "--model", str(model), "--backend", backend)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("onfh: error:") and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_model_dir_variable_without_a_model_is_refused(tmp_path):
    input_path, _ = write_phantom(tmp_path / "hip.nii.gz")
    empty = tmp_path / "nothing"
    empty.mkdir()
    result = run_cli(
        "segment", str(input_path), "-o", str(tmp_path / "out"), env={"ONFH_MODEL_DIR": str(empty)}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ONFH_MODEL_DIR" in result.stderr and "no model.json" in result.stderr


def test_outputs_never_replace_inputs_or_each_other(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "data"
    folder.mkdir()
    input_path, _ = write_phantom(folder / "hip.nii.gz")
    user_label = folder / "hip_label.nii.gz"
    user_label.write_bytes(b"user data")
    argv = ["segment", str(input_path), str(user_label), "-o", str(folder), "--model", str(tiny_model_dir)]
    assert main([*argv, "--label-map"]) == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert user_label.read_bytes() == b"user data"
    twin = tmp_path / "other"
    twin.mkdir()
    (twin / "hip.nii.gz").write_bytes(input_path.read_bytes())
    argv = ["segment", str(input_path), str(twin / "hip.nii.gz"), "-o", str(tmp_path / "o")]
    assert main([*argv, "--model", str(tiny_model_dir)]) == 2
    assert "would both write case 'hip'" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_requested_accelerator_that_is_missing_is_refused(tiny_model_dir, tmp_path, capsys, backend):  # noqa: F811
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    input_path, _ = write_phantom(tmp_path / "hip.nii.gz")
    argv = ["segment", str(input_path), "-o", str(tmp_path / "o"), "--model", str(tiny_model_dir)]
    assert main([*argv, "--device", "cuda", "--backend", backend]) == 2
    error = capsys.readouterr().err
    assert ("no CUDA provider" if backend == "onnx" else "CUDA is not available") in error


def test_bilateral_heads_are_graded_per_side_in_report_and_summary():
    from onfh.case_segmentation import hip_reports
    from onfh.grading import grade_from_voxel_counts
    from onfh.inference import HeadResult
    from onfh.segment_summary import summary_row

    spacing = (1.0, 1.0, 2.0)
    heads = [
        HeadResult((60.0, 0.0, 0.0), (60.0, 0.0, 0.0), head_voxels=1000, necrosis_voxels=400, side="left"),
        HeadResult((-60.0, 0.0, 0.0), (-60.0, 0.0, 0.0), head_voxels=1000, necrosis_voxels=50, side="right"),
    ]
    assert hip_reports(heads[:1], spacing) is None
    hips = hip_reports(heads, spacing)
    assert [(h["side"], h["steinberg_grade"]) for h in hips] == [("left", "C"), ("right", "A")]
    assert hips[0]["femoral_head_volume_ml"] == pytest.approx(2.0)
    combined = grade_from_voxel_counts(2000, 450, spacing).to_dict()
    case_json = {**combined, "hips": hips, "outputs": {"segmentation": "a.seg.nrrd", "report": "a.json"}}
    row = summary_row("a", "a.nii.gz", case_json, 1.0)
    assert row["hips"] == "left C 40.0 %; right A 5.0 %"


def test_bilateral_heads_get_their_own_kerboul_angles():
    from test_kerboul import SUPERIOR, cap_phantom

    from onfh.case_segmentation import hip_reports
    from onfh.inference import HeadResult

    right = cap_phantom(np.eye(3), SUPERIOR, 40.0, centre_mm=np.array([-80.0, 0.0, 0.0]))
    left = cap_phantom(np.eye(3), SUPERIOR, 65.0, centre_mm=np.array([80.0, 0.0, 0.0]))
    both = sitk.Image([int(160 / 0.8) + 80, right.GetSize()[1], right.GetSize()[2]], sitk.sitkUInt8)
    both.SetSpacing(right.GetSpacing())
    both.SetOrigin(right.GetOrigin())
    both = sitk.Paste(both, right, right.GetSize(), [0, 0, 0], [0, 0, 0])
    start = both.TransformPhysicalPointToIndex(left.GetOrigin())
    both = sitk.Paste(both, left, left.GetSize(), [0, 0, 0], list(start))
    heads = [
        HeadResult((80.0, 0.0, 0.0), (80.0, 0.0, 0.0), head_voxels=1000, necrosis_voxels=400, side="left"),
        HeadResult((-80.0, 0.0, 0.0), (-80.0, 0.0, 0.0), head_voxels=1000, necrosis_voxels=50, side="right"),
    ]
    largest, per_hip = kerboul_reports(both, [h.centre_mm for h in heads])
    hips = hip_reports(heads, both.GetSpacing(), per_hip)
    assert hips[0]["kerboul"]["combined_angle_deg"] == pytest.approx(260.0, abs=10.0)
    assert hips[1]["kerboul"]["combined_angle_deg"] == pytest.approx(160.0, abs=10.0)
    # The whole scan's angle is its largest head's, measured once and equal to that hip's.
    assert largest == kerboul_report(both)
    assert largest in [h["kerboul"] for h in hips]


def test_dicom_series_folders_are_read_and_several_series_need_a_choice(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    image, truth = phantom(DIRECTIONS["oblique"], noise=8.0, seed=5)
    folder = tmp_path / "patient_17"
    write_mr_series(image, folder, "1.2.826.0.1.3680043.2.1125.7")
    out = tmp_path / "out"
    assert main(["segment", str(folder), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    segmentation = read_segmentation(out / "patient_17.seg.nrrd")
    assert np.allclose(segmentation.image.GetDirection(), image.GetDirection(), atol=1e-4)
    assert np.allclose(segmentation.image.GetOrigin(), image.GetOrigin(), atol=1e-3)
    assert dice(segmentation.head_mask, sitk.GetArrayFromImage(truth) > 0) > 0.8

    write_mr_series(image, folder, "1.2.826.0.1.3680043.2.1125.8")
    assert main(["segment", str(folder), "-o", str(tmp_path / "out2"), "--model", str(tiny_model_dir)]) == 1
    assert "holds 2 DICOM series" in capsys.readouterr().err
    argv = ["segment", str(folder), "-o", str(tmp_path / "out3"), "--model", str(tiny_model_dir)]
    assert main([*argv, "--series", "1.2.826.0.1.3680043.2.1125.8"]) == 0
    assert (tmp_path / "out3" / "patient_17.seg.nrrd").is_file()


def test_device_choice_and_thread_count(monkeypatch):
    import torch

    from onfh.devices import available_cpu_count, configure_cpu_threads, describe_device, resolve_device
    from onfh.errors import OnfhError

    expected = "cuda" if torch.cuda.is_available() else None
    device = resolve_device("auto")
    assert device.type in ("cpu", "cuda", "mps") and (expected is None or device.type == expected)
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(OnfhError, match="unknown device"):
        resolve_device("tpu")
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ONFH_NUM_THREADS", "1")
        assert configure_cpu_threads() == 1 and torch.get_num_threads() == 1
        assert describe_device(torch.device("cpu")) == "cpu (1 thread)"
        monkeypatch.setenv("ONFH_NUM_THREADS", "many")
        with pytest.raises(OnfhError, match="not a whole number"):
            configure_cpu_threads()
        monkeypatch.delenv("ONFH_NUM_THREADS")
        assert 1 <= configure_cpu_threads() <= available_cpu_count()
    finally:
        torch.set_num_threads(before)


def test_a_case_that_fails_while_writing_leaves_no_partial_files(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    input_path, _ = write_phantom(tmp_path / "hip.nii.gz")
    out = tmp_path / "out"
    (out / "hip.json").mkdir(parents=True)  # the report cannot be written: a folder has its name
    argv = ["segment", str(input_path), "-o", str(out), "--model", str(tiny_model_dir), "--label-map"]
    argv.append("--force")  # the folder counts as an earlier result
    assert main(argv) == 1
    assert "onfh: error:" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["hip.json"]  # no results: no summary either
    assert not any(out.glob(".*partial*"))


@pytest.mark.slow
def test_installed_model_accuracy_on_unseen_synthetic_cases(tmp_path):
    """The issue's bar on 10 unseen phantoms (new seeds, mixed geometry): median Dice >= 0.95 / 0.85."""
    from onfh.errors import OnfhError
    from onfh.modelfolder import default_model_dir
    from onfh.synthetic import generate_case

    try:
        default_model_dir()
    except OnfhError:
        pytest.skip("no default model installed yet")
    geometries = [((0.7, 0.7, 1.0), (256, 256, 120)), ((0.8, 0.8, 1.5), (224, 224, 80)), (None, None)]
    truths = {}
    for index in range(10):
        spacing, size = geometries[index % len(geometries)]
        case = generate_case(910_000 + index, spacing_mm=spacing, size=size)
        path = tmp_path / "in" / f"unseen_{index}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        sitk.WriteImage(case.image, str(path))
        truths[f"unseen_{index}"] = sitk.GetArrayFromImage(case.label)
    assert main(["segment", *map(str, sorted((tmp_path / "in").iterdir())), "-o", str(tmp_path / "out")]) == 0
    head_dice, necrosis_dice = [], []
    for case, truth in truths.items():
        predicted = read_segmentation(tmp_path / "out" / f"{case}.seg.nrrd")
        head_dice.append(dice(predicted.head_mask, truth > 0))
        necrosis_dice.append(dice(predicted.necrosis_mask, truth == 2))
    assert np.median(head_dice) >= 0.95, head_dice
    assert np.median(necrosis_dice) >= 0.85, necrosis_dice


def test_dicom_outputs_follow_the_input_and_never_replace_earlier_ones(tiny_model_dir, tmp_path, capfd):  # noqa: F811
    """A DICOM series gives .seg.dcm and .sr.dcm (NIfTI inputs cannot: see the first test);
    --no-dicom leaves them out; an earlier .sr.dcm alone counts as a result; an output folder
    that is the input series folder is refused (the SEG would join the source series)."""
    from cli_checks import run_onfh, snapshot
    from dicom_fixtures import PHANTOM_SERIES_UID

    from onfh.synthetic.dicom_series import write_mr_series

    image, _ = phantom(DIRECTIONS["axial"], noise=8.0, seed=7)
    series = tmp_path / "hip"
    write_mr_series(image, series, PHANTOM_SERIES_UID)
    model = ["--model", tiny_model_dir]
    outcome = run_onfh(capfd, "segment", series, "-o", tmp_path / "plain", "--no-dicom", *model)
    assert outcome.code == 0, outcome.err
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "hip.json",
        "hip.seg.nrrd",
        "summary.csv",
    ]
    assert "dicom_seg" not in json.loads((tmp_path / "plain" / "hip.json").read_text())["outputs"]

    out = tmp_path / "out"
    out.mkdir()
    (out / "hip.sr.dcm").write_bytes(b"a report the user keeps")
    before = snapshot(out)
    outcome = run_onfh(capfd, "segment", series, "-o", out, *model)
    assert outcome.code == 2 and "already holds results" in outcome.err and "hip.sr.dcm" in outcome.err
    assert snapshot(out) == before
    outcome = run_onfh(capfd, "segment", series, "-o", out, "--force", *model)
    assert outcome.code == 0, outcome.err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["hip.json", "hip.seg.dcm", "hip.seg.nrrd", "hip.sr.dcm", "summary.csv"]
    assert (out / "hip.sr.dcm").read_bytes()[128:132] == b"DICM"

    before = snapshot(series)
    outcome = run_onfh(capfd, "segment", series, "-o", series, *model)
    assert outcome.code == 2 and len(outcome.error_lines) == 1
    assert "is a DICOM input folder" in outcome.error_lines[0] and "--no-dicom" in outcome.error_lines[0]
    assert snapshot(series) == before


def test_a_series_a_seg_cannot_reference_is_segmented_without_dicom_outputs_and_says_why(
    tiny_model_dir,  # noqa: F811
    tmp_path,
    capfd,
):
    """Slices without a FrameOfReferenceUID (invalid for MR, but seen) are a good image that no
    SEG can reference: the case is segmented, its .seg.nrrd and .json written, and the CLI line
    and the report name the missing attribute; no .seg.dcm or .sr.dcm appears."""
    import pydicom
    from cli_checks import run_onfh

    image, _ = phantom(DIRECTIONS["axial"], noise=8.0, seed=8)
    series = tmp_path / "no_frame"
    write_mr_series(image, series, "1.2.826.0.1.3680043.2.1125.99")
    for path in series.iterdir():
        dataset = pydicom.dcmread(path)
        del dataset.FrameOfReferenceUID
        dataset.save_as(path)
    out = tmp_path / "out"
    outcome = run_onfh(capfd, "segment", series, "-o", out, "--model", tiny_model_dir, "--no-interval")
    assert outcome.code == 0, outcome.err
    assert "no DICOM SEG/SR" in outcome.out and "FrameOfReferenceUID" in outcome.out
    assert sorted(p.name for p in out.iterdir()) == ["no_frame.json", "no_frame.seg.nrrd", "summary.csv"]
    report = json.loads((out / "no_frame.json").read_text())
    assert "FrameOfReferenceUID" in report["dicom_outputs_skipped"]
    assert set(report["outputs"]) == {"segmentation", "report"}
