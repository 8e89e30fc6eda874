"""What each network sees: resampling onto axis-aligned grids and intensity normalisation.

Training and inference both call these functions, so the networks are fed identical
inputs in both. Every network grid has an identity direction matrix: an axial, coronal,
sagittal, oblique or flipped acquisition of the same hip therefore looks the same to the
network, and results are mapped back to the input's own grid in physical (LPS) space.

Arrays are numpy ``[z, y, x]`` (SimpleITK order); network inputs carry a leading channel
axis ``[1, z, y, x]``. Points and spacings are ``(x, y, z)`` in millimetres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from onfh.errors import OnfhError

# Outside the input's field of view the network sees the darkest normalised value: resampling
# marks those voxels NaN, and normalisation excludes them from its statistics.
_OUTSIDE = float("nan")


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box ``(lower, upper)`` (x, y, z mm) of the image's voxel corners."""
    size = np.asarray(image.GetSize(), dtype=float)
    corners = []
    for corner in np.ndindex(2, 2, 2):
        index = np.where(np.asarray(corner) == 1, size - 0.5, -0.5)
        corners.append(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))
    points = np.asarray(corners)
    return points.min(axis=0), points.max(axis=0)


def axis_aligned_grid(
    centre_mm: Sequence[float], spacing_mm: Sequence[float], size: Sequence[int]
) -> sitk.Image:
    """An empty float32 image with identity direction whose voxel centres are centred on ``centre_mm``."""
    spacing = np.asarray(spacing_mm, dtype=float)
    size_array = np.asarray(size, dtype=int)
    grid = sitk.Image([int(s) for s in size_array], sitk.sitkFloat32)
    grid.SetSpacing(spacing.tolist())
    grid.SetOrigin((np.asarray(centre_mm, dtype=float) - (size_array - 1) / 2.0 * spacing).tolist())
    return grid


def resample_to_grid(
    image: sitk.Image,
    spacing_mm: Sequence[float],
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
) -> sitk.Image:
    """Resample onto an identity-direction grid of ``spacing_mm`` covering the image's bounding box.

    Args:
        image: any 3D image, any direction matrix.
        spacing_mm: target spacing (x, y, z).
        interpolator: a SimpleITK interpolator (``sitk.sitkLinear``, ``sitk.sitkNearestNeighbor``).
        default_value: value of grid voxels outside the input (oblique inputs have corners).
    """
    lower, upper = physical_bounds(image)
    spacing = np.asarray(spacing_mm, dtype=float)
    size = np.maximum(np.ceil((upper - lower) / spacing - 1e-6).astype(int), 1)
    grid = axis_aligned_grid((lower + upper) / 2.0, spacing, size)
    return sitk.Resample(image, grid, sitk.Transform(), interpolator, default_value, image.GetPixelID())


def resample_label_like(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of a label image onto ``reference``'s grid (0 outside)."""
    return sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())


def normalise_intensity(array: np.ndarray, intensity_config: dict[str, Any]) -> np.ndarray:
    """Map MRI intensities to a scanner-independent float32 scale.

    MRI intensities have no units: scale and offset vary per scanner and a bias field
    multiplies them smoothly. The ``"robust_percentile"`` method clips to percentiles of
    the finite values, then centres on the median and divides by the interquartile range
    of the foreground (voxels above ``foreground_threshold`` of the clipped range, i.e.
    not air). The result is invariant to any positive affine change of intensities.
    Non-finite voxels (outside the field of view) get the lowest normalised value.

    Args:
        array: intensities, any shape; NaN marks voxels outside the field of view.
        intensity_config: ``{"method": "robust_percentile", "lower_percentile": 0.5,
            "upper_percentile": 99.5, "foreground_threshold": 0.1}`` (defaults shown).
    """
    method = intensity_config.get("method")
    if method != "robust_percentile":
        raise OnfhError(f"unknown intensity normalisation method {method!r} (known: 'robust_percentile')")
    lower_pct = float(intensity_config.get("lower_percentile", 0.5))
    upper_pct = float(intensity_config.get("upper_percentile", 99.5))
    threshold = float(intensity_config.get("foreground_threshold", 0.1))
    data = np.asarray(array, dtype=np.float32)
    finite = np.isfinite(data)
    values = data[finite] if not finite.all() else data.ravel()
    if values.size == 0:
        return np.zeros(data.shape, dtype=np.float32)
    low, high = (float(v) for v in np.percentile(values, [lower_pct, upper_pct]))
    if not high > low:
        return np.zeros(data.shape, dtype=np.float32)
    clipped_values = np.clip(values, low, high)
    foreground = clipped_values[clipped_values > low + threshold * (high - low)]
    if foreground.size < 16:
        foreground = clipped_values
    q25, centre, q75 = (float(v) for v in np.percentile(foreground, [25, 50, 75]))
    scale = q75 - q25
    if not scale > 1e-6 * (high - low):
        scale = high - low
    out = np.clip(data, low, high)
    out -= centre
    out /= scale
    if not finite.all():
        out[~finite] = (low - centre) / scale
    return out.astype(np.float32, copy=False)


def _float_image(image: sitk.Image) -> sitk.Image:
    return image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)


def _network_input(
    image: sitk.Image, grid: sitk.Image, intensity_config: dict[str, Any]
) -> tuple[np.ndarray, sitk.Image]:
    """Resample ``image`` onto ``grid`` (linear, NaN outside), normalise; array and image."""
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, _OUTSIDE, sitk.sitkFloat32)
    array = normalise_intensity(sitk.GetArrayViewFromImage(resampled), intensity_config)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(grid)
    return array[np.newaxis], out


def _antialias(image: sitk.Image, spacing_mm: Sequence[float]) -> sitk.Image:
    """Average blocks of voxels before coarse resampling, so noise does not alias.

    ``BinShrink`` keeps the physical extent; it is cheap even on large volumes.
    """
    factors = [max(1, math.floor(t / s)) for t, s in zip(spacing_mm, image.GetSpacing())]
    if max(factors) == 1:
        return image
    return sitk.BinShrink(image, factors)


def localiser_input(
    image: sitk.Image, config: dict[str, Any], cover_field_of_view: bool = False
) -> tuple[np.ndarray, sitk.Image]:
    """The localiser's input: the field of view on the coarse grid, centred on the image.

    Args:
        image: the input MRI (any direction, spacing and pixel type).
        config: ``model.json`` content; reads ``localiser.spacing_mm``,
            ``localiser.input_size`` and ``intensity``.
        cover_field_of_view: enlarge the grid (to multiples of the network's down-sampling)
            when the field of view is larger than ``input_size``, so no part of a large
            scan is cut off. Inference sets it; training keeps the fixed size for batching.

    Returns:
        ``(array float32 [1, z, y, x], grid)`` where ``grid`` is the normalised input as
        an image carrying the grid's geometry (origin, spacing, identity direction).
    """
    section = config["localiser"]
    spacing = np.asarray(section["spacing_mm"], dtype=float)
    size = np.asarray(section["input_size"], dtype=int)
    lower, upper = physical_bounds(image)
    if cover_field_of_view:
        from onfh.network_config import size_divisor

        divisor = np.asarray(size_divisor(section["network"]), dtype=int)
        needed = np.ceil((upper - lower) / spacing - 1e-6).astype(int)
        size = np.maximum(size, -(-needed // divisor) * divisor)
    grid = axis_aligned_grid((lower + upper) / 2.0, spacing, size)
    source = _antialias(_float_image(image), spacing)
    return _network_input(source, grid, config["intensity"])


def segmenter_crop(
    image: sitk.Image, centre_mm: Sequence[float], config: dict[str, Any]
) -> tuple[np.ndarray, sitk.Image]:
    """The segmenter's input: a ``patch_size`` crop at the model spacing centred on ``centre_mm``.

    Args:
        image: the input MRI (any direction, spacing and pixel type).
        centre_mm: crop centre, an LPS physical point (x, y, z) in mm.
        config: ``model.json`` content; reads ``segmenter.spacing_mm``,
            ``segmenter.patch_size`` and ``intensity``.

    Returns:
        ``(array float32 [1, z, y, x], grid)`` as for :func:`localiser_input`.
    """
    section = config["segmenter"]
    grid = axis_aligned_grid(centre_mm, section["spacing_mm"], section["patch_size"])
    return _network_input(_float_image(image), grid, config["intensity"])


def mask_centroid_mm(mask: np.ndarray, grid: sitk.Image) -> np.ndarray:
    """Physical centroid (x, y, z mm) of a boolean ``[z, y, x]`` mask on ``grid``.

    Raises:
        ValueError: the mask is empty.
    """
    indices = np.argwhere(mask)
    if indices.size == 0:
        raise ValueError("centroid of an empty mask")
    centre_index = indices.mean(axis=0)[::-1]  # (z, y, x) -> (x, y, z)
    return np.asarray(grid.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))


def label_centroid_mm(label: sitk.Image, values: Sequence[int] = (1, 2)) -> np.ndarray:
    """Physical centroid of the voxels of ``label`` whose value is in ``values`` (the head)."""
    array = sitk.GetArrayViewFromImage(label)
    return mask_centroid_mm(np.isin(array, list(values)), label)
