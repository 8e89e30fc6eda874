"""ONNX exports of the two networks, and the torch model rebuilt from them.

Inference runs the networks on ONNX Runtime, so segmenting needs neither torch nor MONAI
(a ~20 MB install instead of 1-3 GB) and loads weights that are data, not a pickle. Each
network is exported with its softmax (the file maps a normalised ``[1, 1, z, y, x]``
image to class probabilities ``[1, C, z, y, x]``), spatial axes dynamic because the
localiser grid grows with the field of view.

The exporter is ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer):
it needs only the ``onnx`` package, while the dynamo exporter also needs ``onnxscript``;
DynUNet has no data-dependent control flow, so tracing is exact. Every export is checked
against torch on a probe input before it is recorded in ``model.json``, and every
parameter must come out under its own name with identical values, so the torch model can
be rebuilt from the ONNX files alone (:func:`model_from_onnx`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from onfh.errors import OnfhError
from onfh.imageio import write_atomic, write_text_atomic
from onfh.modelfolder import MODEL_JSON, ONNX_FILES, ModelFolder, load_model_folder

ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
MAX_PROBABILITY_DIFFERENCE = 1e-3  # float32 kernels differ by ~1e-5; a wrong graph by far more
_PREFIX = "network."  # parameter names inside the exported wrapper


def _probability_wrapper(network: Any):
    """``softmax(network(x))`` as a module, so the ONNX file returns probabilities."""
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.network = inner

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.network(image), dim=1)

    return Probabilities(network).eval()


def export_network(network: Any, size_xyz: list[int], path: Path) -> None:
    """Export one network (in eval mode, probabilities out) to ``path``, atomically.

    ``size_xyz`` is the example input's grid (the model's own), as in ``model.json``.
    """
    import torch

    example = torch.zeros((1, 1, *reversed([int(s) for s in size_xyz])))
    axes = {2: "z", 3: "y", 4: "x"}
    was_training = network.training
    network.eval()
    try:
        with warnings.catch_warnings():
            # The tracer warns about DynUNet's shape assertions and InstanceNorm's mode; both
            # are exact for any input size (checked by verify_export at two sizes in the tests).
            warnings.simplefilter("ignore")
            write_atomic(
                path,
                lambda tmp: torch.onnx.export(
                    _probability_wrapper(network),
                    (example,),
                    str(tmp),
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                ),
            )
    finally:
        network.train(was_training)


def onnx_parameters(data: bytes) -> dict[str, np.ndarray]:
    """The network parameters stored in an exported ONNX file, by their torch names.

    The exporter stores equal-valued parameters once (e.g. freshly initialised norm
    weights) and names the others through ``Identity`` nodes; those are followed too.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(data).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:  # topological order: an Identity's source comes first
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return {name[len(_PREFIX) :]: value for name, value in values.items() if name.startswith(_PREFIX)}


def _check_parameters(network: Any, data: bytes, path: Path) -> None:
    """Every parameter of ``network`` must be in the file, by name, with identical values."""
    stored = onnx_parameters(data)
    for name, parameter in network.named_parameters():
        value = stored.get(name)
        if value is None or not np.array_equal(value, parameter.detach().cpu().numpy()):
            raise OnfhError(f"{path}: parameter {name} did not survive the ONNX export unchanged")


def verify_export(network: Any, data: bytes, size_xyz: list[int], path: Path, seed: int = 0) -> float:
    """Largest probability difference between torch and ONNX Runtime on a random probe.

    Raises:
        OnfhError: the difference exceeds ``MAX_PROBABILITY_DIFFERENCE``.
    """
    import onnxruntime
    import torch

    probe = np.random.default_rng(seed).standard_normal((1, 1, *reversed(size_xyz))).astype(np.float32)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    onnx_out = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            torch_out = _probability_wrapper(network)(torch.from_numpy(probe)).numpy()
    finally:
        network.train(was_training)
    difference = float(np.abs(onnx_out - torch_out).max())
    if not difference <= MAX_PROBABILITY_DIFFERENCE:
        raise OnfhError(f"{path}: ONNX output differs from torch by {difference:.2e}; export refused")
    return difference


def export_onnx(model: Any, config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write ``localiser.onnx`` and ``segmenter.onnx`` into ``folder``; return ``model.json``'s ``onnx``.

    Each file is verified (parameters by name, outputs against torch) before its sha256
    is returned; ``model.json`` itself is the caller's to write.
    """
    import torch

    section: dict[str, Any] = {"opset": ONNX_OPSET, "exporter": f"torch {torch.__version__} (TorchScript)"}
    sizes = {"localiser": config["localiser"]["input_size"], "segmenter": config["segmenter"]["patch_size"]}
    for stage, name in ONNX_FILES.items():
        network = getattr(model, stage).cpu()
        path = Path(folder) / name
        export_network(network, sizes[stage], path)
        data = path.read_bytes()
        _check_parameters(network, data, path)
        verify_export(network, data, sizes[stage], path)
        section[stage] = {"file": name, "sha256": hashlib.sha256(data).hexdigest()}
    return section


def export_model_folder(path: str | Path, drop_torch_weights: bool = False) -> ModelFolder:
    """Add (or renew) the ONNX exports of an existing model folder, as ``onfh export`` does.

    Args:
        path: a model folder with ``model.pt``.
        drop_torch_weights: afterwards delete ``model.pt``: the ONNX files hold the same
            weights (checked), and the torch backend reads them from there. ``model.json``
            keeps ``sha256`` as the identity of the trained weights.

    Raises:
        OnfhError: no ``model.pt`` (ONNX-only folders are already exported), or a failed check.
    """
    from onfh.modelfolder import load_model

    folder = load_model_folder(path)
    if not folder.weights_path.is_file():
        raise OnfhError(f"{folder.path}: no model.pt to export from (the ONNX files are all it has)")
    model = load_model(folder, "cpu")
    config = dict(folder.config)
    config["onnx"] = export_onnx(model, config, folder.path)
    write_text_atomic(folder.path / MODEL_JSON, json.dumps(config, indent=2) + "\n")
    exported = load_model_folder(folder.path)
    if drop_torch_weights:
        rebuilt = model_from_onnx(exported)
        for (name, value), (_, original) in zip(rebuilt.state_dict().items(), model.state_dict().items()):
            if not np.array_equal(value.numpy(), original.numpy()):
                raise OnfhError(f"{folder.path}: {name} differs after the round trip; model.pt kept")
        folder.weights_path.unlink()
    return exported


def model_from_onnx(folder: ModelFolder):
    """The torch ``TwoStageModel`` with the weights of the folder's (checked) ONNX files.

    Parameters unused at inference (e.g. DynUNet's deep-supervision heads) are not in the
    files: they keep their initial values, and the error below says so when any other is
    missing.

    Raises:
        OnfhError: the ``onnx`` package is missing, a file fails its sha256, or weights do not fit.
    """
    import torch

    from onfh.network import build_model

    try:
        import onnx  # noqa: F401  (needed by onnx_parameters)
    except ImportError:
        raise OnfhError(
            f"{folder.path}: has ONNX weights only; the torch backend reads them with the 'onnx' "
            "package: pip install onnx (or use the default ONNX backend)"
        ) from None
    model = build_model(folder.config)
    for stage, name in ONNX_FILES.items():
        network = getattr(model, stage)
        stored = onnx_parameters(folder.onnx_bytes(stage))
        with torch.no_grad():
            for parameter_name, parameter in network.named_parameters():
                value = stored.get(parameter_name)
                if value is None:
                    if "deep_supervision" in parameter_name:
                        continue
                    raise OnfhError(f"{folder.path / name}: lacks parameter {parameter_name}")
                if tuple(value.shape) != tuple(parameter.shape):
                    raise OnfhError(
                        f"{folder.path / name}: {parameter_name} has shape {tuple(value.shape)}, "
                        f"the network in {MODEL_JSON} needs {tuple(parameter.shape)}"
                    )
                parameter.copy_(torch.from_numpy(value.copy()))
    return model.eval()
