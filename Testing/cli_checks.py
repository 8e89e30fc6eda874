"""Running ``onfh`` as a careless user would and checking how it answers (issue 16).

Every bad-input test asserts the same three things: the exit code, exactly one
``onfh: error:`` line naming the problem, and that no output file appeared or changed.
``run_onfh`` also fails any run whose output holds "Traceback" (in-process, an escaping
exception fails the test the same way).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.cli import main

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("onfh: error:")]


def run_onfh(capfd, *args) -> Outcome:
    """``onfh ARGS`` in this process; stdout and stderr captured at the file descriptors,
    so what native code (ITK, GDCM) prints is seen too."""
    capfd.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:  # argparse: --help, usage errors
        code = exit.code
    captured = capfd.readouterr()
    outcome = Outcome(int(code or 0), captured.out, captured.err)
    assert "Traceback" not in outcome.out + outcome.err, outcome.err
    return outcome


def run_child(*args, env: dict | None = None, timeout: float = 300) -> Outcome:
    """``python -m onfh ARGS`` as a separate process, as a user's shell runs it."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "ONFH_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "onfh", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )
    outcome = Outcome(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in outcome.out + outcome.err, outcome.err
    return outcome


def assert_refused(outcome: Outcome, code: int, *phrases: str) -> None:
    """Exit ``code``, and stderr is one ``onfh: error:`` line holding every phrase."""
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == code, (outcome.code, outcome.err)
    assert len(lines) == 1 and lines[0].startswith("onfh: error:"), outcome.err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under ``folders`` (path -> sha256), to show that nothing appeared or changed."""
    state = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def write_image(
    path: Path, array: np.ndarray, spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0), compress=True
) -> Path:
    """``array`` (z, y, x) as an image file with the given geometry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing_mm])
    image.SetOrigin([float(o) for o in origin_mm])
    sitk.WriteImage(image, str(path), compress)
    return path


def noise_image(path: Path, shape_zyx=(40, 40, 40), spacing_mm=(1.0, 1.0, 1.0), seed: int = 0) -> Path:
    """A small MRI-like noise image (float32, not constant)."""
    rng = np.random.default_rng(seed)
    return write_image(path, (100 + 20 * rng.normal(size=shape_zyx)).astype(np.float32), spacing_mm)


def ball_labels(shape_zyx=(40, 40, 40), centre=(20, 20, 20), radius=12, lesion_radius=6) -> np.ndarray:
    """A 0/1/2 label array: a ball of head holding a smaller ball of necrosis at its top."""
    z, y, x = np.indices(shape_zyx)
    distance = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    labels = (distance <= radius).astype(np.uint8)
    lesion = np.sqrt((z - centre[0] - radius / 2) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    labels[(lesion <= lesion_radius) & (labels == 1)] = 2
    return labels


def truncate(path: Path, fraction: float = 2 / 3) -> Path:
    """Cut ``path`` to ``fraction`` of its bytes, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
