"""PNG previews (onfh.preview): physical coronal/sagittal cuts through the head, contours."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.preview import head_centre_mm, preview_slices, write_preview
from onfh.synthetic.geometry import rotation_matrix


def _ellipsoid_pair(direction: np.ndarray, centre_mm=(10.0, -20.0, 30.0)):
    """Image + label of an ellipsoid (semi-axes x 10, y 15, z 25 mm) on a grid with ``direction``.

    The object is defined in world millimetres, so any grid shows the same physical shape.
    """
    size, spacing = (90, 90, 90), (1.0, 1.0, 1.0)
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(tuple(direction.ravel()))
    half = (np.asarray(size) - 1) / 2.0
    image.SetOrigin(tuple(np.asarray(centre_mm) - direction @ (half * np.asarray(spacing))))
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in size), indexing="ij"), axis=-1).reshape(-1, 3)
    world = np.asarray(image.GetOrigin()) + idx @ (direction * np.asarray(spacing)).T
    rel = (world - np.asarray(centre_mm)) / np.array([10.0, 15.0, 25.0])
    inside = (rel**2).sum(axis=1) <= 1.0
    necrosis = inside & (world[:, 2] > centre_mm[2] + 15.0)
    values = np.where(necrosis, 2, np.where(inside, 1, 0)).reshape(size).transpose(2, 1, 0)
    label = sitk.GetImageFromArray(values.astype(np.uint8))
    label.CopyInformation(image)
    pixels = sitk.GetImageFromArray((100.0 * (values > 0) + 20.0).astype(np.float32))
    pixels.CopyInformation(image)
    return pixels, label


def _extent_mm(mask: np.ndarray, pixel_mm: float) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return (rows.max() - rows.min() + 1) * pixel_mm, (cols.max() - cols.min() + 1) * pixel_mm


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),  # coronal acquisition
        rotation_matrix([1.0, 2.0, 0.5], np.deg2rad(25.0)),  # oblique
    ],
    ids=["axial", "coronal", "oblique"],
)
def test_slices_are_physical_coronal_and_sagittal_whatever_the_direction(direction):
    image, label = _ellipsoid_pair(direction)
    cuts = preview_slices(image, label)
    assert np.allclose(cuts.centre_mm, (10.0, -20.0, 30.0 - 0.5), atol=1.5)
    # Coronal: rows run along z (50 mm), columns along x (20 mm); sagittal columns along y (30 mm).
    height, width = _extent_mm(cuts.coronal_labels > 0, cuts.pixel_mm)
    assert height == pytest.approx(50.0, abs=3.0) and width == pytest.approx(20.0, abs=3.0)
    height, depth = _extent_mm(cuts.sagittal_labels > 0, cuts.pixel_mm)
    assert height == pytest.approx(50.0, abs=3.0) and depth == pytest.approx(30.0, abs=3.0)
    # Superior is up: row 0 is the inferior end (drawn with origin="lower"), necrosis is the top cap.
    rows = np.nonzero(cuts.coronal_labels == 2)[0]
    assert rows.min() > cuts.coronal_labels.shape[0] // 2


def test_head_centre_prefers_the_head_with_necrosis():
    array = np.zeros((40, 40, 80), dtype=np.uint8)
    array[10:30, 10:30, 5:25] = 1  # bigger head, no lesion
    array[15:25, 15:25, 55:65] = 1
    array[22:25, 15:25, 55:65] = 2
    label = sitk.GetImageFromArray(array)
    centre = head_centre_mm(label)
    assert 55 <= centre[0] <= 65
    with pytest.raises(ValueError, match="no femoral head"):
        head_centre_mm(sitk.GetImageFromArray(np.zeros((5, 5, 5), dtype=np.uint8)))


def test_write_preview_with_and_without_prediction(tmp_path):
    import matplotlib.image

    image, label = _ellipsoid_pair(np.eye(3))
    truth_only = write_preview(image, label, tmp_path / "a" / "truth.png", title="truth")
    prediction = sitk.BinaryDilate(label > 0, [2, 2, 2])
    predicted = sitk.Cast(prediction, sitk.sitkUInt8)
    both = write_preview(image, label, tmp_path / "both.png", title="with prediction", prediction=predicted)
    first, second = matplotlib.image.imread(truth_only), matplotlib.image.imread(both)
    assert first.shape == second.shape and first.shape[2] in (3, 4)
    assert not np.array_equal(first, second)  # the prediction contours are drawn
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["both.png", "truth.png"]
