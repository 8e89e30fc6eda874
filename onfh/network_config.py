"""DynUNet configurations as ``model.json`` stores them: validated without torch.

Only allow-listed DynUNet arguments with JSON-typed values are accepted, and nothing is
ever evaluated as code, so a model folder from anyone is data, not a program. Inference
on ONNX Runtime reads these too (grid sizes must fit the down-sampling), so this module
imports neither torch nor MONAI.
"""

from __future__ import annotations

from typing import Any

from onfh.errors import OnfhError

# DynUNet keyword arguments a model.json may set, with the JSON types each may hold.
_ALLOWED_KWARGS: dict[str, tuple[type, ...]] = {
    "spatial_dims": (int,),
    "in_channels": (int,),
    "out_channels": (int,),
    "kernel_size": (list, tuple),
    "strides": (list, tuple),
    "upsample_kernel_size": (list, tuple),
    "filters": (list, tuple, type(None)),
    "dropout": (float, int, type(None)),
    "norm_name": (str, list, tuple),
    "act_name": (str, list, tuple),
    "deep_supervision": (bool,),
    "deep_supr_num": (int,),
    "res_block": (bool,),
    "trans_bias": (bool,),
}
_REQUIRED_KWARGS = ("spatial_dims", "in_channels", "out_channels", "kernel_size", "strides")


def _as_layer_option(value: Any, key: str) -> str | tuple[str, dict[str, Any]]:
    """``norm_name``/``act_name``: a name, or ``[name, {options}]`` as JSON stores a tuple."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    ):
        return (value[0], dict(value[1]))
    raise OnfhError(f"network option {key!r} must be a name or [name, {{options}}], got {value!r}")


def network_kwargs(network_config: dict[str, Any]) -> dict[str, Any]:
    """Validate a DynUNet keyword dictionary and convert it to constructor arguments.

    Args:
        network_config: keyword arguments as stored in ``model.json``.

    Returns:
        A new dictionary ready for ``monai.networks.nets.DynUNet(**kwargs)``;
        ``upsample_kernel_size`` defaults to ``strides[1:]`` as in nnU-Net.

    Raises:
        OnfhError: an unknown key, a value of the wrong type, or a missing required key.
    """
    if not isinstance(network_config, dict):
        raise OnfhError(f"network configuration must be a JSON object, got {type(network_config).__name__}")
    unknown = sorted(set(network_config) - set(_ALLOWED_KWARGS))
    if unknown:
        raise OnfhError(f"network configuration has unsupported keys {unknown}")
    missing = [key for key in _REQUIRED_KWARGS if key not in network_config]
    if missing:
        raise OnfhError(f"network configuration lacks required keys {missing}")
    kwargs: dict[str, Any] = {}
    for key, value in network_config.items():
        allowed = _ALLOWED_KWARGS[key]
        # bool is an int subclass: refuse True where a count is meant, and 1 where a flag is.
        if (bool not in allowed and isinstance(value, bool)) or not isinstance(value, allowed):
            raise OnfhError(f"network option {key!r} has the wrong type: {value!r}")
        if key in ("norm_name", "act_name"):
            kwargs[key] = _as_layer_option(value, key)
        elif key in ("kernel_size", "strides", "upsample_kernel_size", "filters") and value is not None:
            kwargs[key] = [list(v) if isinstance(v, (list, tuple)) else v for v in value]
        else:
            kwargs[key] = value
    if len(kwargs["kernel_size"]) != len(kwargs["strides"]):
        raise OnfhError(
            f"network configuration: kernel_size has {len(kwargs['kernel_size'])} levels, "
            f"strides has {len(kwargs['strides'])}"
        )
    kwargs.setdefault("upsample_kernel_size", kwargs["strides"][1:])
    return kwargs


def size_divisor(network_config: dict[str, Any]) -> list[int]:
    """Per-axis factor every input size must be a multiple of (product of the strides)."""
    strides = network_kwargs(network_config)["strides"]
    dims = int(network_config["spatial_dims"])
    divisor = [1] * dims
    for stride in strides:
        per_axis = stride if isinstance(stride, list) else [stride] * dims
        divisor = [d * int(s) for d, s in zip(divisor, per_axis)]
    return divisor
