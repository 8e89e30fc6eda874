"""The training loop: both stages, each with its own optimiser.

Every iteration draws a fresh augmented batch for the segmenter (head-centred crops with
jitter) and, every ``localiser_every`` iterations, for the localiser (the coarse field of
view), takes one Dice + cross-entropy step for each, and follows a poly learning-rate
schedule. Batches are a pure function of
``(seed, stream, rank, iteration)``, so a run resumed from a checkpoint repeats exactly
what the interrupted run would have done, whatever the number of loader workers.

Only rank 0 validates, logs, draws the curve and writes checkpoints; DDP keeps the
ranks' weights identical.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onfh.errors import OnfhError
from onfh.training import distributed
from onfh.training.augment import AugmentationSettings, PatchAugmenter
from onfh.training.data import PreparedCase
from onfh.training.field_of_view import random_field_of_view
from onfh.training.history import CURVE_PNG, LOG_CSV, ProgressBar, TrainingLog, plot_learning_curve
from onfh.training.recipe import TrainingRecipe

CHECKPOINT = "checkpoint.pt"
POLY_EXPONENT = 0.9
LOCALISER_JITTER_MM = 24.0
RANDOM_FIELD_OF_VIEW_PROBABILITY = 0.5


def zyx(size_xyz: list[int] | tuple[int, ...]) -> list[int]:
    """model.json sizes are ``[x, y, z]``; arrays are ``[z, y, x]``."""
    return [int(s) for s in reversed(list(size_xyz))]


def augmentation_settings(recipe: TrainingRecipe) -> AugmentationSettings:
    """The segmenter's augmentation: the defaults, or none at all."""
    return AugmentationSettings() if recipe.augment else AugmentationSettings.none()


def localiser_settings(recipe: TrainingRecipe) -> AugmentationSettings:
    """The localiser's augmentation: pose, laterality and intensity, no elastic warp."""
    if not recipe.augment:
        return AugmentationSettings.none()
    return AugmentationSettings(rotate_deg=15.0, scale=0.2, elastic_probability=0.0)


class BatchSource:
    """Item ``i`` is the batch of iteration ``i`` for this rank (a map-style dataset).

    Args:
        cases: prepared training cases.
        config: the model configuration (grid sizes and intensity normalisation).
        recipe: batch sizes, jitter, augmentation switch, seed.
        stream: separates the random streams of folds (the fold index; -1 for the final model).
        rank: this process's rank (each rank draws different batches).
    """

    def __init__(
        self,
        cases: list[PreparedCase],
        config: dict[str, Any],
        recipe: TrainingRecipe,
        stream: int,
        rank: int,
    ) -> None:
        from onfh.preprocessing import normalise_intensity

        if not cases:
            raise OnfhError("no training cases")
        self.cases = cases
        self.recipe = recipe
        self.stream = stream
        self.rank = rank
        intensity = dict(config["intensity"])

        def normalise(array: np.ndarray) -> np.ndarray:
            return normalise_intensity(array, intensity)

        segmenter = config["segmenter"]
        localiser = config["localiser"]
        jitter_seg = [recipe.jitter_mm / s for s in reversed(segmenter["spacing_mm"])]
        jitter_loc = [LOCALISER_JITTER_MM / s for s in reversed(localiser["spacing_mm"])]
        contrast = recipe.random_contrast if recipe.augment else 0.0
        self.localiser_spacing_zyx_mm = [float(s) for s in reversed(localiser["spacing_mm"])]
        self.segmenter_augmenter = PatchAugmenter(
            zyx(segmenter["patch_size"]), jitter_seg, augmentation_settings(recipe), normalise, contrast
        )
        self.localiser_augmenter = PatchAugmenter(
            zyx(localiser["input_size"]),
            jitter_loc if recipe.augment else [0.0, 0.0, 0.0],
            localiser_settings(recipe),
            normalise,
            contrast,
        )

    def __len__(self) -> int:
        return self.recipe.iterations

    def __getitem__(self, iteration: int) -> dict[str, Any]:
        import torch

        rng = np.random.default_rng([self.recipe.seed, self.stream + 1, self.rank, int(iteration)])
        images, labels = [], []
        for index in rng.integers(len(self.cases), size=self.recipe.batch_size):
            heads = self.cases[int(index)].heads
            head = heads[int(rng.integers(len(heads)))]
            seed = int(rng.integers(2**31))
            image, label = self.segmenter_augmenter(head.image, head.label, head.inside, seed, head.tissues)
            images.append(image)
            labels.append(label)
        localiser_image = localiser_label = None
        if iteration % self.recipe.localiser_every == 0:
            loc_images, loc_labels = [], []
            for index in rng.integers(len(self.cases), size=self.recipe.localiser_batch_size):
                case = self.cases[int(index)]
                seed = int(rng.integers(2**31))
                inside = case.localiser_inside
                if self.recipe.augment and rng.random() < RANDOM_FIELD_OF_VIEW_PROBABILITY:
                    inside = random_field_of_view(
                        inside, case.localiser_label, self.localiser_spacing_zyx_mm, rng
                    )
                image, label = self.localiser_augmenter(
                    case.localiser_image, case.localiser_label, inside, seed, case.localiser_tissues
                )
                loc_images.append(image)
                loc_labels.append(label)
            localiser_image = torch.from_numpy(np.stack(loc_images))
            localiser_label = torch.from_numpy(np.stack(loc_labels).astype(np.int64))
        return {
            "iteration": int(iteration),
            "segmenter_image": torch.from_numpy(np.stack(images)),
            "segmenter_label": torch.from_numpy(np.stack(labels).astype(np.int64)),
            "localiser_image": localiser_image,  # None: the localiser skips this iteration
            "localiser_label": localiser_label,
        }


def poly_learning_rate(base: float, iteration: int, total: int, warmup: int) -> float:
    """Linear warm-up for ``warmup`` iterations, then ``base * (1 - t / T) ** 0.9``."""
    if warmup > 0 and iteration < warmup:
        return base * (iteration + 1) / warmup
    return base * max(0.0, 1.0 - iteration / max(total, 1)) ** POLY_EXPONENT


def make_optimiser(parameters, recipe: TrainingRecipe):
    """AdamW (default: fast convergence in short runs) or SGD with Nesterov momentum (nnU-Net)."""
    import torch

    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=recipe.learning_rate,
            momentum=0.99,
            nesterov=True,
            weight_decay=recipe.weight_decay,
        )
    return torch.optim.AdamW(parameters, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)


def make_loss():
    """Dice + cross-entropy; Dice over the whole batch and without background (nnU-Net style)."""
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


def _autocast(device):
    import contextlib

    import torch

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def train_step(network, optimiser, loss_function, images, labels, scaler=None) -> float:
    """One optimiser step; returns the loss value."""
    network.train()
    optimiser.zero_grad(set_to_none=True)
    with _autocast(images.device):
        logits = network(images)
    loss = loss_function(logits.float(), labels)
    if not bool(loss.isfinite()):
        raise FloatingPointError(f"training loss became {loss.item()}; lower --learning-rate")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
    else:
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def predict_crop(network, image: np.ndarray, patch_zyx: list[int], device) -> np.ndarray:
    """Label map ``[z, y, x]`` of a ``[1, z, y, x]`` input; sliding window if larger than the patch."""
    import torch
    from monai.inferers import sliding_window_inference

    tensor = torch.from_numpy(np.ascontiguousarray(image[np.newaxis])).to(device)
    with torch.no_grad(), _autocast(device):
        if list(tensor.shape[2:]) == list(patch_zyx):
            logits = network(tensor)
        else:
            logits = sliding_window_inference(tensor, patch_zyx, 1, network, overlap=0.25, mode="gaussian")
    return logits.float().argmax(dim=1)[0].cpu().numpy().astype(np.uint8)


def localisation_error_mm(predicted: np.ndarray, truth: np.ndarray, spacing_zyx_mm: list[float]) -> float:
    """Distance (mm) from the centroid of the largest predicted head to the nearest true head.

    This is what the localiser is for: the segmenter crop is centred on that centroid.
    ``inf`` when the localiser finds nothing.
    """
    import SimpleITK as sitk

    from onfh.inference import largest_component

    head = largest_component(predicted)
    if not head.any():
        return math.inf
    centre = np.argwhere(head).mean(axis=0) * np.asarray(spacing_zyx_mm)
    # A copy, not a view: the component image is a temporary.
    components = sitk.GetArrayFromImage(
        sitk.ConnectedComponent(sitk.GetImageFromArray(truth.astype(np.uint8)))
    )
    distances = [
        float(
            np.linalg.norm(
                np.argwhere(components == value).mean(axis=0) * np.asarray(spacing_zyx_mm) - centre
            )
        )
        for value in range(1, int(components.max()) + 1)
    ]
    return min(distances) if distances else math.inf


def validate(model, cases: list[PreparedCase], config: dict[str, Any], device) -> dict[str, float]:
    """Validation figures: mean Dice of the head (labels 1 and 2) and necrosis (2) on the
    inference crop at the true head centre, and the localiser's median centre error (mm)."""
    from onfh.metrics import dice

    model.eval()
    patch = zyx(config["segmenter"]["patch_size"])
    size = zyx(config["localiser"]["input_size"])
    spacing = [float(s) for s in reversed(config["localiser"]["spacing_mm"])]
    head, necrosis, errors = [], [], []
    for case in cases:
        for region in case.heads:
            predicted = predict_crop(model.segmenter, region.crop_image, patch, device)
            truth = region.crop_label[0]
            head.append(dice(predicted > 0, truth > 0))
            necrosis.append(dice(predicted == 2, truth == 2))
        coarse = predict_crop(model.localiser, case.localiser_image, size, device)
        errors.append(localisation_error_mm(coarse > 0, case.localiser_label[0] > 0, spacing))
    return {
        "head": float(np.mean(head)),
        "necrosis": float(np.mean(necrosis)),
        "localiser_error_mm": float(np.median(errors)),
    }


def save_checkpoint(
    path: Path, iteration: int, model, optimisers: dict, config: dict, recipe: TrainingRecipe
) -> None:
    """Write everything a resumed run needs, atomically (temporary name, then rename)."""
    import torch

    state = {
        "iteration": int(iteration),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimisers": {name: opt.state_dict() for name, opt in optimisers.items()},
        "config_json": json.dumps(config, sort_keys=True),
        "recipe_json": json.dumps(recipe.to_dict(), sort_keys=True),
    }
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged archive
        raise OnfhError(f"{path}: checkpoint could not be read ({type(error).__name__}: {error})") from None


@dataclass
class TrainingResult:
    """What a finished stage of training hands back."""

    model: Any
    iterations: int
    validation: dict[str, float]
    seconds: float


def train(
    model,
    train_cases: list[PreparedCase],
    val_cases: list[PreparedCase],
    config: dict[str, Any],
    recipe: TrainingRecipe,
    out_dir: Path,
    *,
    device,
    context: distributed.DistributedContext,
    stream: int,
    resume: bool,
    title: str = "",
    workers: int = 0,
    say: Callable[[str], None] = print,
    until: int | None = None,
) -> TrainingResult:
    """Train ``model`` (a ``TwoStageModel``) in place and return it with its last validation.

    Args:
        model: the two-stage model (fresh or initialised from a model folder).
        train_cases, val_cases: prepared cases (``val_cases`` may be empty).
        config: the model configuration being trained.
        recipe: iterations, batch sizes, optimiser, schedule, intervals, seed.
        out_dir: where rank 0 writes ``checkpoint.pt``, the CSV log and the PNG curve.
        device: torch device of this process.
        context: the DDP context.
        stream: random stream (fold index, -1 for the final model).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        title: progress-bar prefix, e.g. ``"fold 1/4 "``.
        workers: DataLoader worker processes preparing batches (0: in this process).
        say: where rank 0's messages go.
        until: stop after this iteration with a checkpoint (a time-sliced run, e.g. a
            cluster job with a wall-time limit); ``--resume`` continues it. ``None``: train
            to ``recipe.iterations``.
    """
    import torch

    started = time.monotonic()
    model.to(device)
    optimisers = {
        "localiser": make_optimiser(model.localiser.parameters(), recipe),
        "segmenter": make_optimiser(model.segmenter.parameters(), recipe),
    }
    checkpoint_path = out_dir / CHECKPOINT
    start = 0
    if resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        if state.get("config_json") != json.dumps(config, sort_keys=True):
            raise OnfhError(f"{checkpoint_path}: checkpoint was trained with another model configuration")
        model.load_state_dict(state["model"])
        for name, optimiser in optimisers.items():
            optimiser.load_state_dict(state["optimisers"][name])
        start = int(state["iteration"])
        if context.is_main:
            say(f"{title}resuming from iteration {start} ({checkpoint_path})")
    total = recipe.iterations
    if start > total:
        raise OnfhError(f"{checkpoint_path}: checkpoint is at iteration {start}, beyond --iterations {total}")

    networks = {
        "localiser": distributed.wrap(model.localiser, context, device),
        "segmenter": distributed.wrap(model.segmenter, context, device),
    }
    loss_function = make_loss()
    scaler = None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    warmup = min(50, total // 10)
    log = TrainingLog(out_dir / LOG_CSV, start_iteration=start) if context.is_main else None
    bar = ProgressBar(total, prefix=title, start=start) if context.is_main else None
    source = BatchSource(train_cases, config, recipe, stream, context.rank)
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=None,
        sampler=range(start, total if until is None else max(start, min(until, total))),
        num_workers=workers,
        worker_init_fn=_single_threaded_worker if workers else None,
        persistent_workers=False,
    )
    latest: dict[str, float] = {}
    loss_value = None
    done = start
    for batch in loader:
        iteration = batch["iteration"]
        learning_rate = poly_learning_rate(recipe.learning_rate, iteration, total, warmup)
        for optimiser in optimisers.values():
            for group in optimiser.param_groups:
                group["lr"] = learning_rate
        loss_value = train_step(
            networks["segmenter"],
            optimisers["segmenter"],
            loss_function,
            batch["segmenter_image"].to(device, non_blocking=True),
            batch["segmenter_label"].to(device, non_blocking=True),
            scaler,
        )
        localiser_loss = None
        if batch["localiser_image"] is not None:
            localiser_loss = train_step(
                networks["localiser"],
                optimisers["localiser"],
                loss_function,
                batch["localiser_image"].to(device, non_blocking=True),
                batch["localiser_label"].to(device, non_blocking=True),
                scaler,
            )
        done = iteration + 1
        validation = None
        if context.is_main:
            if val_cases and (done % recipe.validate_every == 0 or done == total):
                validation = validate(model, val_cases, config, device)
                latest = validation
            log.append(
                iteration=done,
                seconds=round(time.monotonic() - started, 2),
                learning_rate=learning_rate,
                loss_segmenter=loss_value,
                loss_localiser=localiser_loss,
                val_dice_head=None if validation is None else validation["head"],
                val_dice_necrosis=None if validation is None else validation["necrosis"],
                val_localiser_error_mm=None if validation is None else validation["localiser_error_mm"],
            )
            shown = {"head": latest["head"], "necrosis": latest["necrosis"]} if latest else None
            bar.update(done, loss_value, shown, force=validation is not None)
            if done % recipe.checkpoint_every == 0 or done in (total, until):
                save_checkpoint(checkpoint_path, done, model, optimisers, config, recipe)
                plot_learning_curve(out_dir / LOG_CSV, out_dir / CURVE_PNG, title=title.strip())
    if context.is_main and start == total and val_cases:
        latest = validate(model, val_cases, config, device)
    if context.is_main and not (out_dir / CURVE_PNG).is_file() and (out_dir / LOG_CSV).is_file():
        plot_learning_curve(out_dir / LOG_CSV, out_dir / CURVE_PNG, title=title.strip())
    model.eval()
    return TrainingResult(model=model, iterations=done, validation=latest, seconds=time.monotonic() - started)


def _single_threaded_worker(_worker_id: int) -> None:
    """Loader workers prepare batches with one thread each; the main process trains."""
    import torch

    torch.set_num_threads(1)


def describe_validation(validation: dict[str, float]) -> str:
    """``Dice head 0.951, necrosis 0.883; localiser error 2.1 mm`` (or ``no validation cases``)."""
    if not validation:
        return "no validation cases"
    return (
        f"Dice head {validation['head']:.3f}, necrosis {validation['necrosis']:.3f}; "
        f"localiser centre error {validation['localiser_error_mm']:.1f} mm (median)"
    )
