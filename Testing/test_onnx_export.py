"""Tests for onfh.onnx_export and ``onfh export``: checked exports, weights rebuilt from ONNX."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from onfh.cli import main
from onfh.errors import OnfhError
from onfh.modelfolder import default_config, file_sha256, load_model, load_model_folder, save_model_folder
from onfh.network import build_model
from onfh.onnx_export import INPUT_NAME, export_model_folder, model_from_onnx


def small_config(model_id: str = "small") -> dict:
    """The shared design's networks with few filters (affine instance norm, as in default_config)."""
    config = default_config(model_id, segmenter_filters=(4, 8, 8, 8, 8))
    config["localiser"]["network"]["filters"] = [4, 4, 4, 4]
    return config


@pytest.fixture
def trained_like(tmp_path):
    """A model whose parameters all differ (as after training), saved without ONNX files."""
    config = small_config()
    torch.manual_seed(1)
    model = build_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return save_model_folder(tmp_path / "m", model, config, onnx=False), model


def onnx_probabilities(folder, stage: str, array: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(folder.onnx_bytes(stage), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: array})[0]


def test_export_adds_checked_files_and_keeps_the_weights_identity(trained_like):
    folder, _ = trained_like
    assert "onnx" not in folder.config and not (folder.path / "segmenter.onnx").exists()
    sha_before = folder.sha256
    exported = export_model_folder(folder.path)
    assert exported.sha256 == sha_before == file_sha256(exported.weights_path)
    stored = json.loads((exported.path / "model.json").read_text())
    for stage in ("localiser", "segmenter"):
        assert stored["onnx"][stage] == {
            "file": f"{stage}.onnx",
            "sha256": file_sha256(exported.path / f"{stage}.onnx"),
        }


@pytest.mark.parametrize("size_zyx", [(64, 64, 64), (48, 80, 64)])
def test_onnx_matches_torch_on_any_grid_size(trained_like, size_zyx):
    """The localiser grid grows with the field of view: the export must not bake in its example size."""
    folder, model = trained_like
    exported = export_model_folder(folder.path)
    array = np.random.default_rng(0).standard_normal((1, 1, *size_zyx)).astype(np.float32)
    for stage in ("localiser", "segmenter"):
        with torch.inference_mode():
            expected = torch.softmax(getattr(model, stage).eval()(torch.from_numpy(array)), dim=1).numpy()
        got = onnx_probabilities(exported, stage, array)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4, stage


def test_dropping_model_pt_keeps_identical_torch_weights(trained_like, capsys):
    folder, model = trained_like
    assert main(["export", str(folder.path), "--drop-torch-weights"]) == 0
    assert "removed model.pt" in capsys.readouterr().out
    assert not folder.weights_path.exists()
    onnx_only = load_model_folder(folder.path)
    rebuilt = load_model(onnx_only, "cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    with pytest.raises(OnfhError, match=r"no model\.pt to export from"):
        export_model_folder(folder.path)


def test_equal_valued_parameters_survive_the_exporters_deduplication(tmp_path):
    """Fresh norm weights are all ones: the exporter stores them once and names the rest by Identity."""
    config = small_config()
    model = build_model(config)
    folder = save_model_folder(tmp_path / "fresh", model, config)
    rebuilt = model_from_onnx(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_tampered_onnx_file_is_refused_before_parsing(trained_like, tmp_path):
    folder, _ = trained_like
    exported = export_model_folder(folder.path)
    copy = tmp_path / "copy"
    shutil.copytree(exported.path, copy)
    data = bytearray((copy / "segmenter.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "segmenter.onnx").write_bytes(bytes(data))
    with pytest.raises(OnfhError, match=r"segmenter\.onnx: sha256 .* does not match model\.json"):
        load_model_folder(copy).onnx_bytes("segmenter")
    (copy / "model.pt").unlink()
    with pytest.raises(OnfhError, match="does not match"):
        load_model(load_model_folder(copy), "cpu")
