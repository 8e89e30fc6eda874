"""Kerboul combined necrotic angle on phantoms with analytic angles, in any scan orientation.

A phantom is a ball (the head) with a spherical cap of half-angle ``alpha`` about an axis
``u`` (the necrosis): the cap touches the surface where the angle to ``u`` is below
``alpha``. On a plane through the centre in which ``u`` projects to length ``s``, the cap's
arc is ``2 arccos(cos(alpha) / s)`` (zero when ``s <= cos(alpha)``).

Voxelising the cap loses its thin wedge-shaped rim, so a measured arc is checked against
the analytic arcs of caps whose rim lies up to 1.5 voxels (seen from the centre) inside
the true one, or half a degree outside it; a finer grid must come closer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.kerboul import (
    PLANES,
    collapse_risk,
    combined_necrotic_angle,
    head_components,
    kerboul_grade,
)
from onfh.synthetic.geometry import rotation_matrix

RADIUS_MM = 22.0
CENTRE_MM = np.array([-80.0, 15.0, 40.0])  # a right hip in LPS
SUPERIOR = np.array([0.0, 0.0, 1.0])
ANTEROSUPERIOR = np.array([0.0, -1.0, 1.0]) / math.sqrt(2.0)  # LPS: anterior is -y

AXIAL = np.eye(3)
CORONAL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # columns: x, z, -y


def oblique() -> np.ndarray:
    return rotation_matrix(np.array([0.3, -0.5, 0.8]), math.radians(27.0))


def analytic_arc_deg(axis: np.ndarray, half_angle_deg: float, plane: str) -> float:
    first, second = PLANES[plane]
    projected = math.hypot(float(axis @ first), float(axis @ second))
    ratio = math.cos(math.radians(half_angle_deg)) / projected if projected > 0 else math.inf
    return 0.0 if ratio >= 1.0 else 2.0 * math.degrees(math.acos(ratio))


def rim_tolerance_deg(spacing_mm) -> float:
    """1.5 voxels of the coarsest spacing, as an angle at the head centre."""
    return math.degrees(1.5 * max(spacing_mm) / RADIUS_MM)


def assert_arc_within_rim(measured: float, axis, half_angle_deg: float, plane: str, spacing_mm) -> None:
    low = analytic_arc_deg(axis, half_angle_deg - rim_tolerance_deg(spacing_mm), plane)
    high = analytic_arc_deg(axis, half_angle_deg + 0.5, plane)
    assert low - 1.0 <= measured <= high + 1.0, (plane, measured, low, high)


def cap_phantom(
    direction: np.ndarray,
    axis: np.ndarray,
    half_angle_deg: float,
    spacing_mm=(0.8, 0.8, 1.0),
    centre_mm: np.ndarray = CENTRE_MM,
) -> sitk.Image:
    """A ball of ``RADIUS_MM`` with a necrotic cap, voxelised on a grid of ``direction``."""
    spacing = np.asarray(spacing_mm, dtype=float)
    size = np.ceil(2 * (RADIUS_MM + 6) / spacing).astype(int)
    image = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    # origin so that the grid's centre sits on the ball's centre
    half_extent = (size - 1) / 2.0 * spacing
    image.SetOrigin([float(v) for v in centre_mm - np.asarray(direction) @ half_extent])
    k, j, i = np.indices(size[::-1])
    index = np.stack([i, j, k], axis=-1).reshape(-1, 3) * spacing
    points = index @ np.asarray(direction).T + np.asarray(image.GetOrigin())
    offset = points - centre_mm
    inside = np.linalg.norm(offset, axis=1) <= RADIUS_MM
    cap = offset @ axis >= RADIUS_MM * math.cos(math.radians(half_angle_deg))
    labels = np.where(inside, np.where(cap, 2, 1), 0).astype(np.uint8).reshape(size[::-1])
    result = sitk.GetImageFromArray(labels)
    result.CopyInformation(image)
    return result


@pytest.mark.parametrize(
    "direction_name, axis, half_angle_deg",
    [
        ("axial", SUPERIOR, 50.0),
        ("coronal", SUPERIOR, 65.0),
        ("oblique", SUPERIOR, 40.0),
        ("axial", ANTEROSUPERIOR, 60.0),
        ("coronal", ANTEROSUPERIOR, 70.0),
        ("oblique", ANTEROSUPERIOR, 55.0),
    ],
)
def test_cap_angles_match_the_analytic_arcs_in_any_scan_orientation(direction_name, axis, half_angle_deg):
    direction = {"axial": AXIAL, "coronal": CORONAL, "oblique": oblique()}[direction_name]
    spacing_mm = (0.8, 0.8, 1.0)
    result = combined_necrotic_angle(cap_phantom(direction, axis, half_angle_deg, spacing_mm))
    assert_arc_within_rim(result.coronal_angle_deg, axis, half_angle_deg, "coronal", spacing_mm)
    assert_arc_within_rim(result.sagittal_angle_deg, axis, half_angle_deg, "sagittal", spacing_mm)
    assert result.combined_angle_deg == result.coronal_angle_deg + result.sagittal_angle_deg
    assert np.allclose(result.head_centre_mm, CENTRE_MM, atol=0.5)
    assert result.head_radius_mm == pytest.approx(RADIUS_MM, abs=0.6)


def test_superior_cap_gives_four_half_angles_and_its_grade():
    result = combined_necrotic_angle(cap_phantom(oblique(), SUPERIOR, 67.0))
    assert result.combined_angle_deg == pytest.approx(268.0, abs=8.0)
    assert result.grade == 3
    assert result.risk == "high"


def test_a_finer_grid_comes_closer_to_the_analytic_angle():
    errors = []
    for spacing_mm in ((1.2, 1.2, 1.2), (0.5, 0.5, 0.5)):
        result = combined_necrotic_angle(cap_phantom(oblique(), SUPERIOR, 40.0, spacing_mm))
        errors.append(abs(result.combined_angle_deg - 160.0))
    assert errors[1] < errors[0]
    assert errors[1] <= 6.0


def test_anterosuperior_cap_is_smaller_on_the_coronal_plane_than_on_the_sagittal():
    result = combined_necrotic_angle(cap_phantom(AXIAL, ANTEROSUPERIOR, 60.0))
    # u projects to 1/sqrt(2) on the coronal plane: arc 2 acos(0.5 sqrt(2)) = 90 degrees, 120 sagittal
    assert result.coronal_angle_deg < result.sagittal_angle_deg - 20.0
    assert_arc_within_rim(result.coronal_angle_deg, ANTEROSUPERIOR, 60.0, "coronal", (0.8, 0.8, 1.0))
    assert result.sagittal_angle_deg == pytest.approx(120.0, abs=4.0)


def test_a_head_without_necrosis_has_no_necrotic_arc():
    labels = cap_phantom(AXIAL, SUPERIOR, 30.0)
    plain = sitk.Clamp(labels, sitk.sitkUInt8, 0, 1)
    result = combined_necrotic_angle(plain)
    assert result.combined_angle_deg == 0.0
    assert result.grade == 1 and result.risk == "low"


def test_deep_necrosis_away_from_the_surface_does_not_count():
    labels = cap_phantom(AXIAL, SUPERIOR, 30.0)
    array = sitk.GetArrayFromImage(labels)
    array[array == 2] = 1
    k, j, i = np.indices(array.shape)
    centre_index = np.array(array.shape) // 2
    core = (k - centre_index[0]) ** 2 + (j - centre_index[1]) ** 2 + (i - centre_index[2]) ** 2 <= 8**2
    array[core] = 2  # a ball 8 voxels across around the centre: 14 mm below the surface
    deep = sitk.GetImageFromArray(array)
    deep.CopyInformation(labels)
    assert combined_necrotic_angle(deep).combined_angle_deg == 0.0


def test_empty_label_has_no_angle():
    empty = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    assert combined_necrotic_angle(empty) is None


@pytest.mark.parametrize(
    "angle, grade, risk",
    [
        (0.0, 1, "low"),
        (190.0, 1, "low"),
        (199.9, 1, "moderate"),
        (200.0, 2, "moderate"),
        (239.9, 2, "moderate"),
        (240.0, 2, "high"),
        (249.9, 2, "high"),
        (250.0, 3, "high"),
        (299.9, 3, "high"),
        (300.0, 4, "high"),
        (720.0, 4, "high"),
    ],
)
def test_grades_and_risk_groups_follow_ha_et_al_2006(angle, grade, risk):
    assert kerboul_grade(angle) == grade
    assert collapse_risk(angle) == risk


@pytest.mark.parametrize("angle", [-1.0, 721.0, float("nan")])
def test_grade_refuses_impossible_angles(angle):
    with pytest.raises(ValueError, match="combined necrotic angle"):
        kerboul_grade(angle)


def test_head_components_separate_the_two_hips_of_a_bilateral_scan():
    one = cap_phantom(AXIAL, SUPERIOR, 50.0)
    array = sitk.GetArrayFromImage(one)
    both_array = np.concatenate([array, np.zeros_like(array), array], axis=2)
    both = sitk.GetImageFromArray(both_array)
    both.SetSpacing(one.GetSpacing())
    heads = head_components(both)
    assert len(heads) == 2
    for head in heads:
        assert combined_necrotic_angle(head).combined_angle_deg == pytest.approx(200.0, abs=10.0)
