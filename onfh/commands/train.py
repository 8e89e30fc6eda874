"""``onfh train``: train the two-stage DynUNet, with k-fold cross-validation and fine-tuning.

Defaults are the recipe of the shipped model; the size options exist so tests and small
machines can train tiny models. The work itself is in ``onfh.training.trainer``.
"""

from __future__ import annotations

import argparse

from onfh.devices import DEVICE_CHOICES
from onfh.training.recipe import TrainingRecipe

_DEFAULTS = TrainingRecipe()
_DESCRIPTION = (
    "Train the two-stage DynUNet (coarse localiser + fine segmenter) on a dataset folder. "
    "Without --fold, every cross-validation fold is trained (validation predictions kept in "
    "MODEL_DIR/crossval/ for 'onfh evaluate --crossval MODEL_DIR') and then the final model on "
    "every case into MODEL_DIR; --fold K trains one fold, --fold all only the final model. "
    "Multi-GPU: torchrun --nproc_per_node G -m onfh train ..."
)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _fold(text: str) -> str | int:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fold number or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"fold numbers start at 0, got {value}")
    return value


def register(subparsers) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train the DynUNet (k-fold cross-validation, final model, fine-tuning)",
        description=_DESCRIPTION,
    )
    parser.add_argument(
        "dataset", help="dataset folder (imagesTr/, labelsTr/, dataset.json), e.g. from 'onfh synth'"
    )
    parser.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model folder to create")
    parser.add_argument(
        "--folds", type=int, default=4, help="number of cross-validation folds (default %(default)s)"
    )
    parser.add_argument(
        "--fold",
        type=_fold,
        default=None,
        metavar="K|all",
        help="train only fold K (0-based) or only the final model on every case ('all'); "
        "default: every fold, then the final model",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=_DEFAULTS.iterations,
        help="optimiser steps per model (default %(default)s)",
    )
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto", help="where to train (default %(default)s)"
    )
    parser.add_argument(
        "--init-from", metavar="MODEL_DIR", help="fine-tune: start from this model folder's weights"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue in an existing MODEL_DIR: finished models are kept, interrupted ones resume "
        "from their last checkpoint",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_DEFAULTS.seed,
        help="seed of folds, sampling and augmentation (default %(default)s)",
    )
    recipe = parser.add_argument_group("recipe (ignored for network shape and grids with --init-from)")
    recipe.add_argument(
        "--batch-size",
        type=int,
        default=_DEFAULTS.batch_size,
        help="segmenter patches per step (default %(default)s)",
    )
    recipe.add_argument(
        "--patch-size",
        type=int,
        default=_DEFAULTS.patch_size,
        help="segmenter crop edge (voxels) (default %(default)s)",
    )
    recipe.add_argument(
        "--spacing-mm",
        type=float,
        default=_DEFAULTS.segmenter_spacing_mm,
        help="segmenter target spacing (mm) (default %(default)s)",
    )
    recipe.add_argument(
        "--filters",
        type=_int_list,
        default=_DEFAULTS.filters,
        help="segmenter filters per level, e.g. 16,32,64 (default %(default)s)",
    )
    recipe.add_argument(
        "--localiser-size",
        type=int,
        default=_DEFAULTS.localiser_size,
        help="localiser input edge (voxels) (default %(default)s)",
    )
    recipe.add_argument(
        "--localiser-spacing-mm",
        type=float,
        default=_DEFAULTS.localiser_spacing_mm,
        help="localiser grid spacing (mm) (default %(default)s)",
    )
    recipe.add_argument(
        "--localiser-filters",
        type=_int_list,
        default=_DEFAULTS.localiser_filters,
        help="localiser filters per level (default %(default)s)",
    )
    recipe.add_argument(
        "--localiser-batch-size",
        type=int,
        default=_DEFAULTS.localiser_batch_size,
        help="localiser inputs per step (default %(default)s)",
    )
    recipe.add_argument(
        "--localiser-every",
        type=int,
        default=_DEFAULTS.localiser_every,
        help="the localiser takes a step every this many iterations (default %(default)s)",
    )
    recipe.add_argument(
        "--jitter-mm",
        type=float,
        default=_DEFAULTS.jitter_mm,
        help="maximum crop-centre offset in training (mm) (default %(default)s)",
    )
    recipe.add_argument(
        "--optimizer", choices=("adamw", "sgd"), default=_DEFAULTS.optimizer, help="(default %(default)s)"
    )
    recipe.add_argument(
        "--learning-rate",
        type=float,
        default=_DEFAULTS.learning_rate,
        help="initial learning rate (default %(default)s)",
    )
    recipe.add_argument(
        "--weight-decay", type=float, default=_DEFAULTS.weight_decay, help="(default %(default)s)"
    )
    recipe.add_argument(
        "--validate-every",
        type=int,
        default=_DEFAULTS.validate_every,
        help="iterations between validations (default %(default)s)",
    )
    recipe.add_argument(
        "--checkpoint-every",
        type=int,
        default=_DEFAULTS.checkpoint_every,
        help="iterations between checkpoints (default %(default)s)",
    )
    recipe.add_argument("--no-augment", action="store_true", help="turn off augmentation (crop jitter only)")
    recipe.add_argument(
        "--random-contrast",
        type=float,
        default=_DEFAULTS.random_contrast,
        metavar="P",
        help="share of patches rendered from the dataset's tissue maps (tissuesTr/) with random "
        "contrast instead of taken from the images; 1: only such images (default %(default)s)",
    )
    machine = parser.add_argument_group("machine")
    machine.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: the cores available)"
    )
    machine.add_argument(
        "--workers", type=int, default=None, help="batch-preparing processes (default: 0 on CPU, 4 on a GPU)"
    )
    machine.add_argument(
        "--model-id", default=None, help="model id in model.json (default: MODEL_DIR's name)"
    )
    machine.add_argument(
        "--keep-checkpoints", action="store_true", help="keep checkpoint.pt next to each finished model"
    )
    parser.set_defaults(func=run)


def recipe_from_args(args: argparse.Namespace) -> TrainingRecipe:
    """The training recipe the command-line options describe (validated)."""
    return TrainingRecipe(
        iterations=args.iterations,
        batch_size=args.batch_size,
        localiser_batch_size=args.localiser_batch_size,
        segmenter_spacing_mm=args.spacing_mm,
        patch_size=args.patch_size,
        filters=tuple(args.filters),
        localiser_spacing_mm=args.localiser_spacing_mm,
        localiser_size=args.localiser_size,
        localiser_filters=tuple(args.localiser_filters),
        localiser_every=args.localiser_every,
        jitter_mm=args.jitter_mm,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every,
        augment=not args.no_augment,
        random_contrast=args.random_contrast,
        seed=args.seed,
    ).validated()


def run(args: argparse.Namespace) -> int:
    """Run ``onfh train``; returns the exit code."""
    from onfh.output_folder import require_writable_folder
    from onfh.training.trainer import TrainingPlan, run_training

    require_writable_folder(args.output)

    plan = TrainingPlan(
        dataset=args.dataset,
        model_dir=args.output,
        recipe=recipe_from_args(args),
        folds=args.folds,
        fold=args.fold,
        device=args.device,
        init_from=args.init_from,
        resume=args.resume,
        threads=args.threads,
        workers=args.workers,
        model_id=args.model_id,
        keep_checkpoints=args.keep_checkpoints,
    )
    run_training(plan)
    return 0
