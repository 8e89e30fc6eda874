"""The default model shipped in ``model_weights/``: what issue 7 promises about the bundle.

These tests read the real files in the repository (no fixtures): a model folder that grew
past 25 MB, an ONNX file whose sha256 no longer matches ``model.json``, an EVALUATION.md that lost its
cross-validation table or model card, or a training recipe that no longer reproduces the
shipped networks fails here before it reaches a user.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onfh.modelfolder import (
    EVALUATION_MD,
    MODEL_DIR_ENV,
    MODEL_JSON,
    MODEL_WEIGHTS,
    ONNX_FILES,
    default_model_dir,
    file_sha256,
    load_model,
    load_model_folder,
)
from onfh.training.recipe import TrainingRecipe, model_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent for p in (ROOT / "model_weights").glob(f"*/{MODEL_JSON}"))
MAX_FOLDER_BYTES = 25 * 1024 * 1024
"""The whole shipped folder. It holds the weights once: the two ONNX files, which inference
runs and from which the torch backend rebuilds the networks; ``model.pt`` beside them
would double the size of the extension and of every clone for no gain."""


def test_exactly_one_default_model_ships():
    assert len(SHIPPED) == 1, f"expected one model folder in model_weights/, found {SHIPPED}"


@pytest.fixture(params=SHIPPED, ids=lambda p: p.name)
def shipped(request) -> Path:
    return request.param


def test_default_model_dir_is_the_shipped_model(shipped, monkeypatch):
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    assert default_model_dir().resolve() == shipped.resolve()


def test_folder_fits_the_size_budget_and_onnx_files_match_their_sha256(shipped):
    total = sum(p.stat().st_size for p in shipped.iterdir() if p.is_file())
    assert total <= MAX_FOLDER_BYTES, f"{shipped}: {total} bytes"
    config = json.loads((shipped / MODEL_JSON).read_text(encoding="utf-8"))
    for stage, name in ONNX_FILES.items():
        assert config["onnx"][stage]["sha256"] == file_sha256(shipped / name), name
    if (shipped / MODEL_WEIGHTS).is_file():
        assert config["sha256"] == file_sha256(shipped / MODEL_WEIGHTS)
    assert config["id"] == shipped.name


def test_weights_load_into_the_configured_networks(shipped):
    model = load_model(load_model_folder(shipped), "cpu")
    parameters = sum(p.numel() for p in model.segmenter.parameters())
    assert parameters > 1_000_000  # a real segmenter, not a toy left behind by a test
    assert len(model.segmenter.downsamples) + 2 == 5  # the reference study's 5 levels


def test_recipe_defaults_reproduce_the_shipped_networks(shipped):
    """``onfh train data -o M`` with no recipe flags must train this architecture."""
    config = json.loads((shipped / MODEL_JSON).read_text(encoding="utf-8"))
    bookkeeping = {"seed", "validate_every", "checkpoint_every"}  # do not change what is learnt
    if config["training"].get("init_from"):
        # A fine-tuned model: its own schedule is shorter by design; its parent (named in
        # model.json) was trained with the defaults, and the networks must still match.
        bookkeeping |= {"iterations", "learning_rate"}
        assert config["training"]["init_from"]["id"]
    shipped_recipe = {k: v for k, v in config["training"]["recipe"].items() if k not in bookkeeping}
    default_recipe = {k: v for k, v in TrainingRecipe().to_dict().items() if k not in bookkeeping}
    assert shipped_recipe == default_recipe
    expected = model_config(TrainingRecipe())
    for stage in ("localiser", "segmenter"):
        assert config[stage] == expected[stage]
    assert config["intensity"] == expected["intensity"]


def test_evaluation_card_holds_the_promised_sections(shipped):
    text = (shipped / EVALUATION_MD).read_text(encoding="utf-8")
    lowered = text.lower()
    assert "synthetic" in lowered and "not for clinical" in lowered
    assert "4-fold cross-validation" in lowered
    assert "reference study" in lowered
    for protocol in ("0.6x0.6x1.5", "1x1x1"):
        assert protocol in text
    assert "fine-tun" in lowered
    config = json.loads((shipped / MODEL_JSON).read_text(encoding="utf-8"))
    assert f"--model-id {config['id']}" in text  # the command that reproduces it
