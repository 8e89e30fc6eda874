"""Tests for onfh.modelfolder: saving, validating, checksum-verified loading, discovery."""

from __future__ import annotations

import json

import pytest
import torch

from onfh import modelfolder
from onfh.errors import OnfhError
from onfh.modelfolder import (
    default_config,
    default_model_dir,
    file_sha256,
    load_model,
    load_model_folder,
    save_model_folder,
)
from onfh.network import build_model

TINY_FILTERS = (4, 8, 8, 8, 8)


def tiny_config(model_id: str = "tiny") -> dict:
    config = default_config(model_id, segmenter_filters=TINY_FILTERS)
    config["localiser"]["network"]["filters"] = [4, 4, 4, 4]
    return config


@pytest.fixture
def saved(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config)
    folder = save_model_folder(tmp_path / "tiny", model, config, evaluation_md="# Evaluation\n")
    return folder, model


def test_save_writes_weights_json_and_card_with_matching_sha256(saved):
    folder, _ = saved
    assert folder.sha256 == file_sha256(folder.weights_path)
    stored = json.loads((folder.path / "model.json").read_text())
    assert stored["sha256"] == folder.sha256 and stored["id"] == "tiny"
    assert (folder.path / "EVALUATION.md").read_text() == "# Evaluation\n"
    assert set(stored["onnx"]) >= {"localiser", "segmenter"} and stored["onnx"]["opset"] == 17
    for stage in ("localiser", "segmenter"):
        assert stored["onnx"][stage]["sha256"] == file_sha256(folder.path / f"{stage}.onnx")
    shared = ("model.pt", "model.json", "EVALUATION.md", "localiser.onnx", "segmenter.onnx")
    for name in shared:  # shared folders: readable by others
        assert (folder.path / name).stat().st_mode & 0o777 == 0o644, name
    assert not list(folder.path.glob(".*partial*"))
    assert not [p for p in folder.path.iterdir() if "partial" in p.name]


def test_load_model_restores_identical_weights_in_eval_mode(saved):
    folder, model = saved
    loaded = load_model(load_model_folder(folder.path), "cpu")
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_state_dict_is_plain_and_loads_with_weights_only(saved):
    folder, _ = saved
    state = torch.load(folder.weights_path, weights_only=True)
    assert all(k.startswith(("localiser.", "segmenter.")) for k in state)


def test_wrong_sha256_is_refused_before_loading(saved):
    folder, _ = saved
    with open(folder.weights_path, "ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(OnfhError, match=r"does not match model\.json"):
        load_model(load_model_folder(folder.path), "cpu")


def test_corrupted_weights_with_matching_sha256_give_one_line_error(saved):
    folder, _ = saved
    folder.weights_path.write_bytes(b"not a torch archive")
    config = json.loads((folder.path / "model.json").read_text())
    config["sha256"] = file_sha256(folder.weights_path)
    (folder.path / "model.json").write_text(json.dumps(config))
    with pytest.raises(OnfhError, match="could not be loaded"):
        load_model(load_model_folder(folder.path), "cpu")


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = tiny_config("other")
    other["segmenter"]["network"]["filters"] = [8, 8, 8, 8, 8]
    folder = save_model_folder(tmp_path / "m", build_model(other), other)
    config = json.loads((folder.path / "model.json").read_text())
    config["segmenter"]["network"]["filters"] = list(TINY_FILTERS)
    (folder.path / "model.json").write_text(json.dumps(config))
    with pytest.raises(OnfhError, match="do not fit"):
        load_model(load_model_folder(folder.path), "cpu")


def test_missing_weights_and_missing_folder_are_named(saved, tmp_path):
    folder, model = saved
    folder.weights_path.unlink()  # an ONNX-only folder: the torch model is rebuilt from the ONNX files
    loaded = load_model(load_model_folder(folder.path), "cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    (folder.path / "segmenter.onnx").unlink()
    with pytest.raises(OnfhError, match=r"\['segmenter\.onnx'\] listed in model\.json are missing"):
        load_model_folder(folder.path)
    config = json.loads((folder.path / "model.json").read_text())
    del config["onnx"]
    (folder.path / "model.json").write_text(json.dumps(config))
    with pytest.raises(OnfhError, match=r"model\.pt are missing"):
        load_model_folder(folder.path)
    with pytest.raises(OnfhError, match="not found"):
        load_model_folder(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("intensity"), "missing keys"),
        (lambda c: c.update(format=2), "unsupported format"),
        (lambda c: c.update(labels={"background": 0, "head": 1, "necrosis": 2}), "labels"),
        (lambda c: c["segmenter"].update(patch_size=[90, 96, 96]), "multiples"),
        (lambda c: c["localiser"].update(spacing_mm=[4, 4]), "spacing_mm"),
        (lambda c: c["segmenter"]["network"].update(out_channels=2), "3 output classes"),
        (lambda c: c.update(sha256="abc"), "sha256"),
        (lambda c: c["onnx"]["segmenter"].update(file="../elsewhere.onnx"), r"onnx\.segmenter must be"),
        (lambda c: c["onnx"]["localiser"].update(sha256="0" * 63), r"onnx\.localiser must be"),
        (lambda c: c.update(uncertainty={"sd_scale": 0}), r"uncertainty\.sd_scale must be"),
        (lambda c: c.update(uncertainty={"sd_scale": "12"}), r"uncertainty\.sd_scale must be"),
        (lambda c: c.update(uncertainty={"sd_scale": 2.0, "sdscale": 1}), "sdscale"),
    ],
)
def test_invalid_model_json_is_refused(saved, edit, message):
    folder, _ = saved
    config = json.loads((folder.path / "model.json").read_text())
    edit(config)
    (folder.path / "model.json").write_text(json.dumps(config))
    with pytest.raises(OnfhError, match=message):
        load_model_folder(folder.path)


def test_unparseable_model_json(saved):
    folder, _ = saved
    (folder.path / "model.json").write_text("{not json")
    with pytest.raises(OnfhError, match="not valid JSON"):
        load_model_folder(folder.path)


def test_default_model_dir_prefers_environment(saved, monkeypatch):
    folder, _ = saved
    monkeypatch.setenv("ONFH_MODEL_DIR", str(folder.path))
    assert default_model_dir() == folder.path


def test_default_model_dir_finds_newest_model_weights_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("ONFH_MODEL_DIR", raising=False)
    root = tmp_path / "model_weights"
    for name, created in (("a", "2026-01-02T00:00:00Z"), ("b", "2025-01-01T00:00:00Z")):
        (root / name).mkdir(parents=True)
        (root / name / "model.json").write_text(json.dumps({"created": created}))
    monkeypatch.setattr(modelfolder, "_model_search_roots", lambda: [root])
    assert default_model_dir() == root / "a"


def test_no_model_installed_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("ONFH_MODEL_DIR", raising=False)
    monkeypatch.setattr(modelfolder, "_model_search_roots", lambda: [tmp_path / "model_weights"])
    with pytest.raises(OnfhError, match=r"no segmentation model is installed.*--model"):
        default_model_dir()


def _unique_parameter_bytes(model) -> int:
    tensors = model.state_dict().values()
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def test_weights_shared_by_two_keys_are_written_once(saved):
    """DynUNet names its encoder blocks twice (``skip_layers``); the file must not double."""
    folder, model = saved
    keys = len(model.state_dict())
    distinct = len({t.untyped_storage().data_ptr() for t in model.state_dict().values()})
    assert distinct < keys  # the aliasing this guards against is really there
    size = (folder.path / modelfolder.MODEL_WEIGHTS).stat().st_size
    assert size < 1.1 * _unique_parameter_bytes(model) + 64_000


def test_state_on_cpu_keeps_aliases_of_non_cpu_tensors():
    """A state dict on another device: one CPU copy per shared tensor, not one per key.

    No CUDA here: meta tensors stand in, and ``Tensor.cpu`` is counted (meta has no data).
    """
    weight = torch.arange(6.0, device="meta").reshape(2, 3)
    state = {"a.weight": weight, "b.weight": weight, "c.bias": torch.zeros(3, device="meta"), "step": 3}
    copies = []

    original = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        copies.append(self.shape)
        return torch.empty(self.shape, dtype=self.dtype)

    torch.Tensor.cpu = counting_cpu
    try:
        result = modelfolder._state_on_cpu(state)
    finally:
        torch.Tensor.cpu = original
    assert len(copies) == 2 and result["a.weight"] is result["b.weight"] and result["step"] == 3


def test_without_the_onnx_package_training_output_keeps_model_pt_and_warns(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # unimportable, as in an install without it
    config = tiny_config()
    with pytest.warns(UserWarning, match="onfh export"):
        folder = save_model_folder(tmp_path / "m", build_model(config), config)
    assert folder.weights_path.is_file() and not folder.has_onnx
    assert not (folder.path / "segmenter.onnx").exists()
