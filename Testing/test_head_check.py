"""The femoral-head sanity check on shapes with known answers, and on phantom truths."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.head_check import MAX_RADIUS_MM, MIN_RADIUS_MM, check_head, fit_sphere, surface_voxels
from onfh.synthetic import generate_case

SPACING_ZYX_MM = (1.25, 1.25, 1.25)
EDGE = 64
CENTRE_MM = 40.0


def _coords_mm():
    z, y, x = np.mgrid[:EDGE, :EDGE, :EDGE] * SPACING_ZYX_MM[0]
    return z - CENTRE_MM, y - CENTRE_MM, x - CENTRE_MM


def _ball(radius_mm: float) -> np.ndarray:
    z, y, x = _coords_mm()
    return (np.sqrt(z**2 + y**2 + x**2) < radius_mm).astype(np.uint8)


def test_fit_sphere_recovers_an_exact_sphere():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    points = np.array([3.0, -2.0, 7.0]) + 24.0 * directions / np.linalg.norm(
        directions, axis=1, keepdims=True
    )
    centre, radius = fit_sphere(points)
    assert np.allclose(centre, [3.0, -2.0, 7.0], atol=1e-9)
    assert radius == pytest.approx(24.0, abs=1e-9)


def test_fit_sphere_refuses_points_in_a_plane():
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [2, 3, 0]], dtype=float)
    with pytest.raises(ValueError, match="one plane"):
        fit_sphere(points)


def test_surface_voxels_of_a_cube_are_its_shell():
    cube = np.zeros((6, 6, 6), dtype=bool)
    cube[1:5, 1:5, 1:5] = True
    assert len(surface_voxels(cube)) == 4**3 - 2**3


def test_a_head_sized_sphere_passes():
    check = check_head(_ball(23.0), SPACING_ZYX_MM)
    assert check.passed, check.reasons
    assert check.radius_mm == pytest.approx(23.0, abs=1.0)
    assert check.volume_ml == pytest.approx(4 / 3 * np.pi * 23.0**3 / 1000, rel=0.05)
    assert check.summary() == "passed"


def test_a_sphere_cut_at_the_neck_with_a_subchondral_lesion_passes():
    z = _coords_mm()[0]
    head = _ball(23.0)
    head[z < -17.0] = 0  # the head-neck cut, 17 mm below the centre
    label = head.copy()
    label[(head > 0) & (z > 12.0)] = 2  # a cap under the articular surface
    check = check_head(label, SPACING_ZYX_MM)
    assert check.passed, check.reasons
    assert check.lesion_reaches_surface is True


@pytest.mark.parametrize("depression_mm", [2.0, 4.0, 6.0])
def test_a_collapsed_head_still_passes(depression_mm):
    """Steinberg stage III-IV heads are collapsed: the necrotic dome sinks by millimetres.

    Collapse is what the grade predicts, so a collapsed head must be graded, not flagged:
    a 23 mm head cut at the neck whose weight-bearing dome is pushed in flat by up to 6 mm
    still lies mostly on a sphere.
    """
    z, _, _ = _coords_mm()
    head = _ball(23.0).astype(bool) & (z > -17.0) & (z < 23.0 - depression_mm)
    label = head.astype(np.uint8)
    label[head & (z > 9.0)] = 2
    check = check_head(label, SPACING_ZYX_MM)
    assert check.passed, check.reasons
    assert check.radius_mm == pytest.approx(23.0, abs=1.5)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("slab", "of its surface lies on a sphere"),
        ("cylinder", "of its surface lies on a sphere"),
        ("half head", "of its fitted sphere"),
        ("empty", "no femoral head segmented"),
        ("small ball", f"outside the {MIN_RADIUS_MM:.0f}-{MAX_RADIUS_MM:.0f} mm"),
        ("buried lesion", "below the head's surface"),
    ],
)
def test_shapes_that_are_not_a_femoral_head_fail_with_their_reason(name, reason):
    z, y, x = _coords_mm()
    if name == "slab":  # a slab of muscle, 70 x 70 x 20 mm
        label = ((np.abs(z) < 10) & (np.abs(y) < 35) & (np.abs(x) < 35)).astype(np.uint8)
    elif name == "cylinder":  # a shaft-like tube across the crop
        label = (np.sqrt(y**2 + x**2) < 15).astype(np.uint8)
    elif name == "half head":
        label = _ball(23.0) * (z < 0)
    elif name == "empty":
        label = np.zeros((EDGE,) * 3, dtype=np.uint8)
    elif name == "small ball":
        label = _ball(10.0)
    else:  # necrosis deep inside, far from the articular surface
        label = _ball(23.0)
        label[np.sqrt(z**2 + y**2 + x**2) < 8.0] = 2
    check = check_head(label.astype(np.uint8), SPACING_ZYX_MM)
    assert not check.passed
    assert any(reason in text for text in check.reasons), check.reasons
    assert check.summary().startswith("low confidence: ")


@pytest.mark.parametrize("seed", [3, 11])
def test_phantom_truth_heads_pass(seed):
    case = generate_case(seed, spacing_mm=(1.0, 1.0, 1.0), size=(112, 112, 96))
    label = sitk.GetArrayFromImage(case.label)
    check = check_head(label, case.label.GetSpacing()[::-1])
    assert check.passed, check.reasons
    assert check.volume_ml == pytest.approx(case.info["head_volume_ml"], rel=1e-6)
