"""On-the-fly augmentation with MONAI transforms: crop jitter, pose, shape, scanner.

The synthetic training data cannot cover every scanner and patient, so each training
patch is re-drawn every iteration (issue 7: "robustness is built in, not hoped for"):

- spatial: one resampling does the crop around the head with a random offset (so the
  segmenter tolerates localisation error), rotation (oblique scans), scaling (head size,
  spacing) and occasionally a light elastic warp; a left-right flip covers laterality;
- contrast: where the case has a tissue label map, a share of the patches is rendered
  anew from it with random intensities, texture and resolution
  (:mod:`onfh.training.contrast`) instead of using the physical image;
- intensity: bias field, gamma, Gaussian noise, blur (thicker slices, other scanners);
  after normalisation a small scale and shift.

Intensity changes are applied to a positive copy of the patch; then voxels outside the
scan's field of view are marked NaN and the patch goes through the same
``normalise_intensity`` inference applies to its crop, so what the network sees stays in
the distribution inference produces while the contrast inside varies.

Arrays are ``[channel, z, y, x]`` (SimpleITK order); spatial axis 2 is x (left-right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

IMAGE = "image"
LABEL = "label"
INSIDE = "inside"
LEFT_RIGHT_AXIS = 2  # spatial axis of x in [z, y, x] arrays


@dataclass(frozen=True)
class AugmentationSettings:
    """How strong each random change is; ``strength=0`` turns everything off.

    Attributes:
        rotate_deg: maximum rotation about each axis.
        scale: maximum relative scaling (0.15 = 0.85 to 1.15).
        elastic_probability: chance of a light elastic warp instead of a plain affine one.
        flip_probability: chance of a left-right flip.
        bias_probability, gamma_probability, noise_probability, blur_probability: chance
            of each intensity change before normalisation.
        scale_shift_probability: chance of a small scale and of a small shift after it.
    """

    rotate_deg: float = 20.0
    scale: float = 0.15
    elastic_probability: float = 0.15
    flip_probability: float = 0.5
    bias_probability: float = 0.5
    gamma_probability: float = 0.5
    noise_probability: float = 0.4
    blur_probability: float = 0.25
    scale_shift_probability: float = 0.5

    @classmethod
    def none(cls) -> AugmentationSettings:
        """No augmentation at all (only the centred crop)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def spatial_transform(
    patch_size: tuple[int, int, int] | list[int],
    jitter_voxels: tuple[float, float, float] | list[float],
    settings: AugmentationSettings,
):
    """Crop a ``patch_size`` patch around the array centre with random pose and offset.

    The cached array is centred on the head; translating by up to ``jitter_voxels``
    (z, y, x) moves the patch like a localisation error would.
    """
    from monai.transforms import Compose, OneOf, Rand3DElasticd, RandAffined, RandFlipd

    size = [int(s) for s in patch_size]
    angle = math.radians(settings.rotate_deg)
    common = {
        "keys": (IMAGE, LABEL, INSIDE),
        "spatial_size": size,
        "prob": 1.0,
        "rotate_range": (angle, angle, angle),
        "scale_range": (settings.scale,) * 3,
        "translate_range": tuple(float(j) for j in jitter_voxels),
        "mode": ("bilinear", "nearest", "nearest"),
        "padding_mode": ("border", "zeros", "zeros"),
    }
    affine = RandAffined(**common, cache_grid=False)
    elastic = Rand3DElasticd(**common, sigma_range=(6.0, 9.0), magnitude_range=(40.0, 120.0))
    p_elastic = float(settings.elastic_probability)
    geometry = OneOf([affine, elastic], weights=[1.0 - p_elastic, p_elastic]) if p_elastic > 0 else affine
    transforms = [geometry]
    if settings.flip_probability > 0:
        transforms.append(
            RandFlipd(
                keys=(IMAGE, LABEL, INSIDE), prob=settings.flip_probability, spatial_axis=LEFT_RIGHT_AXIS
            )
        )
    return Compose(transforms)


def intensity_transform(settings: AugmentationSettings):
    """Scanner-like intensity changes, applied to a positive (shifted) image copy."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandBiasFieldd,
        RandGaussianNoised,
        RandGaussianSmoothd,
    )

    transforms = []
    if settings.bias_probability > 0:
        transforms.append(
            RandBiasFieldd(keys=IMAGE, degree=3, coeff_range=(0.0, 0.15), prob=settings.bias_probability)
        )
    if settings.gamma_probability > 0:
        transforms.append(RandAdjustContrastd(keys=IMAGE, gamma=(0.6, 1.6), prob=settings.gamma_probability))
    if settings.blur_probability > 0:
        transforms.append(
            RandGaussianSmoothd(
                keys=IMAGE,
                sigma_x=(0.25, 1.0),
                sigma_y=(0.25, 1.0),
                sigma_z=(0.25, 1.0),
                prob=settings.blur_probability,
            )
        )
    if settings.noise_probability > 0:
        transforms.append(RandGaussianNoised(keys=IMAGE, std=0.06, prob=settings.noise_probability))
    return Compose(transforms)


def residual_transform(settings: AugmentationSettings):
    """Small scale and shift after normalisation.

    Scaling or shifting raw intensities would be undone by the normalisation (it is
    invariant to them); these mimic what it cannot undo: a different mix of tissues in
    the crop moving its median and interquartile range.
    """
    from monai.transforms import Compose, RandScaleIntensityd, RandShiftIntensityd

    if settings.scale_shift_probability <= 0:
        return Compose([])
    return Compose(
        [
            RandScaleIntensityd(keys=IMAGE, factors=0.15, prob=settings.scale_shift_probability),
            RandShiftIntensityd(keys=IMAGE, offsets=0.15, prob=settings.scale_shift_probability),
        ]
    )


class PatchAugmenter:
    """Draws one augmented ``(image, label)`` patch from a cached, centred region.

    Deterministic: the same ``(region, seed)`` always gives the same patch, so a run
    resumed from a checkpoint continues exactly as an uninterrupted one would.

    Args:
        patch_size: output patch size (z, y, x) in voxels.
        jitter_voxels: maximum crop offset (z, y, x) in voxels.
        settings: augmentation strengths.
        normalise: the inference intensity normalisation (``array -> array``, NaN marks
            voxels outside the scan), applied to every patch as inference applies it to
            its crop.
        random_contrast_probability: chance that a patch whose region has a tissue map is
            rendered from it with random contrast rather than taken from the image.
    """

    def __init__(
        self,
        patch_size,
        jitter_voxels,
        settings: AugmentationSettings,
        normalise: Callable[[np.ndarray], np.ndarray],
        random_contrast_probability: float = 0.0,
    ) -> None:
        self.settings = settings
        self.random_contrast_probability = float(random_contrast_probability)
        self.spatial = spatial_transform(patch_size, jitter_voxels, settings)
        self.intensity = intensity_transform(settings)
        self.residual = residual_transform(settings)
        self.normalise = normalise

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray,
        inside: np.ndarray,
        seed: int,
        tissues: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return an augmented ``(image float32 [1,z,y,x], label uint8 [1,z,y,x])`` patch.

        Args:
            image: normalised region ``[1, z, y, x]``.
            label: labels on the region grid.
            inside: 1 where the region lies inside the scan.
            seed: decides every random choice.
            tissues: tissue label map on the region grid ``[1, z, y, x]``, or ``None``.
        """
        if tissues is not None and self.random_contrast_probability > 0:
            contrast_rng = np.random.default_rng([seed, 3])
            if contrast_rng.random() < self.random_contrast_probability:
                from onfh.training.contrast import render_random_contrast

                image = render_random_contrast(tissues[0], contrast_rng)[np.newaxis]
        self.spatial.set_random_state(seed=seed % (2**32))
        self.intensity.set_random_state(seed=(seed * 7919 + 1) % (2**32))
        self.residual.set_random_state(seed=(seed * 104729 + 2) % (2**32))
        sample = self.spatial({IMAGE: image, LABEL: label, INSIDE: inside})
        out_image = np.asarray(_numpy(sample[IMAGE]), dtype=np.float32)
        out_label = np.rint(_numpy(sample[LABEL])).astype(np.uint8)
        out_inside = _numpy(sample[INSIDE]) > 0.5
        if not out_inside.any():
            out_inside[...] = True
        if self.intensity.transforms:
            # Bias field and gamma are multiplicative: work on a positive copy.
            floor = float(out_image[out_inside].min())
            positive = np.maximum(out_image - floor, 0.0) + 1e-3
            out_image = np.asarray(_numpy(self.intensity({IMAGE: positive})[IMAGE]), dtype=np.float32)
        out_image = np.where(out_inside, out_image, np.float32(np.nan))
        out_image = np.asarray(self.normalise(out_image), dtype=np.float32)
        if self.residual.transforms:
            out_image = np.asarray(_numpy(self.residual({IMAGE: out_image})[IMAGE]), dtype=np.float32)
        return out_image, out_label


def _numpy(value) -> np.ndarray:
    """MONAI returns MetaTensors or tensors; training wants plain numpy arrays."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
