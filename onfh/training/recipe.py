"""The training recipe: every knob of ``onfh train`` with the default model's values.

A recipe turns into the ``model.json`` configuration (networks, spacings, sizes,
intensity normalisation) that inference reads, so nothing about the networks is
hard-coded anywhere else. Defaults are the shipped model's: a 64^3 crop at 1.25 mm covers
the same 80 mm around the head as 80^3 at 1 mm with half the voxels, and a 192-channel
bottleneck keeps ``model.pt`` under 25 MB; one model takes about 26 minutes on a 2-core
CPU (median 2.5 s per iteration, ``benchmarks/bench_train.py``), so four cross-validation
folds and the final model fit in about two hours there and in minutes on a GPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from onfh.errors import OnfhError
from onfh.labels import LABEL_NAMES

DEFAULT_INTENSITY: dict[str, Any] = {
    "method": "robust_percentile",
    "lower_percentile": 0.5,
    "upper_percentile": 99.5,
    "foreground_threshold": 0.1,
}


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that decides what a training run produces.

    Attributes:
        iterations: optimiser steps of the segmenter.
        batch_size: segmenter patches per step and process.
        localiser_batch_size: localiser inputs per step and process.
        segmenter_spacing_mm: isotropic target spacing of the segmenter crop.
        patch_size: segmenter crop edge in voxels (isotropic).
        filters: segmenter DynUNet filters, one per level (5 levels in the reference study).
        localiser_spacing_mm: isotropic spacing of the localiser's coarse grid.
        localiser_size: localiser input edge in voxels.
        localiser_filters: localiser DynUNet filters, one per level (multiples of 16: CPU
            convolutions with 8 channels are several times slower than with 16).
        localiser_every: the localiser takes a step every this many iterations (its
            coarse task converges long before the segmenter's).
        jitter_mm: maximum training offset of the crop centre from the true head centre.
        optimizer: ``adamw`` or ``sgd`` (Nesterov, momentum 0.99, as nnU-Net).
        learning_rate: initial rate; decays with the poly schedule ``(1 - t/T) ** 0.9``.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        validate_every: iterations between validations (and the final iteration).
        checkpoint_every: iterations between checkpoints.
        augment: ``False`` turns off every random change except the crop jitter.
        random_contrast: chance that a training patch of a case with a tissue label map
            (``onfh synth --tissue-maps``) is rendered from it with random contrast,
            texture and resolution instead of taken from its image (1: only such images).
        seed: seeds folds, sampling and augmentation.
    """

    iterations: int = 600
    batch_size: int = 2
    localiser_batch_size: int = 2
    segmenter_spacing_mm: float = 1.25
    patch_size: int = 64
    filters: tuple[int, ...] = (16, 32, 64, 128, 192)
    localiser_spacing_mm: float = 5.0
    localiser_size: int = 48
    localiser_filters: tuple[int, ...] = (16, 32, 64, 128)
    localiser_every: int = 2
    jitter_mm: float = 8.0
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 3e-5
    validate_every: int = 250
    checkpoint_every: int = 250
    augment: bool = True
    random_contrast: float = 0.5
    seed: int = 0
    intensity: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_INTENSITY))

    def validated(self) -> TrainingRecipe:
        """Return ``self`` after checking values a user could get wrong on the command line."""
        positive = {
            "iterations": self.iterations,
            "batch_size": self.batch_size,
            "localiser_batch_size": self.localiser_batch_size,
            "localiser_every": self.localiser_every,
            "validate_every": self.validate_every,
            "checkpoint_every": self.checkpoint_every,
        }
        for name, value in positive.items():
            if value < 1:
                raise OnfhError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name, value in (
            ("segmenter-spacing-mm", self.segmenter_spacing_mm),
            ("localiser-spacing-mm", self.localiser_spacing_mm),
            ("learning-rate", self.learning_rate),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise OnfhError(f"--{name} must be a positive number, got {value}")
        if self.optimizer not in ("adamw", "sgd"):
            raise OnfhError(f"--optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if not 0.0 <= self.random_contrast <= 1.0:
            raise OnfhError(f"--random-contrast must be a probability in [0, 1], got {self.random_contrast}")
        if self.jitter_mm < 0:
            raise OnfhError(f"--jitter-mm must be >= 0, got {self.jitter_mm}")
        for name, filters, size in (
            ("filters", self.filters, self.patch_size),
            ("localiser-filters", self.localiser_filters, self.localiser_size),
        ):
            if len(filters) < 3 or any(f < 1 for f in filters):
                raise OnfhError(
                    f"--{name} needs at least 3 positive counts (DynUNet levels), got {list(filters)}"
                )
            divisor = 2 ** (len(filters) - 1)
            if size % divisor:
                raise OnfhError(
                    f"size {size} must be a multiple of {divisor} for {len(filters)} levels (--{name})"
                )
        return self

    def replace(self, **changes: Any) -> TrainingRecipe:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def dynunet_config(filters: tuple[int, ...] | list[int], out_channels: int) -> dict[str, Any]:
    """DynUNet kwargs: kernel 3 everywhere, strides ``[1, 2, 2, ...]``, instance norm."""
    levels = len(filters)
    return {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": out_channels,
        "kernel_size": [3] * levels,
        "strides": [1] + [2] * (levels - 1),
        "filters": [int(f) for f in filters],
        "norm_name": "instance",
        "res_block": False,
        "deep_supervision": False,
    }


def model_config(recipe: TrainingRecipe) -> dict[str, Any]:
    """The ``model.json`` network and preprocessing sections a recipe trains.

    ``id``, ``version``, ``created`` and ``training`` are added by the trainer when it
    saves; ``sha256`` by ``save_model_folder``. Sizes and spacings are ``[x, y, z]``.
    """
    return {
        "format": 1,
        "labels": dict(LABEL_NAMES),
        "intensity": dict(recipe.intensity),
        "localiser": {
            "network": dynunet_config(recipe.localiser_filters, out_channels=2),
            "spacing_mm": [float(recipe.localiser_spacing_mm)] * 3,
            "input_size": [int(recipe.localiser_size)] * 3,
        },
        "segmenter": {
            "network": dynunet_config(recipe.filters, out_channels=len(LABEL_NAMES)),
            "spacing_mm": [float(recipe.segmenter_spacing_mm)] * 3,
            "patch_size": [int(recipe.patch_size)] * 3,
            "crop_margin_mm": float(recipe.jitter_mm),
        },
    }
