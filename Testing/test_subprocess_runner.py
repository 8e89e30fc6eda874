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
    SegmentJob,
    SegmentProcess,
    build_segment_command,
    child_environment,
    cli_device,
    missing_modules,
    parse_progress_line,
    pip_constraints,
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


def test_command_line_has_json_progress_and_optional_model(tmp_path):
    without = build_segment_command("PythonSlicer", tmp_path / "in.nrrd", tmp_path / "out")
    assert without[:4] == ["PythonSlicer", "-m", "onfh", "segment"]
    assert without[without.index("--progress") + 1] == "json"
    assert without[without.index("-o") + 1] == str(tmp_path / "out")
    assert "--model" not in without
    assert "--model" not in build_segment_command("py", "in.nrrd", "out", model_dir=Path("."))
    with_model = build_segment_command("py", "in.nrrd", "out", model_dir=tmp_path / "m", device="gpu")
    assert with_model[with_model.index("--model") + 1] == str(tmp_path / "m")
    assert with_model[with_model.index("--device") + 1] in ("cuda", "mps")


def test_command_line_is_accepted_by_the_real_segment_parser(tmp_path):
    pytest.importorskip("onfh.commands.segment")
    from onfh.cli import build_parser

    command = build_segment_command("py", tmp_path / "in.nrrd", tmp_path / "out", tmp_path / "m", "cpu")
    args = build_parser().parse_args(command[3:])
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


def test_child_environment_prepends_package_root_once(tmp_path):
    base = {"PYTHONPATH": os.pathsep.join(["/a", "/b"]), "HOME": "/h"}
    env = child_environment(base, tmp_path)
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts == [str(tmp_path.resolve()), "/a", "/b"]
    assert child_environment(env, tmp_path)["PYTHONPATH"] == env["PYTHONPATH"]
    assert base["PYTHONPATH"] == os.pathsep.join(["/a", "/b"]), "the caller's dict must not change"


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


def test_segment_help_runs_in_a_child_with_the_package_on_its_path(tmp_path):
    env = child_environment({k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, REPO_ROOT)
    process = SegmentProcess([sys.executable, "-m", "onfh", "--help"], env=env, cwd=tmp_path)
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
