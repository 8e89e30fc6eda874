"""Tests for onfh.preprocessing: axis-aligned grids, crops and intensity normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import rotation

from onfh.modelfolder import default_config
from onfh.preprocessing import (
    label_centroid_mm,
    localiser_input,
    normalise_intensity,
    physical_bounds,
    resample_label_like,
    resample_to_grid,
    segmenter_crop,
)

INTENSITY = default_config()["intensity"]


def ball_image(direction: np.ndarray, centre_mm=(12.0, -7.0, 30.0), radius_mm=9.0, spacing=(1.1, 0.9, 1.3)):
    """A ball (value 100 in noise-free 0 background) sampled on a grid of any direction."""
    size = (48, 52, 44)
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction.ravel().tolist())
    # Put the grid's centre near the ball so it is inside the field of view.
    half = (np.asarray(size) - 1) / 2.0 * np.asarray(spacing)
    image.SetOrigin((np.asarray(centre_mm) + np.array([3.0, -2.0, 1.0]) - direction @ half).tolist())
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    points = np.asarray(image.GetOrigin()) + (index * np.asarray(spacing)) @ direction.T
    inside = np.linalg.norm(points - np.asarray(centre_mm), axis=1) <= radius_mm
    array = inside.reshape(size).transpose(2, 1, 0).astype(np.float32) * 100.0
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


DIRECTIONS = {
    "axial": np.eye(3),
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    "coronal": np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    "sagittal": np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]]),
    "oblique": rotation(0, 20) @ rotation(2, 35),
}


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_resample_to_grid_is_axis_aligned_and_keeps_the_ball_in_place(name):
    image = ball_image(DIRECTIONS[name])
    grid = resample_to_grid(image, (2.0, 2.0, 2.0))
    assert grid.GetDirection() == (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    lower, upper = physical_bounds(image)
    grid_lower, grid_upper = physical_bounds(grid)
    assert np.all(grid_lower <= lower + 1e-6) and np.all(grid_upper >= upper - 2.0)
    label = sitk.Cast(image > 50, sitk.sitkUInt8)
    coarse_label = resample_label_like(label, grid)
    assert np.allclose(label_centroid_mm(coarse_label, [1]), (12.0, -7.0, 30.0), atol=1.0)


def test_resample_label_like_keeps_label_values_and_type():
    label = sitk.GetImageFromArray(np.array([[[0, 1], [2, 2]]] * 2, dtype=np.uint8))
    out = resample_label_like(label, label)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(out))) == {0, 1, 2}


def test_normalisation_is_invariant_to_scanner_scale_and_offset():
    rng = np.random.default_rng(1)
    array = np.concatenate([rng.normal(5, 1, 4000), rng.normal(200, 30, 6000)]).astype(np.float32)
    a = normalise_intensity(array, INTENSITY)
    b = normalise_intensity(array * 7.5 + 1000.0, INTENSITY)
    assert a.dtype == np.float32
    assert np.allclose(a, b, atol=1e-4)
    foreground = a[array > 100]
    assert abs(float(np.median(foreground))) < 0.05


def test_normalisation_ignores_nan_and_gives_it_the_lowest_value():
    array = np.array([np.nan, 0.0, 1.0, 2.0, 3.0, 4.0] * 10, dtype=np.float32)
    out = normalise_intensity(array, INTENSITY)
    assert np.isfinite(out).all()
    assert out[0] == out[np.isfinite(array)].min()


def test_normalisation_of_constant_array_is_zero_and_unknown_method_is_refused():
    assert not normalise_intensity(np.full(10, 3.0), INTENSITY).any()
    with pytest.raises(Exception, match="unknown intensity normalisation"):
        normalise_intensity(np.arange(10.0), {"method": "magic"})


def test_localiser_input_has_configured_size_and_covers_large_fields_when_asked():
    config = default_config()
    image = ball_image(np.eye(3), spacing=(6.0, 6.0, 6.0))  # 288 x 312 x 264 mm field of view
    array, grid = localiser_input(image, config)
    assert array.shape == (1, 64, 64, 64) and array.dtype == np.float32
    assert grid.GetSize() == (64, 64, 64) and grid.GetSpacing() == (4.0, 4.0, 4.0)
    covered, covered_grid = localiser_input(image, config, cover_field_of_view=True)
    assert covered.shape == (1, 72, 80, 72)  # 264/4 = 66 -> 72, 312/4 = 78 -> 80, multiples of 8
    lower, upper = physical_bounds(image)
    grid_lower, grid_upper = physical_bounds(covered_grid)
    assert np.all(grid_lower <= lower) and np.all(grid_upper >= upper)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_segmenter_crop_is_centred_on_the_given_point_for_any_direction(name):
    config = default_config()
    config["segmenter"]["patch_size"] = [32, 32, 32]
    centre = (12.0, -7.0, 30.0)
    array, grid = segmenter_crop(ball_image(DIRECTIONS[name]), centre, config)
    assert array.shape == (1, 32, 32, 32)
    ball = array[0] > array[0].min() + 0.5 * (array[0].max() - array[0].min())
    centroid_index = np.argwhere(ball).mean(axis=0)
    assert np.allclose(centroid_index, [15.5, 15.5, 15.5], atol=0.6)
    assert np.allclose(grid.TransformContinuousIndexToPhysicalPoint([15.5] * 3), centre)
