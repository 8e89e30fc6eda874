"""The two-stage network: a coarse localiser and a fine segmenter, both MONAI DynUNets.

Both networks are built from plain keyword dictionaries stored in ``model.json`` and
checked by :mod:`onfh.network_config` (torch-free, re-exported here). This module is for
training and the torch backend; ONNX inference never imports it.
"""

from __future__ import annotations

from typing import Any

import torch

from onfh.errors import OnfhError
from onfh.network_config import network_kwargs, size_divisor

__all__ = ["TwoStageModel", "build_model", "build_network", "network_kwargs", "size_divisor"]


def build_network(network_config: dict[str, Any]):
    """Build a MONAI ``DynUNet`` from an allow-listed keyword dictionary (never evaluated).

    Args:
        network_config: DynUNet keyword arguments, e.g. ``{"spatial_dims": 3,
            "in_channels": 1, "out_channels": 3, "kernel_size": [3, 3, 3, 3, 3],
            "strides": [1, 2, 2, 2, 2], "filters": [16, 32, 64, 128, 256]}``.

    Returns:
        The untrained ``torch.nn.Module``.
    """
    from monai.networks.nets import DynUNet

    kwargs = network_kwargs(network_config)
    try:
        return DynUNet(**kwargs)
    except (ValueError, TypeError, AssertionError) as error:
        raise OnfhError(f"network configuration is not a valid DynUNet: {error}") from None


class TwoStageModel(torch.nn.Module):
    """The localiser (coarse, whole field of view) and the segmenter (fine, head crop).

    Its ``state_dict()`` is what ``model.pt`` holds: keys prefixed ``localiser.`` and
    ``segmenter.``. There is no single ``forward``: inference runs the stages separately
    because the crop of stage 2 depends on the output of stage 1.
    """

    def __init__(self, localiser, segmenter) -> None:
        super().__init__()
        self.localiser = localiser
        self.segmenter = segmenter

    def forward(self, *args, **kwargs):
        raise RuntimeError("TwoStageModel has no forward(); call .localiser and .segmenter")


def build_model(config: dict[str, Any]) -> TwoStageModel:
    """Build the untrained two-stage model from a ``model.json`` dictionary.

    Args:
        config: the model configuration; uses ``config["localiser"]["network"]`` and
            ``config["segmenter"]["network"]``.
    """
    try:
        localiser_config = config["localiser"]["network"]
        segmenter_config = config["segmenter"]["network"]
    except (KeyError, TypeError):
        raise OnfhError("model configuration lacks localiser.network or segmenter.network") from None
    return TwoStageModel(build_network(localiser_config), build_network(segmenter_config))
