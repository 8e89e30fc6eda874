"""Tests for onfh.metrics: against MONAI's own implementations, analytic spheres, empty masks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from onfh import metrics

# Shapes and spacings (array axis order z, y, x) shared by the MONAI comparisons.
ANISOTROPIC_ZYX_MM = (1.5, 0.7, 0.8)


def ellipsoid(shape, centre, radii_vox) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii_vox))
    return inside <= 1.0


def sphere_mm(shape, centre_mm, radius_mm, spacing_mm) -> np.ndarray:
    """A ball of ``radius_mm`` sampled at voxel centres ``index * spacing``."""
    grid = np.indices(shape, dtype=float)
    distance_sq = sum((g * s - c) ** 2 for g, s, c in zip(grid, spacing_mm, centre_mm))
    return distance_sq <= radius_mm**2


def lens_dice(radius: float, shift: float) -> float:
    """Dice of two equal balls whose centres are ``shift`` apart (analytic lens volume)."""
    lens = math.pi * (4 * radius + shift) * (2 * radius - shift) ** 2 / 12.0
    return lens / (4.0 / 3.0 * math.pi * radius**3)


@pytest.fixture(scope="module")
def monai_metrics():
    pytest.importorskip("scipy", reason="MONAI's surface distances need SciPy")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
    )

    def as_tensor(mask):
        return torch.as_tensor(np.ascontiguousarray(mask)[None, None])

    def monai(prediction, truth, spacing):
        p, t = as_tensor(prediction), as_tensor(truth)
        with warnings.catch_warnings():
            # MONAI warns about its own deprecated argument and about empty masks.
            warnings.simplefilter("ignore")
            return _monai_values(p, t, spacing)

    def _monai_values(p, t, spacing):
        return {
            "dice": float(compute_dice(p.float(), t.float(), include_background=True)),
            "asd_mm": float(compute_average_surface_distance(p, t, symmetric=True, spacing=list(spacing))),
            "hd95_mm": float(compute_hausdorff_distance(p, t, percentile=95, spacing=list(spacing))),
            "hd100_mm": float(compute_hausdorff_distance(p, t, spacing=list(spacing))),
        }

    return monai


def mask_pairs():
    """Pairs of masks that exercise shifts, anisotropy, noise, holes and the array border."""
    rng = np.random.default_rng(7)
    shape = (36, 44, 40)
    truth = ellipsoid(shape, (18, 22, 20), (10, 15, 12))
    shifted = ellipsoid(shape, (19.5, 21, 21.2), (9, 16, 11))
    noisy = truth ^ (rng.random(shape) < 0.004)
    holed = truth & ~ellipsoid(shape, (18, 22, 20), (4, 4, 4))
    border = ellipsoid(shape, (2, 22, 38), (8, 12, 9))  # cut by two faces of the array
    border_prediction = ellipsoid(shape, (3, 23, 37), (9, 11, 9))
    lesion = ellipsoid(shape, (12, 20, 20), (3, 5, 4))
    far_lesion = ellipsoid(shape, (26, 30, 28), (2, 3, 3))
    return {
        "shifted": (shifted, truth),
        "noisy": (noisy, truth),
        "holed": (holed, truth),
        "border": (border_prediction, border),
        "small_vs_two_blobs": (lesion, lesion | far_lesion),
    }


@pytest.mark.parametrize("name", list(mask_pairs()))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISOTROPIC_ZYX_MM])
def test_metrics_equal_monai(monai_metrics, name, spacing):
    prediction, truth = mask_pairs()[name]
    expected = monai_metrics(prediction, truth, spacing)
    ours = metrics.overlap_metrics(prediction, truth, spacing)
    # MONAI works in float32; ours in float32 distance maps then float64 statistics.
    assert ours.dice == pytest.approx(expected["dice"], rel=1e-6)
    assert ours.asd_mm == pytest.approx(expected["asd_mm"], rel=1e-5)
    assert ours.hd95_mm == pytest.approx(expected["hd95_mm"], rel=1e-5)
    assert metrics.hausdorff_distance(prediction, truth, spacing, percentile=100) == pytest.approx(
        expected["hd100_mm"], rel=1e-5
    )
    assert metrics.dice(prediction, truth) == ours.dice
    assert metrics.average_surface_distance(prediction, truth, spacing) == pytest.approx(ours.asd_mm)


def test_surface_equals_scipy_erosion():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    mask = rng.random((20, 24, 18)) < 0.6
    mask[0] = True  # voxels on the array border count as surface, as in SciPy (border_value=0)
    expected = mask ^ ndimage.binary_erosion(mask)
    np.testing.assert_array_equal(metrics.surface(mask), expected)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.6, 0.6, 0.6), (1.2, 0.6, 0.6)])
def test_concentric_spheres_asd_is_radius_difference(spacing):
    inner_mm, outer_mm = 9.0, 13.0
    extent_mm = 2 * outer_mm + 6
    shape = tuple(round(extent_mm / s) for s in spacing)
    centre = tuple(n * s / 2 for n, s in zip(shape, spacing))
    inner = sphere_mm(shape, centre, inner_mm, spacing)
    outer = sphere_mm(shape, centre, outer_mm, spacing)
    asd = metrics.average_surface_distance(inner, outer, spacing)
    # Surface voxels sit up to one voxel inside each sphere's true surface, on average
    # about the same depth for both spheres: half a voxel is a safe bound.
    assert asd == pytest.approx(outer_mm - inner_mm, abs=0.5 * max(spacing))
    hd95 = metrics.hausdorff_distance(inner, outer, spacing)
    assert outer_mm - inner_mm - max(spacing) <= hd95 <= outer_mm - inner_mm + max(spacing)


@pytest.mark.parametrize("shift_mm", [2.0, 6.0, 12.0])
def test_shifted_spheres_dice_matches_lens_volume(shift_mm):
    spacing = (0.5, 0.5, 0.5)
    radius_mm = 10.0
    shape = (76, 48, 48)  # room for the moved ball: 12 + 12 + 10 mm < 38 mm
    a = sphere_mm(shape, (12.0, 12.0, 12.0), radius_mm, spacing)
    b = sphere_mm(shape, (12.0 + shift_mm, 12.0, 12.0), radius_mm, spacing)
    assert metrics.dice(a, b) == pytest.approx(lens_dice(radius_mm, shift_mm), abs=0.003)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_distances_use_spacing_in_array_axis_order(axis):
    spacing = (1.5, 0.7, 0.9)
    box = np.zeros((20, 20, 20), dtype=bool)
    box[5:13, 5:13, 5:13] = True
    moved = np.roll(box, 2, axis=axis)
    # The moved top face is exactly two voxel steps along ``axis`` from the truth surface.
    assert metrics.hausdorff_distance(moved, box, spacing, percentile=100) == pytest.approx(
        2 * spacing[axis], rel=1e-6
    )


def test_crop_gives_the_same_result_as_the_whole_volume():
    small_truth = ellipsoid((30, 34, 32), (15, 17, 16), (11, 13, 12))
    small_prediction = ellipsoid((30, 34, 32), (16, 16, 17), (10, 14, 12))
    spacing = (1.2, 0.7, 0.7)
    big_truth = np.zeros((120, 256, 256), dtype=bool)
    big_prediction = np.zeros_like(big_truth)
    big_truth[50:80, 100:134, 150:182] = small_truth
    big_prediction[50:80, 100:134, 150:182] = small_prediction
    assert metrics.overlap_metrics(big_prediction, big_truth, spacing) == metrics.overlap_metrics(
        small_prediction, small_truth, spacing
    )


def test_identical_masks_are_perfect():
    mask = ellipsoid((20, 20, 20), (10, 10, 10), (6, 7, 5))
    assert metrics.overlap_metrics(mask, mask, (1.0, 2.0, 3.0)) == metrics.OverlapMetrics(1.0, 0.0, 0.0)


def test_both_empty_is_agreement():
    empty = np.zeros((8, 9, 10), dtype=bool)
    assert metrics.overlap_metrics(empty, empty) == metrics.OverlapMetrics(1.0, 0.0, 0.0)
    assert metrics.average_surface_distance(empty, empty) == 0.0
    assert metrics.hausdorff_distance(empty, empty) == 0.0


@pytest.mark.parametrize("empty_side", ["prediction", "truth"])
def test_one_empty_mask_gives_zero_dice_and_infinite_distances(empty_side, monai_metrics):
    mask = ellipsoid((16, 16, 16), (8, 8, 8), (4, 4, 4))
    empty = np.zeros_like(mask)
    prediction, truth = (empty, mask) if empty_side == "prediction" else (mask, empty)
    result = metrics.overlap_metrics(prediction, truth, (1.0, 1.0, 2.0))
    assert result.dice == 0.0
    assert math.isinf(result.asd_mm) and math.isinf(result.hd95_mm)
    assert math.isinf(metrics.hausdorff_distance(prediction, truth, percentile=50))
    # MONAI agrees that the average distance to nothing is infinite (its HD95 interpolates
    # between infinities and gives nan, which we avoid).
    expected = monai_metrics(prediction, truth, (1.0, 1.0, 2.0))
    assert math.isinf(expected["asd_mm"]) and math.isinf(expected["hd100_mm"])


def test_bad_inputs_raise():
    a = np.zeros((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="shape"):
        metrics.dice(a, np.zeros((4, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="spacing"):
        metrics.average_surface_distance(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        metrics.average_surface_distance(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="percentile"):
        metrics.hausdorff_distance(a, a, percentile=120)
