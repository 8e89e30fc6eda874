"""Tests for onfh.network: DynUNets built from allow-listed model.json dictionaries."""

from __future__ import annotations

import pytest
import torch

from onfh.errors import OnfhError
from onfh.modelfolder import default_config
from onfh.network import TwoStageModel, build_model, build_network, network_kwargs, size_divisor


def small_network(out_channels: int = 3) -> dict:
    return {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": out_channels,
        "kernel_size": [3, 3, 3],
        "strides": [1, 2, 2],
        "filters": [4, 8, 16],
        "norm_name": ["instance", {"affine": True}],
    }


def test_build_network_output_shape_matches_input_and_classes():
    network = build_network(small_network(out_channels=3)).eval()
    with torch.inference_mode():
        out = network(torch.zeros(1, 1, 16, 24, 8))
    assert tuple(out.shape) == (1, 3, 16, 24, 8)


def test_json_lists_become_layer_tuples_and_upsample_defaults_to_strides():
    kwargs = network_kwargs(small_network())
    assert kwargs["norm_name"] == ("instance", {"affine": True})
    assert kwargs["upsample_kernel_size"] == [2, 2]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"__class__": "os.system"}, "unsupported keys"),
        ({"filters": "[4, 8, 16]"}, "wrong type"),
        ({"out_channels": True}, "wrong type"),
        ({"norm_name": ["instance", "affine"]}, "norm_name"),
        ({"strides": [1, 2]}, "levels"),
    ],
)
def test_bad_network_configs_are_refused_without_evaluation(change, message):
    config = {**small_network(), **change}
    with pytest.raises(OnfhError, match=message):
        build_network(config)


def test_missing_required_key_is_named():
    config = small_network()
    del config["strides"]
    with pytest.raises(OnfhError, match="strides"):
        build_network(config)


def test_size_divisor_is_product_of_strides():
    assert size_divisor(small_network()) == [4, 4, 4]
    anisotropic = {**small_network(), "strides": [1, [2, 2, 1], 2]}
    assert size_divisor(anisotropic) == [4, 4, 2]


def test_two_stage_state_dict_keys_are_prefixed_by_stage():
    config = default_config(segmenter_filters=(4, 8, 16, 32, 64))
    model = build_model(config)
    assert isinstance(model, TwoStageModel)
    prefixes = {key.split(".", 1)[0] for key in model.state_dict()}
    assert prefixes == {"localiser", "segmenter"}
    with pytest.raises(RuntimeError, match="no forward"):
        model(torch.zeros(1))


def test_build_model_requires_both_stages():
    with pytest.raises(OnfhError, match=r"segmenter\.network"):
        build_model({"localiser": {"network": small_network(2)}})
