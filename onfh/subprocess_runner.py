"""Run ``onfh segment`` in a child process: build the command, read progress, cancel.

Slicer's GUI must never freeze while a model runs, and Cancel must really stop the work
(ARCHITECTURE.md section 3). So the Segment button starts Slicer's own Python as a child
process (``PythonSlicer <root>/onfh/__main__.py segment ... --progress json``); this module reads its
output on background threads and hands complete progress events to whoever polls, which
in Slicer is a ``QTimer`` in the Qt layer. Nothing here imports Qt or Slicer, so the
same code is tested with a real child process under pytest.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onfh.errors import OnfhError
from onfh.imageio import write_image_atomic

CHILD_REQUIREMENTS = ("onnxruntime",)
"""What segmenting needs beyond Slicer's Python (the ONNX backend); the module offers to
install it. torch and monai are for training and the torch backend only."""
PROTECTED_DISTRIBUTIONS = ("numpy", "SimpleITK", "vtk")
"""Slicer's own builds: a dependency install must never replace them."""
DEVICE_CHOICES = ("auto", "cpu", "gpu")
"""What the module offers; ``gpu`` becomes ``cuda`` (or ``mps`` on macOS) for the CLI."""
SHIPPED_MODEL = "shipped"
"""What a Slicer parameter node stores for "the model shipped with this extension": an
absolute path would go stale after an extension update or on another machine."""
ENTRY_SCRIPT = Path("onfh") / "__main__.py"
"""The child runs this file by path under the package root (no PYTHONPATH needed)."""

# Windows process-creation flags (values from the Win32 API; ``subprocess`` defines them
# on Windows only). CREATE_NO_WINDOW: no console window per run, as Slicer's own
# launchConsoleProcess hides it (Base/Python/slicer/util.py).
_CREATE_NEW_PROCESS_GROUP = 0x00000200
_CREATE_NO_WINDOW = 0x08000000

_STDERR_TAIL_LINES = 200


def missing_modules(names: Sequence[str] = CHILD_REQUIREMENTS) -> list[str]:
    """The top-level modules among ``names`` that this Python cannot import (not imported)."""
    import importlib.util

    return [name for name in names if importlib.util.find_spec(name) is None]


def pip_constraints(names: Sequence[str] = PROTECTED_DISTRIBUTIONS) -> str:
    """A pip constraints file pinning the installed versions of ``names``.

    Passed as ``--constraint`` to every dependency install, so pip fails rather than
    upgrade Slicer's numpy or SimpleITK. Distributions not installed by pip (Slicer's
    VTK) are skipped.
    """
    from importlib import metadata

    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(pins) + "\n"


def pip_install_arguments(requirements: Sequence[str], constraints_path: str | os.PathLike) -> list[str]:
    """``pip install`` arguments as a list: each requirement, then ``--constraint PATH``.

    A list, never one string: ``slicer.util.pip_install`` splits a string with POSIX
    ``shlex.split`` (Base/Python/slicer/util.py at v5.8.1), which drops the backslashes of a
    Windows path and breaks a path with a space; list items are passed on untouched.
    """
    return [str(r) for r in requirements] + ["--constraint", str(constraints_path)]


def find_python_slicer(
    executable: str | os.PathLike,
    which: Callable[[str], str | None] = shutil.which,
    platform: str = sys.platform,
) -> str:
    """Slicer's Python launcher (``PythonSlicer``), on the PATH or beside ``executable``.

    Inside Slicer ``sys.executable`` is the application, not a Python, so it is never a
    fallback. Slicer puts PythonSlicer on the PATH of its own process and finds it with
    ``shutil.which`` too (``_executePythonModule`` in Base/Python/slicer/util.py).

    Raises:
        OnfhError: no PythonSlicer found.
    """
    name = "PythonSlicer.exe" if platform == "win32" else "PythonSlicer"
    found = which(name)
    if found:
        return found
    beside = Path(executable).parent / name
    if beside.is_file():
        return str(beside)
    raise OnfhError(f"{name} not found on the PATH nor beside {executable}; cannot run the segmentation")


def model_folder_argument(model_dir: str | os.PathLike | None) -> str | None:
    """The ``--model`` value for a model choice; ``None`` means the shipped model.

    ``None``, an empty path (read back as ``"."``) and ``SHIPPED_MODEL`` all mean "the
    model shipped with the extension", which the engine finds by itself.
    """
    text = "" if model_dir is None else str(model_dir).strip()
    return None if text in ("", ".", SHIPPED_MODEL) else text


def child_process_options(platform: str = sys.platform) -> dict:
    """``subprocess.Popen`` keyword arguments that put the child in its own process group.

    POSIX: a new session, so Cancel can signal the whole group. Windows: a new process
    group and no console window (Cancel uses ``taskkill /T``).
    """
    if platform == "win32":
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP | _CREATE_NO_WINDOW}
    return {"start_new_session": True}


def cli_device(choice: str, platform: str = sys.platform) -> str:
    """Translate the module's device choice into the ``onfh segment --device`` value.

    Args:
        choice: ``"auto"``, ``"cpu"`` or ``"gpu"`` (case-insensitive).
        platform: ``sys.platform`` of the machine that runs the model.

    Raises:
        ValueError: an unknown choice.
    """
    normalised = choice.strip().lower()
    if normalised not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if normalised == "gpu":
        return "mps" if platform == "darwin" else "cuda"
    return normalised


def build_segment_command(
    python_executable: str | os.PathLike,
    package_root: str | os.PathLike,
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    model_dir: str | os.PathLike | None = None,
    device: str = "auto",
) -> list[str]:
    """The argument list that segments one image with JSON progress on stdout.

    The engine is started by script path (``PythonSlicer <root>/onfh/__main__.py``), as
    Slicer's AI extensions start theirs: the child finds ``onfh`` whatever the PythonSlicer
    launcher does to ``PYTHONPATH``.

    Args:
        python_executable: the Python that runs the engine (``PythonSlicer`` in Slicer).
        package_root: the folder that holds the ``onfh`` package.
        input_path: the image file (Slicer saves the volume to a temporary NRRD first).
        output_dir: where ``onfh segment`` writes ``<case>.seg.nrrd`` and ``<case>.json``.
        model_dir: a model folder; ``None``, ``""`` or ``SHIPPED_MODEL`` for the shipped model.
        device: a choice from ``DEVICE_CHOICES``.
    """
    command = [
        str(python_executable),
        str(Path(package_root) / ENTRY_SCRIPT),
        "segment",
        str(input_path),
        "-o",
        str(output_dir),
        "--device",
        cli_device(device),
        "--progress",
        "json",
    ]
    model = model_folder_argument(model_dir)
    if model is not None:
        command += ["--model", model]
    return command


def child_environment(base: dict[str, str]) -> dict[str, str]:
    """A copy of ``base`` for the child: unbuffered output, so progress arrives as printed.

    Threads for OpenMP/MKL are left to the engine.
    """
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def quality_warning(report: object) -> str | None:
    """ "Low confidence: <why>" when the report's quality check failed, "Check: <what>" when it
    passed with notes (the field of view shows a hip in which no head was found), else ``None``.

    Reads the ``quality`` entry of an ``onfh segment`` JSON report defensively: older
    reports have none; today's hold ``{"passed", "summary", "heads": [{"passed",
    "reasons"}, ...], "notes": [...]}`` (one check per femoral head); a list of per-head
    entries is read too.
    """
    quality = report.get("quality") if isinstance(report, dict) else None
    entries = quality if isinstance(quality, list) else [quality]
    if isinstance(quality, dict) and isinstance(quality.get("heads"), list):
        entries = [quality, *quality["heads"]]
    reasons: list[str] = []
    failed = False
    for entry in entries:
        if isinstance(entry, dict) and entry.get("passed") is False:
            failed = True
            listed = entry.get("reasons")
            if isinstance(listed, (list, tuple)):
                reasons += [str(r) for r in listed if str(r).strip() and str(r) not in reasons]
            elif isinstance(listed, str) and listed.strip():
                reasons.append(listed)
    notes = quality.get("notes") if isinstance(quality, dict) else None
    notes = [str(n) for n in notes if str(n).strip()] if isinstance(notes, (list, tuple)) else []
    if failed:
        warning = "Low confidence: " + ("; ".join(reasons) if reasons else "the quality check failed")
        return warning + "".join(f"; check: {note}" for note in notes)
    return "Check: " + "; ".join(notes) if notes else None


def read_quality_warning(report_path: str | os.PathLike) -> str | None:
    """``quality_warning`` of a report file; ``None`` when it is missing or not JSON."""
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return quality_warning(report)


@dataclass(frozen=True)
class ProgressEvent:
    """One ``--progress json`` line: a stage name, a 0-1 fraction (or None), the case."""

    stage: str
    fraction: float | None
    case: str | None
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def text(self) -> str:
        """The stage in words for a status line ("load_model" -> "Loading the model")."""
        return _STAGE_TEXT.get(self.stage, self.stage.replace("_", " ").capitalize())


# Stage names of ``onfh segment`` worth a friendlier wording; others are shown as they are.
_STAGE_TEXT = {
    "load_model": "Loading the model",
    "read": "Reading the image",
    "localise": "Finding the femoral head",
    "segment": "Segmenting",
    "resample": "Mapping back to the image grid",
    "segment_done": "Segmented",
    "write": "Writing the result",
    "done": "Grading",
    "case_done": "Loading the result",
    "finished": "Loading the result",
    "failed": "Failed",
}


def parse_progress_line(line: str) -> ProgressEvent | None:
    """Parse one stdout line; ``None`` for anything that is not a progress object.

    The engine may print other text (warnings from libraries); those lines are kept as
    log, never treated as errors. Fractions outside 0-1 are clamped, non-numbers dropped.
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "stage" not in obj:
        return None
    fraction = obj.get("fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        fraction = None
    else:
        fraction = min(1.0, max(0.0, float(fraction)))
    case = obj.get("case")
    return ProgressEvent(str(obj["stage"]), fraction, None if case is None else str(case), obj)


class SegmentProcess:
    """A running ``onfh segment`` child: poll it for progress, cancel it, read its errors.

    ``poll()`` never blocks: two reader threads move stdout and stderr lines into
    thread-safe containers, and the caller (a ``QTimer`` in Slicer) drains them.
    The child runs in its own process group (POSIX) or process group and job tree
    (Windows), so ``cancel()`` also ends anything it started (data-loader workers).
    """

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ):
        self.command = [str(c) for c in command]
        self._events: queue.Queue[ProgressEvent] = queue.Queue()
        self._log: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self.cancelled = False
        kwargs = child_process_options()
        try:
            self._process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=None if cwd is None else str(cwd),
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **kwargs,
            )
        except OSError as error:
            message = f"{self.command[0]}: could not start the segmentation process ({error})"
            raise OnfhError(message) from None
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        """Process id of the child."""
        return self._process.pid

    def _read_stdout(self) -> None:
        for line in self._process.stdout:
            event = parse_progress_line(line)
            if event is None:
                if line.strip():
                    self._log.append(line.rstrip())
            else:
                self._events.put(event)
        self._process.stdout.close()

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())
        self._process.stderr.close()

    def poll(self) -> list[ProgressEvent]:
        """Progress events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    @property
    def finished(self) -> bool:
        """True once the child has exited and all its output has been read."""
        return self._process.poll() is not None and not any(r.is_alive() for r in self._readers)

    @property
    def returncode(self) -> int | None:
        """The child's exit status, ``None`` while it runs."""
        return self._process.poll()

    def wait(self, timeout_s: float | None = None) -> int:
        """Block until the child exits and its output is read (for scripts and tests)."""
        code = self._process.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=timeout_s)
        return code

    @property
    def log_lines(self) -> list[str]:
        """Non-progress stdout lines (the last few hundred)."""
        return list(self._log)

    @property
    def stderr_lines(self) -> list[str]:
        """The last few hundred stderr lines."""
        return list(self._stderr)

    def error_message(self) -> str:
        """The one line to show a user after a failure.

        Prefers the engine's own ``onfh: error: ...`` line (an ``OnfhError``); otherwise
        the last stderr line (a crash), otherwise the exit status.
        """
        lines = self.stderr_lines
        for line in reversed(lines):
            if line.startswith("onfh: error:"):
                return line[len("onfh: error:") :].strip()
        if lines:
            return lines[-1]
        return f"segmentation process exited with status {self.returncode}"

    def cancel(self, timeout_s: float = 5.0) -> None:
        """End the child and everything it started; returns once they are gone.

        Asks politely first (SIGTERM / CTRL_BREAK), then kills (SIGKILL / taskkill /F /T)
        after ``timeout_s``. Safe to call on a finished process.
        """
        self.cancelled = True
        if self._process.poll() is not None:
            self.wait(timeout_s)
            return
        if sys.platform == "win32":
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(self._process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        else:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout_s)
            # The group may hold grandchildren even after the leader exited.
            self._signal_group(signal.SIGKILL)
        self.wait(timeout_s)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)


class SegmentJob:
    """One image segmented by ``onfh segment`` in a child process, in its own temporary folder.

    The caller's image is written to ``<folder>/input.nrrd``; the child writes
    ``<folder>/output/input.seg.nrrd`` and ``input.json``. Nothing outside the folder is
    touched until the caller imports the result, so a cancelled or failed job leaves the
    user's scene and files unchanged; ``cleanup()`` removes the folder.
    """

    INPUT_NAME = "input"

    def __init__(
        self,
        image,
        python_executable: str | os.PathLike,
        package_root: str | os.PathLike,
        model_dir: str | os.PathLike | None = None,
        device: str = "auto",
        base_env: dict[str, str] | None = None,
    ):
        self.folder = Path(tempfile.mkdtemp(prefix="onfh-segment-"))
        self.input_path = self.folder / f"{self.INPUT_NAME}.nrrd"
        self.output_dir = self.folder / "output"
        try:
            write_image_atomic(image, self.input_path, compress=False)
            command = build_segment_command(
                python_executable, package_root, self.input_path, self.output_dir, model_dir, device
            )
            env = child_environment(dict(os.environ) if base_env is None else base_env)
            self.process = SegmentProcess(command, env=env, cwd=self.folder)
        except BaseException:
            self.cleanup()
            raise

    @property
    def seg_path(self) -> Path:
        """The ``.seg.nrrd`` the child writes on success."""
        return self.output_dir / f"{self.INPUT_NAME}.seg.nrrd"

    @property
    def report_path(self) -> Path:
        """The per-case JSON report (model id and sha256, grade) the child writes."""
        return self.output_dir / f"{self.INPUT_NAME}.json"

    def quality_warning(self) -> str | None:
        """The report's "Low confidence: <why>", if the engine's quality check failed."""
        return read_quality_warning(self.report_path)

    def result_text(self) -> str:
        """The report's grade, probabilities, ratio interval and Kerboul angle in one line."""
        from onfh.report import result_text

        try:
            return result_text(json.loads(self.report_path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return ""

    def cleanup(self) -> None:
        """Remove the temporary folder (input, outputs, logs)."""
        shutil.rmtree(self.folder, ignore_errors=True)
