"""Model folders: ``model.json`` + ONNX files and/or ``model.pt`` + ``EVALUATION.md``.

``model.json`` says everything inference needs (networks, spacings, sizes, intensity
normalisation, labels) and carries the ``sha256`` of ``model.pt`` (the weights' identity,
recorded in every report) and of each ONNX file (``localiser.onnx``, ``segmenter.onnx``).
Every file is checked against its sha256 before anything parses it, so a truncated
download or a swapped file is refused with one clear line instead of a traceback.

``onfh train`` writes both formats. A shipped folder may hold the ONNX files only: they
carry the same float32 weights, which the torch backend (and ``--init-from``) then reads
from them, so one copy of the weights ships and none of it is a pickle.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from onfh.errors import OnfhError
from onfh.imageio import write_atomic, write_text_atomic
from onfh.labels import LABEL_NAMES

MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.pt"
ONNX_FILES = {"localiser": "localiser.onnx", "segmenter": "segmenter.onnx"}
"""Fixed names: ``model.json`` may not point inference at any other path."""
EVALUATION_MD = "EVALUATION.md"
FORMAT_VERSION = 1
MODEL_DIR_ENV = "ONFH_MODEL_DIR"

_REQUIRED_KEYS = ("format", "id", "labels", "intensity", "localiser", "segmenter", "sha256")
# Every key model.json may hold, per section. A key outside these is refused, so a typo
# ("patchsize") is an error rather than a silently used default. ``training`` is
# provenance (free form); network sections are checked by ``network_kwargs``.
KNOWN_KEYS: dict[str | None, frozenset[str]] = {
    None: frozenset(
        {*_REQUIRED_KEYS, "version", "created", "description", "training", "onnx", "uncertainty"}
    ),
    "intensity": frozenset({"method", "lower_percentile", "upper_percentile", "foreground_threshold"}),
    "localiser": frozenset(
        {"network", "spacing_mm", "input_size", "min_field_of_view_mm", "min_head_volume_mm3", "max_heads"}
    ),
    "segmenter": frozenset({"network", "spacing_mm", "patch_size", "crop_margin_mm"}),
    # onfh.ensemble: the calibration factor of the ratio interval and how it was measured.
    "uncertainty": frozenset({"sd_scale", "calibration"}),
}


def unknown_keys_problem(config: dict[str, Any]) -> str | None:
    """The first key of ``config`` (top level or a known section) that no part of onfh reads."""
    import difflib

    for section, known in KNOWN_KEYS.items():
        content = config if section is None else config.get(section)
        if not isinstance(content, dict):
            continue
        for key in sorted(set(content) - known):
            where = f"{section}.{key}" if section else key
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
            return f"unknown key {where!r}{hint}"
    return None


@dataclass(frozen=True)
class ModelFolder:
    """A validated model folder (weights not yet loaded)."""

    path: Path
    config: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.config["id"])

    @property
    def sha256(self) -> str:
        return str(self.config["sha256"])

    @property
    def weights_path(self) -> Path:
        return self.path / MODEL_WEIGHTS

    @property
    def has_onnx(self) -> bool:
        """Whether ``model.json`` lists ONNX exports (their files were found when it was read)."""
        return "onnx" in self.config

    def onnx_bytes(self, stage: str) -> bytes:
        """The ONNX file of ``stage`` ("localiser" or "segmenter"), read once and checked.

        The digest is taken over the very bytes returned, which ONNX Runtime then parses:
        nothing can swap the file between the check and the load.

        Raises:
            OnfhError: the folder has no ONNX export, the file is missing or its sha256 differs.
        """
        if not self.has_onnx:
            raise OnfhError(
                f"{self.path}: no ONNX export in {MODEL_JSON}; run 'onfh export {self.path}' "
                "(needs torch) or segment with --backend torch"
            )
        path = self.path / ONNX_FILES[stage]
        try:
            data = path.read_bytes()
        except OSError as error:
            raise OnfhError(f"{path}: cannot read the ONNX file ({error.strerror or error})") from None
        expected = self.config["onnx"][stage]["sha256"]
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise OnfhError(
                f"{path}: sha256 {actual[:12]}... does not match {MODEL_JSON} ({expected[:12]}...); "
                "the file is corrupted or was replaced"
            )
        return data

    def info(self) -> dict[str, Any]:
        """What reports record about the model: id, version, sha256, folder."""
        return {
            "id": self.id,
            "version": self.config.get("version"),
            "sha256": self.sha256,
            "path": str(self.path),
        }


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _validate_onnx_section(section: Any, where: str) -> None:
    """``{"opset": 17, "localiser": {"file": "localiser.onnx", "sha256": ...}, "segmenter": {...}}``."""
    if not isinstance(section, dict):
        raise OnfhError(f"{where}: onnx must be an object")
    for stage, name in ONNX_FILES.items():
        entry = section.get(stage)
        if not isinstance(entry, dict) or entry.get("file") != name or not _is_sha256(entry.get("sha256")):
            raise OnfhError(
                f'{where}: onnx.{stage} must be {{"file": "{name}", "sha256": <64 hex digits>}}, '
                f"got {entry!r}"
            )


def _require_vector(value: Any, what: str, integer: bool) -> list:
    kinds = (int,) if integer else (int, float)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, kinds) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        kind = "positive integers" if integer else "positive numbers"
        raise OnfhError(f"{what} must be 3 {kind} [x, y, z], got {value!r}")
    return list(value)


def validate_config(config: Any, where: str = MODEL_JSON, require_sha256: bool = True) -> dict[str, Any]:
    """Check a ``model.json`` dictionary; return it unchanged or raise ``OnfhError``.

    Checks the keys inference reads, the label map, both network definitions (allow-listed
    DynUNet arguments only) and that the grid sizes fit the networks' down-sampling.
    """
    from onfh.network_config import network_kwargs, size_divisor

    if not isinstance(config, dict):
        raise OnfhError(f"{where}: expected a JSON object, got {type(config).__name__}")
    keys = [k for k in _REQUIRED_KEYS if k != "sha256" or require_sha256]
    missing = [k for k in keys if k not in config]
    if missing:
        raise OnfhError(f"{where}: missing keys {missing}")
    unknown = unknown_keys_problem(config)
    if unknown:
        raise OnfhError(f"{where}: {unknown}")
    if config["format"] != FORMAT_VERSION:
        raise OnfhError(
            f"{where}: unsupported format {config['format']!r} (this onfh reads {FORMAT_VERSION})"
        )
    if config["labels"] != LABEL_NAMES:
        raise OnfhError(f"{where}: labels must be {LABEL_NAMES}, got {config['labels']!r}")
    if not isinstance(config["intensity"], dict) or "method" not in config["intensity"]:
        raise OnfhError(f"{where}: intensity must be an object with a 'method'")
    if require_sha256:
        sha = config["sha256"]
        if not _is_sha256(sha):
            raise OnfhError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha!r}")
    stages = {"localiser": ("input_size", 2), "segmenter": ("patch_size", len(LABEL_NAMES))}
    for stage, (size_key, classes) in stages.items():
        section = config[stage]
        if not isinstance(section, dict):
            raise OnfhError(f"{where}: {stage} must be an object")
        for key in ("network", "spacing_mm", size_key):
            if key not in section:
                raise OnfhError(f"{where}: {stage} lacks {key!r}")
        try:
            kwargs = network_kwargs(section["network"])
        except OnfhError as error:
            raise OnfhError(f"{where}: {stage}: {error}") from None
        if kwargs["spatial_dims"] != 3 or kwargs["in_channels"] != 1 or kwargs["out_channels"] != classes:
            raise OnfhError(
                f"{where}: {stage} network must be 3D with 1 input channel and {classes} output classes"
            )
        _require_vector(section["spacing_mm"], f"{where}: {stage}.spacing_mm", integer=False)
        size = _require_vector(section[size_key], f"{where}: {stage}.{size_key}", integer=True)
        divisor = size_divisor(section["network"])
        if any(s % d for s, d in zip(size, divisor)):
            raise OnfhError(f"{where}: {stage}.{size_key} {size} must be multiples of {divisor}")
    margin = config["segmenter"].get("crop_margin_mm", 0)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin < 0:
        raise OnfhError(f"{where}: segmenter.crop_margin_mm must be a number >= 0, got {margin!r}")
    if "onnx" in config:
        _validate_onnx_section(config["onnx"], where)
    scale = (config.get("uncertainty") or {}).get("sd_scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < 1000:
        raise OnfhError(f"{where}: uncertainty.sd_scale must be a positive number, got {scale!r}")
    return config


def load_model_folder(path: str | os.PathLike) -> ModelFolder:
    """Read and validate a model folder (``model.json`` + ``model.pt``); weights are not loaded.

    Args:
        path: the folder, or its ``model.json``.

    Raises:
        OnfhError: missing folder or files, unreadable JSON, or an invalid configuration.
    """
    folder = Path(path)
    if folder.name == MODEL_JSON and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise OnfhError(f"{folder}: model folder not found")
    json_path = folder / MODEL_JSON
    if not json_path.is_file():
        raise OnfhError(f"{folder}: not a model folder (no {MODEL_JSON})")
    try:
        config = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OnfhError(f"{json_path}: not valid JSON ({error})") from None
    validate_config(config, str(json_path))
    if "onnx" in config:
        missing = [name for name in ONNX_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise OnfhError(f"{folder}: ONNX files {missing} listed in {MODEL_JSON} are missing")
    elif not (folder / MODEL_WEIGHTS).is_file():
        raise OnfhError(f"{folder}: model weights {MODEL_WEIGHTS} are missing (and no ONNX export is listed)")
    return ModelFolder(path=folder.resolve(), config=config)


def load_model(folder: ModelFolder, device: Any = "cpu"):
    """Verify the weights' sha256, load them safely and return the torch model in eval mode.

    Reads ``model.pt`` (``torch.load(..., weights_only=True)``) when the folder has it,
    else the same weights from the folder's checked ONNX files.

    Args:
        folder: a validated model folder.
        device: torch device (or its name) to put the model on.

    Raises:
        OnfhError: weights missing, checksum mismatch, unreadable or mismatched weights.
    """
    import torch

    from onfh.network import build_model

    weights = folder.weights_path
    if not weights.is_file() and folder.has_onnx:
        from onfh.onnx_export import model_from_onnx

        return model_from_onnx(folder).to(device).eval()
    if not weights.is_file():
        raise OnfhError(f"{weights}: model weights are missing")
    actual = file_sha256(weights)
    if actual != folder.sha256:
        raise OnfhError(
            f"{weights}: sha256 {actual[:12]}... does not match model.json ({folder.sha256[:12]}...); "
            "the weights are corrupted or were replaced"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad archive
        raise OnfhError(f"{weights}: weights could not be loaded ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise OnfhError(f"{weights}: expected a state dict, got {type(state).__name__}")
    model = build_model(folder.config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0][:200]
        raise OnfhError(f"{weights}: weights do not fit the networks in model.json ({first})") from None
    return model.to(device).eval()


def _state_on_cpu(state: dict) -> dict:
    """The state dict on the CPU, with tensors that share memory still sharing it.

    MONAI's DynUNet lists some modules twice (``skip_layers`` holds the encoder blocks),
    so its state dict names the same parameters under two keys. ``torch.save`` writes a
    shared storage once; a plain ``.cpu()`` of a CUDA state dict copies each key apart and
    doubles ``model.pt`` (48 MB instead of 24 MB after a GPU training).
    """
    import torch

    copies: dict[tuple, Any] = {}
    result = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            result[key] = value
            continue
        value = value.detach()
        if value.device.type != "cpu":
            alias = (
                value.device,
                value.untyped_storage().data_ptr(),
                value.storage_offset(),
                tuple(value.shape),
                tuple(value.stride()),
                value.dtype,
            )
            if alias not in copies:
                copies[alias] = value.cpu()
            value = copies[alias]
        result[key] = value
    return result


def save_model_folder(
    path: str | os.PathLike,
    model_or_state_dict: Any,
    config: dict[str, Any],
    evaluation_md: str | None = None,
    onnx: bool = True,
) -> ModelFolder:
    """Write ``model.pt``, the ONNX exports, ``model.json`` (with sha256s) and ``EVALUATION.md``.

    Every file is written under a temporary name and renamed, and ``model.json`` last,
    so an interrupted save never leaves weights that disagree with their checksum.

    Args:
        path: the model folder (created if needed).
        model_or_state_dict: a ``TwoStageModel`` or its state dict.
        config: the ``model.json`` content; ``sha256`` is filled in, ``format`` defaults to 1.
        evaluation_md: the model card text, if any.
        onnx: also export ``localiser.onnx`` and ``segmenter.onnx`` (checked against torch),
            which inference runs by default; ``False`` writes ``model.pt`` only (an
            ``onfh export`` later adds them).

    Returns:
        The saved folder, re-read and validated.
    """
    import torch

    folder = Path(path)
    state = (
        model_or_state_dict.state_dict()
        if hasattr(model_or_state_dict, "state_dict")
        else model_or_state_dict
    )
    if not isinstance(state, dict):
        raise TypeError(f"expected a model or a state dict, got {type(model_or_state_dict).__name__}")
    state = _state_on_cpu(state)
    content = dict(config)
    content.setdefault("format", FORMAT_VERSION)
    content.pop("sha256", None)
    content.pop("onnx", None)
    validate_config(content, f"{folder}/{MODEL_JSON}", require_sha256=False)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / MODEL_WEIGHTS
    write_atomic(weights, lambda tmp: torch.save(state, tmp))
    content["sha256"] = file_sha256(weights)
    if onnx and importlib.util.find_spec("onnx") is None:
        # Hours of training must not be lost to a missing exporter dependency: keep model.pt.
        warnings.warn(
            f"{folder}: the 'onnx' package is missing, so no ONNX files were written; "
            f"pip install onnx, then run 'onfh export {folder}'",
            stacklevel=2,
        )
        onnx = False
    if onnx:
        from onfh.network import build_model
        from onfh.onnx_export import export_onnx

        model = build_model(content)
        model.load_state_dict(state, strict=True)
        content["onnx"] = export_onnx(model, content, folder)
    write_text_atomic(folder / MODEL_JSON, json.dumps(content, indent=2) + "\n")
    if evaluation_md is not None:
        write_text_atomic(folder / EVALUATION_MD, evaluation_md)
    return load_model_folder(folder)


def default_config(
    model_id: str = "onfh-dynunet", segmenter_filters: Sequence[int] = (16, 32, 64, 128, 256)
) -> dict:
    """The shared design's example model.json (without ``sha256``/``training``).

    Localiser: 4-level DynUNet on the field of view at 4 mm, 64^3, 2 classes. Segmenter:
    the reference study's 5-level DynUNet (kernel 3, strides [1, 2, 2, 2, 2], 3 classes)
    on an 80^3 crop at 1 mm around the head. Tests and benchmarks start from it; what
    ``onfh train`` produces comes from ``onfh.training.recipe.model_config`` instead (the
    shipped model: 64^3 at 1.25 mm, filters 16-192), so that layer-0 inference does not
    depend on the training package.
    """
    return {
        "format": FORMAT_VERSION,
        "id": model_id,
        "version": "0.1.0",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": dict(LABEL_NAMES),
        "intensity": {
            "method": "robust_percentile",
            "lower_percentile": 0.5,
            "upper_percentile": 99.5,
            "foreground_threshold": 0.1,
        },
        "localiser": {
            "network": {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "kernel_size": [3, 3, 3, 3],
                "strides": [1, 2, 2, 2],
                "upsample_kernel_size": [2, 2, 2],
                "filters": [8, 16, 32, 64],
                "norm_name": ["instance", {"affine": True}],
                "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
            },
            "spacing_mm": [4.0, 4.0, 4.0],
            "input_size": [64, 64, 64],
        },
        "segmenter": {
            "network": {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": len(LABEL_NAMES),
                "kernel_size": [3, 3, 3, 3, 3],
                "strides": [1, 2, 2, 2, 2],
                "upsample_kernel_size": [2, 2, 2, 2],
                "filters": list(segmenter_filters),
                "norm_name": ["instance", {"affine": True}],
                "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
            },
            "spacing_mm": [1.0, 1.0, 1.0],
            "patch_size": [80, 80, 80],
            "crop_margin_mm": 8.0,
        },
    }


def _model_search_roots() -> list[Path]:
    """``model_weights/`` next to the package (editable install) or inside it (wheel)."""
    package = Path(__file__).resolve().parent
    return [package.parent / "model_weights", package / "model_weights"]


def default_model_dir() -> Path:
    """The model folder used when ``--model`` is not given.

    ``$ONFH_MODEL_DIR`` wins; otherwise the newest (by ``created``, then name) folder
    ``model_weights/*/model.json`` next to or inside the package.

    Raises:
        OnfhError: no model is installed, saying how to get one.
    """
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        folder = Path(env)
        if not (folder / MODEL_JSON).is_file():
            raise OnfhError(f"{MODEL_DIR_ENV}={env}: no {MODEL_JSON} there")
        return folder
    candidates = []
    for root in _model_search_roots():
        for json_path in sorted(root.glob(f"*/{MODEL_JSON}")):
            try:
                created = str(json.loads(json_path.read_text(encoding="utf-8")).get("created", ""))
            except (OSError, ValueError, AttributeError):
                created = ""
            candidates.append((created, json_path.parent.name, json_path.parent))
    if not candidates:
        roots = " or ".join(str(r) for r in _model_search_roots())
        raise OnfhError(
            f"no segmentation model is installed (looked in {roots}); pass --model DIR, "
            f"set {MODEL_DIR_ENV}, or train one with 'onfh synth' + 'onfh train'"
        )
    return max(candidates)[2]
