"""When the localised "head" is not head-shaped, the inference looks elsewhere or flags the result."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from model_fixtures import threshold_segment

SPACING_MM = (1.5, 1.5, 1.5)
SIZE = (150, 110, 80)  # 225 x 165 x 120 mm
ORIGIN_MM = -(np.asarray(SIZE) - 1) / 2.0 * np.asarray(SPACING_MM)
HEAD_CENTRE_MM = np.array([40.0, 0.0, 0.0])
HEAD_RADIUS_MM = 23.0


def _points_mm() -> np.ndarray:
    """Physical (x, y, z) of every voxel, as a ``[z, y, x, 3]`` array."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in SIZE[::-1]], indexing="ij"), axis=-1)
    return ORIGIN_MM + index[..., ::-1] * np.asarray(SPACING_MM)


def _slab_mask() -> np.ndarray:
    """A 30 x 90 x 80 mm slab centred 85 mm from the head: larger than the head, and not round."""
    x, y, z = np.moveaxis(_points_mm(), -1, 0)
    return (np.abs(x + 45.0) < 15.0) & (np.abs(y) < 45.0) & (np.abs(z) < 40.0)


def _image(with_head: bool = True) -> sitk.Image:
    """The bright slab of "muscle" and, optionally, a bright ball the size of a femoral head."""
    points = _points_mm()
    values = np.full(points.shape[:3], 20.0, dtype=np.float32)
    if with_head:
        values[np.linalg.norm(points - HEAD_CENTRE_MM, axis=-1) <= HEAD_RADIUS_MM] = 120.0
    values[_slab_mask()] = 120.0
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(SPACING_MM)
    image.SetOrigin(ORIGIN_MM.tolist())
    return image


def test_a_larger_muscle_slab_is_rejected_and_the_head_is_found_among_the_candidates():
    result, _ = threshold_segment(_image())
    assert len(result.heads) == 1
    head = result.heads[0]
    assert head.check.passed, head.check.reasons
    assert head.check.source == "localiser candidate 2"
    assert np.linalg.norm(np.asarray(head.crop_centre_mm) - HEAD_CENTRE_MM) < 3.0
    assert head.check.radius_mm == pytest.approx(HEAD_RADIUS_MM, abs=1.5)
    assert result.quality["passed"] is True
    label = sitk.GetArrayFromImage(result.label)
    assert label.any()
    assert not label[_slab_mask()].any()


def test_only_a_slab_is_returned_with_a_low_confidence_flag_after_a_whole_image_search():
    result, stages = threshold_segment(_image(with_head=False))
    assert result.quality["passed"] is False
    assert result.quality["summary"].startswith("low confidence: ")
    assert "sphere" in result.quality["summary"]
    assert any(stage.startswith("search whole image") for stage in stages)
    assert all(not head.check.passed for head in result.heads)
