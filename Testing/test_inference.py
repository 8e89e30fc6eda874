"""Tests for onfh.inference: geometry of the two-stage pipeline, model-agnostic.

A threshold "model" (Testing/model_fixtures.py) stands in for the networks, so these
tests check that crops, resampling and mapping back put every voxel where it belongs in
physical space, for any direction matrix, whatever a trained model would predict.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import (
    DIRECTIONS,
    HEAD_CENTRE_MM,
    ThresholdModel,
    phantom,
    rotation,
    threshold_model_config,
)

from onfh.errors import OnfhError
from onfh.inference import (
    Segmenter,
    keep_largest_head,
    largest_component,
    overlap_region,
    probabilities_to_label,
    require_field_of_view,
)
from onfh.metrics import dice
from onfh.preprocessing import axis_aligned_grid, label_centroid_mm


def segment(image, **model_kwargs):
    return Segmenter(ThresholdModel(**model_kwargs), threshold_model_config()).segment(image)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_output_overlays_the_input_in_physical_space(name):
    image, truth = phantom(DIRECTIONS[name])
    result = segment(image)
    predicted = sitk.GetArrayFromImage(result.label)
    expected = sitk.GetArrayFromImage(truth)
    assert result.label.GetSize() == image.GetSize()
    assert result.label.GetDirection() == image.GetDirection()
    assert result.label.GetOrigin() == image.GetOrigin()
    assert dice(predicted > 0, expected > 0) > 0.96
    assert dice(predicted == 2, expected == 2) > 0.9
    assert np.allclose(label_centroid_mm(result.label), label_centroid_mm(truth), atol=0.5)
    assert np.allclose(result.head_centre_mm, HEAD_CENTRE_MM, atol=4.0)


def test_anisotropic_thick_slices_still_overlay():
    image, truth = phantom(DIRECTIONS["coronal"], spacing_mm=(0.6, 0.6, 3.0), size=(140, 140, 24))
    result = segment(image)
    predicted = sitk.GetArrayFromImage(result.label)
    assert dice(predicted > 0, sitk.GetArrayFromImage(truth) > 0) > 0.93


def test_off_target_localiser_is_corrected_by_recentring_the_crop():
    image, truth = phantom(DIRECTIONS["axial"])
    # The localiser's head appears 3 coarse voxels (12 mm) away along x: the crop is off.
    result = segment(image, localiser_roll=(0, 0, 3))
    assert abs(result.head_centre_mm[0] - HEAD_CENTRE_MM[0]) > 8.0
    assert np.allclose(result.crop_centre_mm, label_centroid_mm(truth), atol=2.0)
    predicted = sitk.GetArrayFromImage(result.label)
    assert dice(predicted > 0, sitk.GetArrayFromImage(truth) > 0) > 0.96


def test_field_of_view_without_a_hip_is_a_clear_error():
    image, _ = phantom(DIRECTIONS["axial"], scale=0.3)  # a 10 mm blob, not a femoral head
    with pytest.raises(OnfhError, match="no femoral head found"):
        segment(image)


def test_probabilities_outside_the_input_map_to_an_empty_label():
    reference = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    far_away = axis_aligned_grid((500.0, 500.0, 500.0), (1.0, 1.0, 1.0), (8, 8, 8))
    assert overlap_region(reference, far_away) is None
    probabilities = np.zeros((3, 8, 8, 8), dtype=np.float32)
    probabilities[2] = 1.0
    assert not probabilities_to_label(probabilities, far_away, reference).any()


def test_probabilities_are_interpolated_then_arg_maxed_on_the_input_grid():
    reference = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    reference.SetSpacing((0.5, 0.5, 0.5))
    grid = axis_aligned_grid((5.0, 5.0, 5.0), (1.0, 1.0, 1.0), (6, 6, 6))
    probabilities = np.zeros((3, 6, 6, 6), dtype=np.float32)
    probabilities[0] = 1.0
    probabilities[:, 2:4, 2:4, 2:4] = [[[[0.0]]], [[[0.4]]], [[[0.6]]]]
    label = probabilities_to_label(probabilities, grid, reference)
    # The block of crop voxels 2..3 spans 3.5-5.5 mm centres; necrosis wins where probability > 0.5.
    assert set(np.unique(label)) == {0, 2}
    points = np.argwhere(label == 2) * 0.5
    assert points.min() >= 3.0 and points.max() <= 6.0


@pytest.mark.parametrize("name", ["axial", "oblique"])
def test_mapping_back_only_near_foreground_equals_mapping_the_whole_crop(name):
    """Skipping crop voxels with all foreground probabilities < 0.3 must not change one label."""
    rng = np.random.default_rng(4)
    reference = sitk.Image([60, 56, 40], sitk.sitkUInt8)
    reference.SetSpacing((0.7, 0.8, 1.1))
    reference.SetDirection(DIRECTIONS[name].ravel().tolist())
    reference.SetOrigin((-20.0, -18.0, -15.0))
    grid = axis_aligned_grid((1.0, 2.0, 3.0), (1.25, 1.25, 1.25), (24, 24, 24))
    z, y, x = np.meshgrid(*[np.arange(24)] * 3, indexing="ij")
    distance = np.sqrt((z - 10.0) ** 2 + (y - 14.5) ** 2 + (x - 14.0) ** 2)
    head = 1.0 / (1.0 + np.exp(distance - 7.0)) + rng.uniform(0, 0.05, distance.shape)
    lesion = 1.0 / (1.0 + np.exp(np.sqrt((z - 7.0) ** 2 + (y - 12.0) ** 2 + (x - 11.0) ** 2) - 4.0))
    foreground = np.clip(head, 0.0, 0.999)
    probabilities = np.stack([1.0 - foreground, foreground * (1.0 - lesion), foreground * lesion])
    # An undecided block far from the head, every voxel a permutation of (0.34, 0.333, 0.327),
    # tests the bound itself: there voxels are foreground with probabilities just above 1/3.
    triplets = np.array([0.34, 0.333, 0.327])[np.argsort(rng.uniform(size=(3, 4, 4, 4)), axis=0)]
    probabilities[:, 19:23, 1:5, 1:5] = triplets
    probabilities = probabilities.astype(np.float32)
    # Reference: every foreground channel resampled onto the whole reference grid, then arg-max.
    channels = []
    for channel in probabilities[1:]:
        image = sitk.GetImageFromArray(channel)
        image.CopyInformation(grid)
        resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        channels.append(sitk.GetArrayFromImage(resampled))
    expected = np.argmax(np.stack([1.0 - np.sum(channels, axis=0), *channels]), axis=0)
    label = probabilities_to_label(probabilities, grid, reference)
    assert np.count_nonzero(expected == 2) > 100 and np.count_nonzero(expected == 1) > 1000
    assert np.array_equal(label, expected)


def test_keep_largest_head_removes_stray_necrosis_and_fragments():
    label = np.zeros((20, 20, 20), dtype=np.uint8)
    label[2:12, 2:12, 2:12] = 1
    label[4:8, 4:8, 4:8] = 2
    label[15:18, 15:18, 15:18] = 2  # necrosis outside the head
    label[15:17, 2:4, 2:4] = 1  # a small fragment
    kept = keep_largest_head(label)
    assert np.count_nonzero(kept == 2) == 64
    assert np.count_nonzero(kept) == 1000
    assert not largest_component(np.zeros((3, 3, 3), dtype=bool)).any()


def test_tiny_field_of_view_is_refused_before_localising():
    with pytest.raises(OnfhError, match=r"field of view 30 x 30 x 30 mm is too small"):
        require_field_of_view(sitk.Image([30, 30, 30], sitk.sitkFloat32))
    thin_slab, _ = phantom(DIRECTIONS["axial"], size=(96, 96, 20), spacing_mm=(0.8, 0.8, 1.0))
    with pytest.raises(OnfhError, match="too small"):
        segment(thin_slab)
    require_field_of_view(thin_slab, min_extent_mm=10.0)


def test_bilateral_scan_segments_both_heads_and_names_their_sides():
    right_centre = np.asarray(HEAD_CENTRE_MM) - np.array([160.0, 0.0, 0.0])
    image, truth = phantom(
        rotation(2, 12) @ rotation(0, 20),
        spacing_mm=(1.8, 1.5, 1.5),
        size=(140, 70, 60),
        second_head_centre_mm=right_centre,
    )
    result = segment(image)
    predicted = sitk.GetArrayFromImage(result.label)
    expected = sitk.GetArrayFromImage(truth)
    assert dice(predicted > 0, expected > 0) > 0.95
    assert dice(predicted == 2, expected == 2) > 0.85
    assert len(result.heads) == 2
    sides = {head.side: head for head in result.heads}
    assert set(sides) == {"left", "right"}
    # LPS +x is the patient's left: the head at HEAD_CENTRE_MM is the left one.
    assert np.allclose(sides["left"].centre_mm, HEAD_CENTRE_MM, atol=4.0)
    assert np.allclose(sides["right"].centre_mm, right_centre, atol=4.0)
    # Each side's voxel counts match the truth on that side of the mid-sagittal plane.
    midline_x = (HEAD_CENTRE_MM[0] + right_centre[0]) / 2.0
    indices = np.argwhere(expected > 0)
    x_mm = np.array([image.TransformIndexToPhysicalPoint(i[::-1].tolist())[0] for i in indices])
    is_necrosis = expected[tuple(indices.T)] == 2
    for side, on_side in (("left", x_mm > midline_x), ("right", x_mm < midline_x)):
        assert sides[side].head_voxels == pytest.approx(int(on_side.sum()), rel=0.05)
        assert sides[side].necrosis_voxels == pytest.approx(int((on_side & is_necrosis).sum()), rel=0.1)


def test_unilateral_scan_has_one_head_without_a_side():
    image, _ = phantom(DIRECTIONS["axial"])
    result = segment(image)
    assert len(result.heads) == 1 and result.heads[0].side is None


def coarse_probabilities_with_blobs(blobs: list[tuple[tuple[int, int, int], int]]):
    """Localiser-like probabilities on a 4 mm grid with cubic 'head' blobs (index of corner, edge)."""
    grid = axis_aligned_grid((0.0, 0.0, 0.0), (4.0, 4.0, 4.0), (64, 32, 32))
    head = np.zeros((32, 32, 64), dtype=np.float32)
    for (x, y, z), edge in blobs:
        head[z : z + edge, y : y + edge, x : x + edge] = 1.0
    return np.stack([1.0 - head, head]), grid


def test_localiser_keeps_a_second_head_only_if_large_and_far_enough():
    from onfh.inference import localise_heads

    # Two 28 mm cubes 160 mm apart: a bilateral scan.
    probabilities, grid = coarse_probabilities_with_blobs([((5, 10, 10), 7), ((45, 10, 10), 7)])
    assert len(localise_heads(probabilities, grid)) == 2
    # The second blob is close to the first (acetabulum-like false positive): one head.
    probabilities, grid = coarse_probabilities_with_blobs([((5, 10, 10), 7), ((15, 10, 10), 7)])
    assert len(localise_heads(probabilities, grid)) == 1
    # The second blob is small: one head, and the largest comes first.
    probabilities, grid = coarse_probabilities_with_blobs([((5, 10, 10), 3), ((45, 10, 10), 7)])
    centres = localise_heads(probabilities, grid)
    assert len(centres) == 1
    assert np.allclose(centres[0], grid.TransformContinuousIndexToPhysicalPoint((48.0, 13.0, 13.0)))
    assert (
        len(
            localise_heads(
                *coarse_probabilities_with_blobs([((5, 10, 10), 7), ((45, 10, 10), 7)]), max_heads=1
            )
        )
        == 1
    )
