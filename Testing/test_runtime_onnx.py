"""Tests for onfh.runtime_onnx: segmenting without torch, and the same labels as the torch backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import DIRECTIONS, phantom, tiny_model_dir  # noqa: F401 (fixture)

from onfh.errors import OnfhError
from onfh.runtime_onnx import CPU, execution_providers

ROOT = Path(__file__).resolve().parents[1]

# Runs the onfh command with torch and MONAI unimportable (``import torch`` raises
# ImportError), then fails if any module of theirs got loaded anyway.
WITHOUT_TORCH = """
import sys
for name in ("torch", "monai"):
    sys.modules[name] = None
from onfh.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in ("torch", "monai"))
print("HEAVY MODULES:", heavy)
sys.exit(code or (3 if heavy else 0))
"""


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONFH_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_segment_and_demo_run_with_torch_unimportable(tiny_model_dir, tmp_path):  # noqa: F811
    image, _ = phantom(DIRECTIONS["oblique"], noise=8.0, seed=3)
    sitk.WriteImage(image, str(tmp_path / "hip.nii.gz"))
    result = run_without_torch(
        "segment", str(tmp_path / "hip.nii.gz"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY MODULES: []" in result.stdout
    report = json.loads((tmp_path / "out" / "hip.json").read_text())
    assert "onnxruntime" in report["device"]
    assert (tmp_path / "out" / "hip.seg.nrrd").is_file()

    demo = run_without_torch("demo", "-o", str(tmp_path / "demo"), "--model", str(tiny_model_dir))
    assert demo.returncode == 0, demo.stderr
    assert "HEAVY MODULES: []" in demo.stdout and "Steinberg extent grade" in demo.stdout

    refused = run_without_torch(
        "segment", str(tmp_path / "hip.nii.gz"), "-o", str(tmp_path / "t"), "--backend", "torch",
        "--model", str(tiny_model_dir),
    )  # fmt: skip
    assert refused.returncode != 0  # the torch backend really needs torch: the blocker works


def test_execution_providers_follow_the_device_choice():
    import onnxruntime

    assert execution_providers("cpu") == [CPU]
    assert execution_providers("auto")[-1] == CPU
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(OnfhError, match="no CUDA provider"):
            execution_providers("cuda")
    with pytest.raises(OnfhError, match="not supported by the ONNX backend"):
        execution_providers("tpu")


def _shipped_folder() -> Path:
    folders = sorted(p.parent for p in (ROOT / "model_weights").glob("*/model.json"))
    if not folders:
        pytest.skip("no shipped model")
    return folders[0]


def _agreement(seeds, size=None) -> list[tuple[float, float, str | None, str | None]]:
    """Per case: share of voxels with the same label, of foreground voxels, and both grades."""
    from onfh.case_segmentation import load_segmenter
    from onfh.grading import grade_label_map
    from onfh.synthetic import generate_case

    onnx_segmenter, _, _ = load_segmenter(str(_shipped_folder()), "cpu", "onnx")
    torch_segmenter, _, _ = load_segmenter(str(_shipped_folder()), "cpu", "torch")
    rows = []
    for seed in seeds:
        case = generate_case(seed, size=size)
        image = sitk.Cast(case.image, sitk.sitkFloat32)
        labels = [sitk.GetArrayFromImage(s.segment(image).label) for s in (onnx_segmenter, torch_segmenter)]
        same = labels[0] == labels[1]
        foreground = (labels[0] > 0) | (labels[1] > 0)
        grades = [grade_label_map(label, image.GetSpacing()).grade for label in labels]
        rows.append((float(same.mean()), float(same[foreground].mean()), *grades))
    return rows


def test_onnx_and_torch_backends_label_the_same_voxels():
    """The shipped model on a phantom from ``onfh synth``'s generator: same labels, same grade."""
    for all_voxels, foreground_voxels, onnx_grade, torch_grade in _agreement([101], size=(160, 160, 96)):
        assert all_voxels >= 0.999
        assert foreground_voxels >= 0.995
        assert onnx_grade == torch_grade


@pytest.mark.slow
def test_onnx_and_torch_backends_agree_on_unseen_synthetic_cases():
    rows = _agreement(range(200, 206))
    for all_voxels, foreground_voxels, onnx_grade, torch_grade in rows:
        assert all_voxels >= 0.999 and foreground_voxels >= 0.995
        assert onnx_grade == torch_grade
    assert np.mean([r[1] for r in rows]) >= 0.999
