"""DICOM series built in code: a phantom written as a valid MR Image Storage series.

The series writer (``write_mr_series``, ``slice_uid``) lives in ``onfh.synthetic.dicom_series``,
because ``benchmarks/bench_dicom.py`` writes the same series; this file adds the dciodvfy check
and the segmented phantom fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_fixtures import tiny_model_dir  # noqa: F401 (fixture)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """``dciodvfy PATH``: its Error lines and its Warning lines (printed for the log).

    Skips the test when dicom3tools is not installed, unless ``ONFH_REQUIRE_DCIODVFY`` is
    set (``.ci/run`` installs it and sets it: CI must not skip the validation silently).
    """
    import os
    import shutil
    import subprocess

    import pytest

    if shutil.which("dciodvfy") is None:
        if os.environ.get("ONFH_REQUIRE_DCIODVFY"):
            raise RuntimeError("ONFH_REQUIRE_DCIODVFY is set but dciodvfy (dicom3tools) is not installed")
        pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools)")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    print(f"dciodvfy {path.name}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in sorted(set(warnings)):
        print("  ", line)
    return errors, warnings


PHANTOM_SERIES_UID = "1.2.826.0.1.3680043.8.498.4242"


@pytest.fixture(scope="session")
def segmented_dicom_case(tiny_model_dir, tmp_path_factory) -> dict:  # noqa: F811
    """A phantom written as an MR series and run through ``onfh segment --label-map`` once.

    Returns the paths (``series``, ``out`` and each output by its report key), the case
    report and the phantom's image.
    """
    import json

    from model_fixtures import DIRECTIONS, phantom

    from onfh.cli import main
    from onfh.synthetic.dicom_series import write_mr_series

    root = tmp_path_factory.mktemp("dicom_case")
    image, _ = phantom(DIRECTIONS["oblique"], noise=8.0, seed=3)
    series = root / "hip_mr"
    write_mr_series(image, series, PHANTOM_SERIES_UID)
    out = root / "out"
    code = main(["segment", str(series), "-o", str(out), "--model", str(tiny_model_dir), "--label-map"])
    assert code == 0
    report = json.loads((out / "hip_mr.json").read_text())
    paths = {key: out / name for key, name in report["outputs"].items()}
    return {**paths, "series": series, "out": out, "case_json": report, "image": image}


def bilateral_dicom_phantom(folder: Path):
    """A small two-hip phantom written as an MR series in ``folder``: (truth label, the image
    read back from the series, the series' source headers in grid order)."""
    from model_fixtures import DIRECTIONS, phantom

    from onfh.dicom_source import source_datasets
    from onfh.imageio import read_image
    from onfh.synthetic.dicom_series import write_mr_series

    image, truth = phantom(
        DIRECTIONS["axial"],
        spacing_mm=(2.0, 2.0, 2.0),
        size=(90, 40, 30),
        head_centre_mm=(-45.0, -9.0, 25.0),
        second_head_centre_mm=(45.0, -9.0, 25.0),
    )
    write_mr_series(image, folder, PHANTOM_SERIES_UID)
    grid = read_image(folder)
    return truth, grid, source_datasets(folder, grid)
