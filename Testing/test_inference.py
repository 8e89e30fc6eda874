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
    right_centre = np.asarray(HEAD_CENTRE_MM) - np.array([80.0, 0.0, 0.0])
    image, truth = phantom(
        DIRECTIONS["oblique"],
        spacing_mm=(1.8, 1.5, 1.5),
        size=(130, 70, 60),
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
    assert sides["left"].necrosis_voxels == pytest.approx(sides["right"].necrosis_voxels, rel=0.1)
    assert sides["left"].head_voxels + sides["right"].head_voxels == np.count_nonzero(predicted)


def test_unilateral_scan_has_one_head_without_a_side():
    image, _ = phantom(DIRECTIONS["axial"])
    result = segment(image)
    assert len(result.heads) == 1 and result.heads[0].side is None
