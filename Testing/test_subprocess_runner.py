"""The child-process runner behind the Segment button, with real child processes."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from onfh.subprocess_runner import (
    CHILD_REQUIREMENTS,
    SHIPPED_MODEL,
    SegmentJob,
    SegmentProcess,
    build_segment_command,
    child_environment,
    child_process_options,
    cli_device,
    find_python_slicer,
    missing_modules,
    model_folder_argument,
    parse_progress_line,
    pip_constraints,
    pip_install_arguments,
    quality_warning,
    read_quality_warning,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_script(tmp_path: Path, body: str) -> SegmentProcess:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(body))
    return SegmentProcess([sys.executable, str(script)])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has stopped running, which is what counts.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split()[2] == "Z")


def test_cli_device_maps_gpu_per_platform():
    assert cli_device("auto") == "auto"
    assert cli_device("CPU") == "cpu"
    assert cli_device("gpu", platform="linux") == "cuda"
    assert cli_device("gpu", platform="win32") == "cuda"
    assert cli_device("gpu", platform="darwin") == "mps"
    with pytest.raises(ValueError, match="'tpu'"):
        cli_device("tpu")


def test_command_line_runs_the_entry_script_with_json_progress_and_optional_model(tmp_path):
    without = build_segment_command("PythonSlicer", REPO_ROOT, tmp_path / "in.nrrd", tmp_path / "out")
    assert without[:3] == ["PythonSlicer", str(REPO_ROOT / "onfh" / "__main__.py"), "segment"]
    assert Path(without[1]).is_file()
    assert without[without.index("--progress") + 1] == "json"
    assert without[without.index("-o") + 1] == str(tmp_path / "out")
    assert "--model" not in without
    for shipped in (Path("."), "", SHIPPED_MODEL, Path(SHIPPED_MODEL)):
        assert "--model" not in build_segment_command("py", REPO_ROOT, "in.nrrd", "out", model_dir=shipped)
    with_model = build_segment_command(
        "py", REPO_ROOT, "in.nrrd", "out", model_dir=tmp_path / "m", device="gpu"
    )
    assert with_model[with_model.index("--model") + 1] == str(tmp_path / "m")
    assert with_model[with_model.index("--device") + 1] in ("cuda", "mps")


def test_the_parameter_node_stores_shipped_not_a_path():
    assert model_folder_argument(SHIPPED_MODEL) is None
    assert model_folder_argument(None) is None
    assert model_folder_argument(Path()) is None
    assert model_folder_argument(" /opt/models/my model ") == "/opt/models/my model"


def test_command_line_is_accepted_by_the_real_segment_parser(tmp_path):
    pytest.importorskip("onfh.commands.segment")
    from onfh.cli import build_parser

    command = build_segment_command(
        "py", REPO_ROOT, tmp_path / "in.nrrd", tmp_path / "out", tmp_path / "m", "cpu"
    )
    args = build_parser().parse_args(command[2:])
    assert args.command == "segment"


def test_parse_progress_line_accepts_progress_objects_only():
    event = parse_progress_line('{"stage": "inference", "fraction": 0.25, "case": "hip"}\n')
    assert (event.stage, event.fraction, event.case) == ("inference", 0.25, "hip")
    assert parse_progress_line('{"stage": "done", "fraction": 7}').fraction == 1.0
    assert parse_progress_line('{"stage": "load", "fraction": "half"}').fraction is None
    assert parse_progress_line('{"stage": "load", "fraction": true}').fraction is None
    for noise in ("", "Warning: something", "{not json", "[1, 2]", '{"fraction": 0.5}'):
        assert parse_progress_line(noise) is None
    assert parse_progress_line('{"stage": "load_model", "fraction": 0}').text == "Loading the model"
    assert parse_progress_line('{"stage": "new_stage_x"}').text == "New stage x"


def test_child_environment_is_unbuffered_and_leaves_the_caller_alone():
    base = {"PYTHONPATH": "/a", "HOME": "/h"}
    env = child_environment(base)
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONPATH"] == "/a"
    assert "PYTHONUNBUFFERED" not in base, "the caller's dict must not change"


def test_pip_arguments_are_a_list_that_keeps_windows_paths_and_spaces():
    """Issue 11 item 3: one string was split by shlex (POSIX), losing backslashes."""
    path = r"C:\Users\Dr A\AppData\Local\Temp\tmp1\constraints.txt"
    args = pip_install_arguments(CHILD_REQUIREMENTS, path)
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert args == [*CHILD_REQUIREMENTS, "--constraint", path]


def test_segmenting_needs_only_onnxruntime():
    assert CHILD_REQUIREMENTS == ("onnxruntime",)


def test_windows_children_get_no_console_window_and_their_own_group():
    flags = child_process_options("win32")["creationflags"]
    assert flags & 0x08000000, "CREATE_NO_WINDOW"
    assert flags & 0x00000200, "CREATE_NEW_PROCESS_GROUP"
    if sys.platform == "win32":
        import subprocess

        assert flags == subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
    assert child_process_options("linux") == {"start_new_session": True}


def test_python_slicer_is_found_on_the_path_or_beside_the_app_and_never_guessed(tmp_path):
    from onfh.errors import OnfhError

    app = tmp_path / "bin" / "SlicerApp-real"
    app.parent.mkdir()
    app.write_text("")
    assert find_python_slicer(app, which=lambda name: f"/on/path/{name}", platform="linux") == (
        "/on/path/PythonSlicer"
    )
    with pytest.raises(OnfhError, match="PythonSlicer not found"):
        find_python_slicer(app, which=lambda name: None, platform="linux")
    beside = app.parent / "PythonSlicer.exe"
    beside.write_text("")
    assert find_python_slicer(app, which=lambda name: None, platform="win32") == str(beside)


def test_quality_warning_reads_the_report_defensively(tmp_path):
    assert quality_warning({"steinberg_grade": "B"}) is None, "old reports have no quality entry"
    assert quality_warning({"quality": {"passed": True, "reasons": []}}) is None
    assert quality_warning({"quality": None}) is None and quality_warning([1, 2]) is None
    failed = {"quality": {"passed": False, "reasons": ["head radius 9 mm", "lesion outside head"]}}
    assert quality_warning(failed) == "Low confidence: head radius 9 mm; lesion outside head"
    assert quality_warning({"quality": {"passed": False}}) == "Low confidence: the quality check failed"
    both = {"quality": [{"passed": True, "reasons": []}, {"passed": False, "reasons": ["left head small"]}]}
    assert quality_warning(both) == "Low confidence: left head small"
    noted = {"quality": {"passed": True, "heads": [], "notes": ["no head in the other hip"]}}
    assert quality_warning(noted) == "Check: no head in the other hip"
    noted["quality"].update(passed=False, reasons=["head radius 9 mm"])
    assert quality_warning(noted) == "Low confidence: head radius 9 mm; check: no head in the other hip"
    assert quality_warning({"quality": {"passed": True, "notes": "not a list"}}) is None
    report = tmp_path / "input.json"
    report.write_text(json.dumps(failed))
    assert read_quality_warning(report).startswith("Low confidence: head radius")
    assert read_quality_warning(tmp_path / "missing.json") is None
    report.write_text("{not json")
    assert read_quality_warning(report) is None


def test_progress_events_log_and_error_line_from_a_real_child(tmp_path):
    process = _run_script(
        tmp_path,
        """
        import json, sys
        for i, stage in enumerate(["load", "localise", "inference", "write"]):
            print(json.dumps({"stage": stage, "fraction": i / 3, "case": "hip"}), flush=True)
        print("some library warning", flush=True)
        print("onfh: error: hip.nrrd: image is constant (value 0.0)", file=sys.stderr)
        sys.exit(2)
        """,
    )
    assert process.wait(timeout_s=30) == 2
    assert process.finished
    events = process.poll()
    assert [e.stage for e in events] == ["load", "localise", "inference", "write"]
    assert events[-1].fraction == 1.0
    assert process.poll() == [], "events are handed out once"
    assert process.log_lines == ["some library warning"]
    assert process.error_message() == "hip.nrrd: image is constant (value 0.0)"


def test_poll_does_not_block_while_the_child_is_silent(tmp_path):
    process = _run_script(tmp_path, "import time; time.sleep(30)")
    try:
        started = time.monotonic()
        assert process.poll() == []
        assert time.monotonic() - started < 0.5
        assert not process.finished
        assert process.returncode is None
    finally:
        process.cancel(timeout_s=5)


@pytest.mark.skipif(sys.platform == "win32", reason="process-group check uses POSIX pids")
def test_cancel_kills_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "pids.json"
    process = _run_script(
        tmp_path,
        f"""
        import json, os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn child: needs SIGKILL
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open({str(pid_file)!r}, "w") as f:
            json.dump([os.getpid(), grandchild.pid], f)
        print(json.dumps({{"stage": "inference", "fraction": 0.1}}), flush=True)
        time.sleep(60)
        """,
    )
    deadline = time.monotonic() + 30
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    time.sleep(0.2)
    pids = json.loads(pid_file.read_text())
    assert all(_alive(pid) for pid in pids)
    process.cancel(timeout_s=1)
    assert process.cancelled and process.finished
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "a process of the tree survived Cancel"


def test_missing_executable_is_a_one_line_error(tmp_path):
    from onfh.errors import OnfhError

    with pytest.raises(OnfhError, match="could not start"):
        SegmentProcess([str(tmp_path / "no-such-python"), "-m", "onfh"])


def test_segment_help_runs_by_script_path_without_pythonpath(tmp_path):
    """The child finds ``onfh`` with no PYTHONPATH at all, from any working folder."""
    env = child_environment({k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    command = [*build_segment_command(sys.executable, REPO_ROOT, "in.nrrd", "out")[:2], "--help"]
    process = SegmentProcess(command, env=env, cwd=tmp_path)
    assert process.wait(timeout_s=60) == 0, process.stderr_lines
    assert any("usage: onfh" in line for line in process.log_lines)


def test_missing_modules_and_pip_constraints_reflect_this_python():
    import numpy
    import SimpleITK

    assert missing_modules(["json", "numpy"]) == []
    assert missing_modules(["onfh_surely_not_installed_module"]) == ["onfh_surely_not_installed_module"]
    pins = pip_constraints(["numpy", "SimpleITK", "onfh-not-a-distribution"]).splitlines()
    assert pins == [f"numpy=={numpy.__version__}", f"SimpleITK=={SimpleITK.Version.VersionString()}"]


def test_segment_job_writes_input_runs_child_and_cleans_up(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.7, 0.8, 1.5))
    image.SetOrigin((-3.0, 2.0, 10.0))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    job = SegmentJob(
        image, sys.executable, REPO_ROOT, model_dir=tmp_path / "model", device="cpu", base_env=env
    )
    try:
        written = sitk.ReadImage(str(job.input_path))
        assert written.GetSize() == image.GetSize()
        np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(image))
        assert job.seg_path.parent == job.output_dir and job.seg_path.name == "input.seg.nrrd"
        assert job.report_path.name == "input.json"
        assert job.process.command[job.process.command.index("--model") + 1] == str(tmp_path / "model")
        code = job.process.wait(timeout_s=120)
        if importlib.util.find_spec("onfh.commands.segment") is None:
            assert code != 0 and "segment" in job.process.error_message()
        else:  # the real engine ran: a missing model folder is a one-line error
            assert code == 2 and "model" in job.process.error_message()
    finally:
        job.cleanup()
    assert not job.folder.exists()


def test_segment_job_leaves_nothing_behind_when_it_cannot_start(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    from onfh.errors import OnfhError

    before = set(Path(tempfile.gettempdir()).glob("onfh-segment-*"))
    image = sitk.GetImageFromArray(np.zeros((3, 3, 3), np.float32))
    with pytest.raises(OnfhError, match="could not start"):
        SegmentJob(image, tmp_path / "no-python", REPO_ROOT)
    assert set(Path(tempfile.gettempdir()).glob("onfh-segment-*")) == before


def test_the_entry_script_runs_the_package_beside_it_not_an_installed_one(tmp_path):
    """Run by path, ``onfh/__main__.py`` must import the ``onfh`` it sits in (the extension's
    copy), whatever ``onfh`` is installed in that Python or on ``PYTHONPATH``."""
    package = tmp_path / "extension" / "onfh"
    package.mkdir(parents=True)
    (package / "__main__.py").write_text((REPO_ROOT / "onfh" / "__main__.py").read_text())
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("def main():\n    print(__file__)\n    return 0\n")
    env = child_environment({**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    command = build_segment_command(sys.executable, package.parent, "in.nrrd", "out")[:2]
    process = SegmentProcess(command, env=env, cwd=tmp_path)
    assert process.wait(timeout_s=60) == 0, process.stderr_lines
    assert process.log_lines == [str(package / "cli.py")]


def test_quality_warning_names_the_reasons_of_a_real_engine_report():
    """The shape ``onfh segment`` writes: summary on top, reasons per head."""
    import numpy as np
    import SimpleITK as sitk

    from onfh.head_check import check_head
    from onfh.inference import HeadResult, InferenceResult
    from onfh.report import flag_low_confidence

    slab = np.zeros((40, 64, 64), dtype=np.uint8)
    slab[15:25, 4:60, 4:60] = 1  # a flat block of "muscle", nothing like a femoral head
    check = check_head(slab, (1.25, 1.25, 1.25))
    assert not check.passed and check.reasons
    result = InferenceResult(
        label=sitk.Image(8, 8, 8, sitk.sitkUInt8),
        head_centre_mm=(0.0, 0.0, 0.0),
        crop_centre_mm=(0.0, 0.0, 0.0),
        heads=[HeadResult((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 100, 0, check=check)],
    )
    report = flag_low_confidence({"steinberg_grade": "A"}, result.quality)
    assert quality_warning(report) == "Low confidence: " + "; ".join(check.reasons)
