"""Contrast-randomised training images drawn from tissue label maps (the SynthSeg idea).

A model trained only on ``onfh synth``'s physical SPGR images learns that generator's
contrasts and context, not hips: on independent phantoms it put its crop on muscle.
SynthSeg (Billot et al., Medical Image Analysis 2023) shows the way out: render every
training image anew from a label map of the anatomy, with a random intensity per label,
random texture, random resolution (blur and thick slices), so that no contrast is seen
twice and the network has to learn geometry. Bias field, gamma and noise come after this,
in :mod:`onfh.training.augment`, as for the physical images.

Only the femoral head and necrosis are learned; every other tissue of the label map
(fat, muscle split into groups, bone, cartilage, fluid, vessels, pelvis, air) exists to
make the image. One constraint keeps the lesion learnable: the reactive band, the lesion's
main MRI cue (DOMAIN.md), always differs from the head's fatty marrow by at least
``band_contrast`` of the intensity range.

Label maps hold tissue id + 1 (``onfh.synthetic.signal.TISSUE_IDS``), 0 where nothing was
painted; arrays are ``[z, y, x]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onfh.synthetic.signal import TISSUE_IDS

LABEL_COUNT = len(TISSUE_IDS) + 1
MARROW = TISSUE_IDS["marrow"] + 1
BAND = TISSUE_IDS["band"] + 1
# Large tissues split into sub-regions of their own intensity (muscle groups, fat lobules).
SPLIT_TISSUES = (TISSUE_IDS["muscle"] + 1, TISSUE_IDS["fat"] + 1, TISSUE_IDS["pelvic_marrow"] + 1, 0)


@dataclass(frozen=True)
class ContrastSettings:
    """Ranges of the random rendering; voxel units are the grid's own voxels.

    Attributes:
        band_contrast: least ``|band - marrow|`` intensity difference (intensities are 0-1).
        texture_std: maximum per-label standard deviation of voxel noise before blurring.
        split_groups: most sub-regions a large tissue is split into.
        blur_sigma_vox: maximum in-plane Gaussian blur.
        slice_sigma_vox: maximum blur along one random axis (thick slices).
        thick_slice_probability: chance of keeping only every 2nd or 3rd slice of one
            axis and interpolating back (a coarse acquisition resampled).
    """

    band_contrast: float = 0.15
    texture_std: float = 0.08
    split_groups: int = 4
    blur_sigma_vox: float = 0.6
    slice_sigma_vox: float = 1.5
    thick_slice_probability: float = 0.3


def random_intensities(rng: np.random.Generator, settings: ContrastSettings) -> np.ndarray:
    """One mean intensity in [0, 1] per label, the band kept apart from the marrow."""
    means = rng.uniform(0.0, 1.0, size=LABEL_COUNT)
    for _ in range(100):
        if abs(means[BAND] - means[MARROW]) >= settings.band_contrast:
            break
        means[BAND] = rng.uniform(0.0, 1.0)
    return means.astype(np.float32)


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, nodes: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1) of ``shape``: random values on a coarse grid, trilinearly upsampled."""
    import torch

    coarse = torch.from_numpy(rng.random((1, 1, nodes, nodes, nodes)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)
    values = field[0, 0].numpy()
    low, high = float(values.min()), float(values.max())
    return (values - low) / max(high - low, 1e-6) * 0.999


def _blur(image: np.ndarray, sigma_zyx: list[float]) -> np.ndarray:
    from monai.transforms import GaussianSmooth

    if max(sigma_zyx) < 0.2:
        return image
    return np.asarray(GaussianSmooth(sigma=sigma_zyx)(image[np.newaxis])[0], dtype=np.float32)


def _thick_slices(image: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Keep every ``factor``-th slice along ``axis`` and interpolate the rest back linearly."""
    import torch

    taken = np.take(image, np.arange(0, image.shape[axis], factor), axis=axis)
    tensor = torch.from_numpy(np.ascontiguousarray(taken))[None, None]
    back = torch.nn.functional.interpolate(tensor, size=image.shape, mode="trilinear", align_corners=False)
    return back[0, 0].numpy()


def render_random_contrast(
    tissues: np.ndarray, rng: np.random.Generator, settings: ContrastSettings | None = None
) -> np.ndarray:
    """A new image of the anatomy in ``tissues`` with random contrast, texture and resolution.

    Args:
        tissues: uint8 label map ``[z, y, x]`` (tissue id + 1, 0 unpainted).
        rng: decides every random choice (the same seed gives the same image).
        settings: ranges; ``None`` for the defaults.

    Returns:
        float32 ``[z, y, x]`` image, non-negative.
    """
    settings = settings or ContrastSettings()
    if tissues.ndim != 3:
        raise ValueError(f"expected a 3D tissue label map, got shape {tissues.shape}")
    labels = np.minimum(tissues, LABEL_COUNT - 1)
    means = random_intensities(rng, settings)
    image = means[labels]
    for tissue in SPLIT_TISSUES:
        groups = int(rng.integers(1, settings.split_groups + 1))
        inside = labels == tissue
        if groups < 2 or not inside.any():
            continue
        group_of_voxel = (smooth_field(labels.shape, rng) * groups).astype(np.int64)
        group_means = np.clip(means[tissue] + rng.normal(0.0, 0.15, size=groups), 0.0, 1.0)
        image[inside] = group_means[group_of_voxel[inside]].astype(np.float32)
    stds = rng.uniform(0.0, settings.texture_std, size=LABEL_COUNT).astype(np.float32)
    image = image + stds[labels] * rng.standard_normal(labels.shape, dtype=np.float32)
    sigma = list(rng.uniform(0.0, settings.blur_sigma_vox, size=3))
    slice_axis = int(rng.integers(3))
    sigma[slice_axis] = float(rng.uniform(0.0, settings.slice_sigma_vox))
    image = _blur(image, sigma)
    if rng.random() < settings.thick_slice_probability:
        image = _thick_slices(image, slice_axis, int(rng.integers(2, 4)))
    return np.maximum(image, 0.0).astype(np.float32)


def random_contrast_scan(
    tissues: np.ndarray, rng: np.random.Generator, settings: ContrastSettings | None = None
) -> np.ndarray:
    """A whole scan of the anatomy in ``tissues`` from the randomised generator, in scanner units.

    :func:`render_random_contrast`, then what every acquisition adds: a smooth
    multiplicative bias field (up to +-40 %), Rician noise at an SNR of 15-60 relative to
    the bright end of the image, and a random scale into int16. ``onfh synth --contrast
    random`` writes these, so a model can be tested on a generator it was not trained on.
    """
    image = render_random_contrast(tissues, rng, settings)
    bias = 1.0 + float(rng.uniform(0.1, 0.4)) * (2.0 * smooth_field(image.shape, rng, nodes=3) - 1.0)
    image = image * bias
    sigma = float(np.percentile(image, 90)) / float(rng.uniform(15.0, 60.0))
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    magnitude = np.sqrt(real**2 + imaginary**2)
    scale = float(rng.uniform(400.0, 3000.0)) / max(float(np.percentile(magnitude, 99.5)), 1e-6)
    return np.clip(np.rint(magnitude * scale), 0, np.iinfo(np.int16).max).astype(np.int16)
