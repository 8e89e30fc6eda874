"""What ``onfh train`` does, start to end: folds, models, predictions, model folders.

``MODEL_DIR/crossval/fold_<k>/`` receives fold ``k``'s model folder, its log, learning
curve and ``predictions/<case>.nii.gz`` (validation cases, labels on each case's original
grid); ``MODEL_DIR/crossval/crossval.json`` records the dataset and split for
``onfh evaluate --crossval``; the final model (every case) is written to ``MODEL_DIR``.
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onfh.dataset import list_cases
from onfh.errors import OnfhError
from onfh.training import distributed
from onfh.training.folds import (
    CROSSVAL_DIR,
    read_crossval_json,
    split_folds,
    training_cases,
    write_crossval_json,
)
from onfh.training.recipe import TrainingRecipe, model_config

PREDICTIONS_DIR = "predictions"
PREDICTION_SUFFIX = ".nii.gz"
FINAL_STREAM = -1
# model.json keys that describe one trained model rather than the networks and grids.
_PER_MODEL_KEYS = ("id", "version", "created", "sha256", "training")


@dataclass(frozen=True)
class TrainingPlan:
    """The user's request, as ``onfh train`` parsed it."""

    dataset: str
    model_dir: str
    recipe: TrainingRecipe
    folds: int = 4
    fold: int | str | None = None
    device: str = "auto"
    init_from: str | None = None
    resume: bool = False
    threads: int | None = None
    workers: int | None = None
    model_id: str | None = None
    keep_checkpoints: bool = False


@dataclass(frozen=True)
class ModelRun:
    """One model to train: a fold (``stream`` = fold index) or the final model (-1)."""

    stream: int
    out_dir: Path
    train_ids: list[str]
    val_ids: list[str]
    title: str

    @property
    def is_fold(self) -> bool:
        return self.stream >= 0


def _say(context: distributed.DistributedContext, message: str) -> None:
    if context.is_main:
        print(message, file=sys.stderr, flush=True)


def _require_writable_model_dir(model_dir: Path, resume: bool) -> None:
    """Never overwrite a non-empty MODEL_DIR unless resuming."""
    if model_dir.exists() and not model_dir.is_dir():
        raise OnfhError(f"{model_dir}: exists and is not a folder")
    if model_dir.is_dir() and any(model_dir.iterdir()) and not resume:
        raise OnfhError(f"{model_dir}: folder exists and is not empty; choose a new -o or add --resume")


def _base_config(plan: TrainingPlan) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The configuration to train, the initial weights and the parent model's identity."""
    from onfh.modelfolder import load_model, load_model_folder, validate_config
    from onfh.network import build_model

    if not plan.init_from:
        config = model_config(plan.recipe)
        validate_config({**config, "id": "recipe"}, "training recipe", require_sha256=False)
        build_model(config)  # refuse an impossible network before any file is written
        return config, None, None

    folder = load_model_folder(plan.init_from)
    config = {k: copy.deepcopy(v) for k, v in folder.config.items() if k not in _PER_MODEL_KEYS}
    if "calibration" in config.get("uncertainty", {}):
        # The parent's interval factor is a fair start, but it was measured for the parent:
        # say so, so that nobody reads it as this model's calibration.
        config["uncertainty"]["calibration"] = (
            f"inherited from {folder.id}, not measured for this model (re-fit it on held-out "
            f"cases: onfh evaluate's 'Ratio 90 % interval' row); the parent's: "
            + config["uncertainty"]["calibration"]
        )
    state = load_model(folder, "cpu").state_dict()
    return config, state, folder.info()


def _split(plan: TrainingPlan, case_ids: list[str], model_dir: Path) -> list[list[str]] | None:
    """The cross-validation split (None when only the final model is trained)."""
    if plan.fold == "all":
        return None
    split = split_folds(case_ids, plan.folds, plan.recipe.seed)
    crossval_json = model_dir / CROSSVAL_DIR / "crossval.json"
    if plan.resume and crossval_json.is_file():
        dataset, previous = read_crossval_json(model_dir)
        if previous != split or Path(dataset) != Path(plan.dataset).resolve():
            raise OnfhError(
                f"{crossval_json}: the dataset or split differs from this run's (cases added or "
                "removed, other --folds or --seed); train into a new MODEL_DIR"
            )
    if isinstance(plan.fold, int) and plan.fold >= plan.folds:
        raise OnfhError(
            f"--fold {plan.fold} does not exist with --folds {plan.folds} (folds are 0..{plan.folds - 1})"
        )
    return split


def plan_runs(plan: TrainingPlan, case_ids: list[str], split: list[list[str]] | None) -> list[ModelRun]:
    """The models this invocation trains, in order."""
    model_dir = Path(plan.model_dir)
    runs = []
    if split is not None:
        folds = range(len(split)) if plan.fold is None else [int(plan.fold)]
        for k in folds:
            runs.append(
                ModelRun(
                    stream=k,
                    out_dir=model_dir / CROSSVAL_DIR / f"fold_{k}",
                    train_ids=training_cases(split, k),
                    val_ids=list(split[k]),
                    title=f"fold {k} (of 0-{len(split) - 1}) ",
                )
            )
    if plan.fold is None or plan.fold == "all":
        runs.append(ModelRun(FINAL_STREAM, model_dir, sorted(case_ids), [], "final "))
    return runs


def _is_finished(run: ModelRun) -> bool:
    from onfh.modelfolder import MODEL_JSON
    from onfh.training.loop import CHECKPOINT

    if not (run.out_dir / MODEL_JSON).is_file() or (run.out_dir / CHECKPOINT).is_file():
        return False
    predictions = run.out_dir / PREDICTIONS_DIR
    return all((predictions / f"{case}{PREDICTION_SUFFIX}").is_file() for case in run.val_ids)


def _provenance(
    plan: TrainingPlan,
    run: ModelRun,
    result,
    device,
    context: distributed.DistributedContext,
    parent: dict[str, Any] | None,
) -> dict[str, Any]:
    import monai
    import torch

    from onfh import __version__
    from onfh.devices import describe_device

    return {
        "dataset": Path(plan.dataset).resolve().name,  # its name: no path of the training machine
        "cases": list(run.train_ids),
        "validation_cases": list(run.val_ids),
        "fold": run.stream if run.is_fold else "all",
        "folds": plan.folds if run.is_fold else None,
        "seed": plan.recipe.seed,
        "iterations": result.iterations,
        "recipe": plan.recipe.to_dict(),
        "validation": {k: (v if math.isfinite(v) else None) for k, v in result.validation.items()},
        "seconds": round(result.seconds, 1),
        "command": _command_line(),
        "init_from": parent,
        "device": describe_device(device),
        "processes": context.world_size,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "onfh": __version__,
        "python": platform.python_version(),
    }


def _command_line() -> str | None:
    """The ``onfh ...`` command that is running (``None`` when called from Python).

    Paths are reduced to their last part (``/home/me/data/synth48`` -> ``synth48``): a
    shipped ``model.json`` must not carry the folders of the machine it was trained on.
    """
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program in ("onfh", "__main__.py"):
        return shlex.join(["onfh", *(portable_argument(a) for a in sys.argv[1:])])
    return None


def portable_argument(argument: str) -> str:
    """A command-line argument without the folders of a path (options and values kept)."""
    if argument.startswith("-") or ("/" not in argument and os.sep not in argument):
        return argument
    return Path(argument.rstrip("/" + os.sep)).name or argument


def _write_predictions(model, config: dict[str, Any], run: ModelRun, cases_by_id, device) -> None:
    """Segment each validation case exactly as ``onfh segment`` would, on its original grid.

    A case where the model finds no femoral head gets an all-background label file, so it
    counts as a failure in ``onfh evaluate`` instead of silently dropping out.
    """
    import SimpleITK as sitk

    from onfh.imageio import write_image_atomic
    from onfh.inference import Segmenter
    from onfh.training.data import read_case

    folder = run.out_dir / PREDICTIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(model.eval(), config, device)
    for case_id in run.val_ids:
        image, _ = read_case(cases_by_id[case_id])
        try:
            label = segmenter.segment(image).label
        except OnfhError as error:
            print(f"{run.title}{case_id}: {error}; writing an empty prediction", file=sys.stderr)
            label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
            label.CopyInformation(image)
        write_image_atomic(sitk.Cast(label, sitk.sitkUInt8), folder / f"{case_id}{PREDICTION_SUFFIX}")


def _train_one(
    plan: TrainingPlan,
    run: ModelRun,
    config: dict[str, Any],
    init_state: dict[str, Any] | None,
    parent: dict[str, Any] | None,
    prepared,
    cases_by_id,
    device,
    context: distributed.DistributedContext,
    workers: int,
) -> None:
    import torch

    from onfh.modelfolder import save_model_folder
    from onfh.network import build_model
    from onfh.training.loop import CHECKPOINT, describe_validation, train

    if plan.resume and _is_finished(run):
        _say(context, f"{run.title}already finished: {run.out_dir}")
        return
    torch.manual_seed(plan.recipe.seed * 1000 + run.stream + 1)
    model = build_model(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    result = train(
        model,
        [prepared[c] for c in run.train_ids],
        [prepared[c] for c in run.val_ids],
        config,
        plan.recipe,
        run.out_dir,
        device=device,
        context=context,
        stream=run.stream,
        resume=plan.resume,
        title=run.title,
        workers=workers,
        say=lambda message: _say(context, message),
    )
    if context.is_main:
        if run.val_ids:
            _write_predictions(result.model, config, run, cases_by_id, device)
        base_id = plan.model_id or Path(plan.model_dir).resolve().name
        content = dict(config)
        content["id"] = f"{base_id}-fold{run.stream}" if run.is_fold else base_id
        content["version"] = "1"
        content["created"] = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        content["training"] = _provenance(plan, run, result, device, context, parent)
        save_model_folder(run.out_dir, result.model, content)
        if not plan.keep_checkpoints:
            (run.out_dir / CHECKPOINT).unlink(missing_ok=True)
        _say(
            context,
            f"{run.title}done in {result.seconds / 60:.1f} min: {describe_validation(result.validation)}",
        )
        _say(context, f"{run.title}model folder: {run.out_dir}")
    distributed.barrier(context)


def _device_and_threads(plan: TrainingPlan, context: distributed.DistributedContext):
    import torch

    from onfh.devices import available_cpu_count, configure_cpu_threads, resolve_device

    device = resolve_device(plan.device)
    if device.type == "cuda" and context.is_distributed:
        if context.local_rank >= torch.cuda.device_count():
            raise OnfhError(
                f"rank {context.rank} needs GPU {context.local_rank}; {torch.cuda.device_count()} visible"
            )
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    threads = plan.threads
    if threads is None and context.is_distributed and device.type == "cpu":
        threads = max(1, available_cpu_count() // context.world_size)
    configure_cpu_threads(threads if device.type == "cpu" else (threads or min(4, available_cpu_count())))
    workers = plan.workers
    if workers is None:
        workers = (
            0 if device.type == "cpu" else min(4, max(0, available_cpu_count() // context.world_size - 1))
        )
    if workers < 0:
        raise OnfhError(f"--workers must be >= 0, got {workers}")
    return device, workers


def run_training(plan: TrainingPlan) -> None:
    """Train what ``plan`` asks for; see the module docstring for the outputs.

    Raises:
        OnfhError: bad dataset, existing MODEL_DIR without ``--resume``, bad ``--fold``,
            unusable ``--init-from`` model or device.
    """
    context = distributed.context_from_environment()
    model_dir = Path(plan.model_dir)
    dataset = Path(plan.dataset)
    cases = list_cases(dataset)
    _require_writable_model_dir(model_dir, plan.resume)
    case_ids = [c.case_id for c in cases]
    split = _split(plan, case_ids, model_dir)
    runs = plan_runs(plan, case_ids, split)
    config, init_state, parent = _base_config(plan)
    device, workers = _device_and_threads(plan, context)
    distributed.initialise(context, device.type)
    try:
        # Every rank has checked MODEL_DIR before any rank writes to it.
        distributed.barrier(context)
        if context.is_main:
            model_dir.mkdir(parents=True, exist_ok=True)
            if split is not None:
                write_crossval_json(model_dir, dataset, split)
        _train_runs(plan, runs, config, init_state, parent, cases, device, context, workers)
    finally:
        distributed.shutdown(context)


def _train_runs(plan, runs, config, init_state, parent, cases, device, context, workers) -> None:
    from onfh.devices import describe_device
    from onfh.training.augment import AugmentationSettings
    from onfh.training.data import prepare_cases, region_size

    pending = [run for run in runs if not (plan.resume and _is_finished(run))]
    needed = sorted({c for run in pending for c in run.train_ids + run.val_ids})
    cases_by_id = {c.case_id: c for c in cases}
    settings = AugmentationSettings() if plan.recipe.augment else AugmentationSettings.none()
    segmenter = config["segmenter"]
    jitter_voxels = plan.recipe.jitter_mm / min(segmenter["spacing_mm"])
    region = region_size(max(segmenter["patch_size"]), jitter_voxels, settings.rotate_deg, settings.scale)
    if context.is_main:
        _say(
            context, f"training on {describe_device(device)} x {context.world_size}; {environment_summary()}"
        )
    prepared = prepare_cases([cases_by_id[c] for c in needed], config, region, processes=workers)
    megabytes = sum(case.nbytes for case in prepared.values()) / 1e6
    _say(context, f"prepared {len(prepared)} cases ({megabytes:.0f} MB cached, segmenter region {region}^3)")
    for run in runs:
        _train_one(plan, run, config, init_state, parent, prepared, cases_by_id, device, context, workers)


def environment_summary() -> str:
    """``torch 2.x, monai 1.x, python 3.x, N CPUs`` for the log."""
    import monai
    import torch

    return (
        f"torch {torch.__version__}, monai {monai.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
