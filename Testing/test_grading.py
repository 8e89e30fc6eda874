"""Grading engine: analytic shapes, cut-offs, edge cases (onfh/grading.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onfh.grading import (
    GradeResult,
    grade_from_voxel_counts,
    grade_label_map,
    grade_masks,
    is_borderline,
    mask_volume_mm3,
    necrosis_ratio,
    steinberg_grade,
    voxel_volume_mm3,
)

HEAD_RADIUS_MM = 24.0  # a 48 mm femoral head


def voxel_centres_mm(shape_zyx, spacing_xyz):
    """Physical (x, y, z) coordinates of voxel centres, centred on the grid."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape_zyx[::-1], spacing_xyz)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return x.transpose(2, 1, 0), y.transpose(2, 1, 0), z.transpose(2, 1, 0)


def grid_for(spacing_xyz, margin_mm=3.0):
    return tuple(math.ceil(2 * (HEAD_RADIUS_MM + margin_mm) / s) for s in spacing_xyz[::-1])


def head_and_cap(spacing_xyz, cap_height_mm, direction=(0.3, 0.5, 0.81)):
    """Sphere 'head' and a spherical-cap 'lesion' cut by a plane normal to ``direction``."""
    x, y, z = voxel_centres_mm(grid_for(spacing_xyz), spacing_xyz)
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    head = x**2 + y**2 + z**2 <= HEAD_RADIUS_MM**2
    cap = head & (x * d[0] + y * d[1] + z * d[2] > HEAD_RADIUS_MM - cap_height_mm)
    return head, cap


def head_and_wedge(spacing_xyz, angle_rad):
    """Sphere 'head' and a wedge 'lesion' (dihedral angle around the z axis)."""
    x, y, z = voxel_centres_mm(grid_for(spacing_xyz), spacing_xyz)
    head = x**2 + y**2 + z**2 <= HEAD_RADIUS_MM**2
    phi = np.mod(np.arctan2(y, x), 2 * np.pi)
    return head, head & (phi < angle_rad)


def sphere_volume_mm3(r):
    return 4.0 / 3.0 * math.pi * r**3


def cap_volume_mm3(r, h):
    return math.pi * h**2 * (3 * r - h) / 3.0


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 1.0), (0.85, 1.2, 0.9)])
@pytest.mark.parametrize("cap_height_mm", [6.0, 12.0, 20.0])
def test_sphere_with_cap_matches_analytic_volumes(spacing, cap_height_mm):
    head, cap = head_and_cap(spacing, cap_height_mm)
    result = grade_masks(head, cap, spacing)
    analytic_head = sphere_volume_mm3(HEAD_RADIUS_MM)
    analytic_cap = cap_volume_mm3(HEAD_RADIUS_MM, cap_height_mm)
    assert result.head_volume_mm3 == pytest.approx(analytic_head, rel=0.01)
    assert result.necrosis_volume_mm3 == pytest.approx(analytic_cap, rel=0.03)
    exact_ratio = np.count_nonzero(cap) / np.count_nonzero(head)
    assert abs(result.ratio - exact_ratio) < 0.001
    # The analytic ratio only within what the grid resolves (a voxel layer over the cap face).
    assert result.ratio == pytest.approx(analytic_cap / analytic_head, abs=0.01)
    assert result.grade == steinberg_grade(analytic_cap / analytic_head)


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 1.0), (0.85, 1.2, 0.9)])
@pytest.mark.parametrize("fraction", [0.10, 0.22, 0.40])
def test_sphere_with_wedge_matches_analytic_ratio(spacing, fraction):
    head, wedge = head_and_wedge(spacing, 2 * math.pi * fraction)
    result = grade_masks(head, wedge, spacing)
    assert result.head_volume_mm3 == pytest.approx(sphere_volume_mm3(HEAD_RADIUS_MM), rel=0.01)
    assert abs(result.ratio - np.count_nonzero(wedge) / np.count_nonzero(head)) < 0.001
    assert result.ratio == pytest.approx(fraction, abs=0.01)
    assert result.grade == {0.10: "A", 0.22: "B", 0.40: "C"}[fraction]


def test_overlapping_and_exclusive_segments_grade_the_same():
    spacing = (0.7, 0.7, 1.0)
    head, cap = head_and_cap(spacing, 12.0)
    overlapping = grade_masks(head, cap, spacing)
    exclusive = grade_masks(head & ~cap, cap, spacing)
    assert exclusive.head_volume_mm3 == overlapping.head_volume_mm3
    assert exclusive.ratio == overlapping.ratio


def test_necrosis_outside_head_enlarges_head():
    head = np.zeros((10, 10, 10), bool)
    head[:5] = True
    necrosis = np.zeros_like(head)
    necrosis[4:6] = True  # half inside, half outside the head
    result = grade_masks(head, necrosis, (1, 1, 1))
    assert result.head_volume_mm3 == 600.0
    assert result.necrosis_volume_mm3 == 200.0
    assert result.ratio == pytest.approx(200 / 600)


@pytest.mark.parametrize(
    "ratio, grade, borderline",
    [
        (0.0, "A", False),
        (0.1499, "A", True),
        (0.15, "B", True),
        (0.2, "B", False),
        (0.30, "B", True),
        (0.3001, "C", True),
        (0.5, "C", False),
        (1.0, "C", False),
    ],
)
def test_steinberg_cutoffs(ratio, grade, borderline):
    assert steinberg_grade(ratio) == grade
    assert is_borderline(ratio) is borderline


@pytest.mark.parametrize("necrosis_voxels, grade", [(1499, "A"), (1500, "B"), (3000, "B"), (3001, "C")])
def test_cutoffs_from_voxel_counts_are_not_rounded(necrosis_voxels, grade):
    result = grade_from_voxel_counts(10000, necrosis_voxels, (0.7, 0.7, 1.0))
    assert result.ratio == necrosis_voxels / 10000
    assert result.grade == grade


def test_borderline_margin_is_two_points():
    assert is_borderline(0.13)
    assert not is_borderline(0.129)
    assert is_borderline(0.32)
    assert not is_borderline(0.321)


def test_empty_head_gives_no_grade_and_a_reason():
    empty = np.zeros((4, 4, 4), bool)
    result = grade_masks(empty, empty, (1, 1, 1))
    assert result.ratio is None and result.grade is None
    assert "empty" in result.reason
    assert result.to_dict()["steinberg_grade"] is None


def test_empty_necrosis_is_grade_a():
    head = np.ones((4, 4, 4), bool)
    result = grade_masks(head, np.zeros_like(head), (1, 1, 1))
    assert (result.ratio, result.grade) == (0.0, "A")


@pytest.mark.parametrize(
    "spacing", [(0, 1, 1), (1, -1, 1), (1, 1), (1, float("nan"), 1), (1, float("inf"), 1)]
)
def test_invalid_spacing_is_a_clear_error(spacing):
    with pytest.raises(ValueError, match="spacing"):
        grade_masks(np.ones((2, 2, 2), bool), np.zeros((2, 2, 2), bool), spacing)


def test_non_binary_mask_is_an_error_naming_the_values():
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[0, 0, 0] = 2
    with pytest.raises(ValueError, match=r"binary.*2"):
        grade_masks(labels, np.zeros_like(labels), (1, 1, 1))


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="shape"):
        grade_masks(np.ones((3, 3, 3), bool), np.zeros((3, 3, 4), bool), (1, 1, 1))


def test_2d_mask_is_an_error():
    with pytest.raises(ValueError, match="3D"):
        grade_masks(np.ones((3, 3), bool), np.ones((3, 3), bool), (1, 1, 1))


def test_label_map_grading_matches_masks():
    spacing = (0.85, 1.2, 0.9)
    head, cap = head_and_cap(spacing, 10.0)
    labels = head.astype(np.uint8)
    labels[cap] = 2
    assert grade_label_map(labels, spacing) == grade_masks(head, cap, spacing)


def test_volumes_in_ml_and_helpers():
    mask = np.ones((10, 10, 10), bool)
    assert voxel_volume_mm3((0.7, 0.7, 1.0)) == pytest.approx(0.49)
    assert mask_volume_mm3(mask, (1, 1, 1)) == 1000.0
    result = grade_masks(mask, mask, (1, 1, 1))
    assert isinstance(result, GradeResult)
    assert result.head_volume_ml == 1.0
    assert necrosis_ratio(mask, mask, (1, 1, 1)) == 1.0


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_ratio_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError):
        steinberg_grade(bad)


def test_slab_counting_matches_naive_counts_on_random_labelmaps():
    from onfh.grading import count_label_values, count_pair

    rng = np.random.default_rng(7)
    a = rng.integers(0, 4, size=(37, 64, 70), dtype=np.uint8)
    a[:10] = 0  # empty slabs are skipped, not miscounted
    b = rng.integers(0, 3, size=a.shape, dtype=np.uint8)
    assert count_label_values(a, [1, 3]) == {1: np.count_nonzero(a == 1), 3: np.count_nonzero(a == 3)}
    expected = (np.count_nonzero(a == 2), np.count_nonzero(b == 1), np.count_nonzero((a == 2) & (b == 1)))
    assert count_pair(a, 2, b, 1) == expected
    # Non-contiguous windows (overlap of two layers with different extents) count the same.
    assert count_pair(a[5:30, 3:40, 10:60], 2, b[5:30, 3:40, 10:60], 1)[2] == np.count_nonzero(
        (a[5:30, 3:40, 10:60] == 2) & (b[5:30, 3:40, 10:60] == 1)
    )
    with pytest.raises(ValueError, match="shape"):
        count_pair(a, 1, b[:5], 1)
