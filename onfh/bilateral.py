"""Bilateral label maps: a scan showing both hips, split into one hip per side.

A scan's two hips are two patients' worth of grading: pooling both heads into one ratio
grades neither (truth A 14.7 % pooled, though each hip is B). A truth label map is
bilateral when its two largest head components are both head-sized and far apart. The
two hips are then separated by the plane midway between the two true head centres,
perpendicular to the line joining them: every voxel of the truth and of the prediction
belongs to the hip on its side. A predicted head is thus paired with the true head on
its side of the pelvis, whatever the prediction got wrong elsewhere.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from onfh.preprocessing import mask_centroid_mm

MIN_SECOND_HIP_FRACTION = 0.4  # the contralateral head is about as large as the first
MIN_HIP_SEPARATION_MM = 100.0  # adult head centres lie about 150-200 mm apart
PAIRING = (
    "bilateral truth cases are evaluated per hip: each hip is one true head and every voxel of "
    "truth and prediction on its side of the plane midway between the two true head centres"
)


def bilateral_sides(truth_array: np.ndarray, grid: sitk.Image) -> list[tuple[str, np.ndarray]] | None:
    """``[("right", mask), ("left", mask)]`` splitting ``grid`` into the two hips, or ``None``.

    Args:
        truth_array: the truth label map ``[z, y, x]`` (head = labels > 0).
        grid: its geometry (spacing, origin, direction).

    Returns:
        ``None`` for a one-hip truth; else a boolean ``[z, y, x]`` mask per side. Sides
        are the patient's (LPS: +x points to the patient's left).
    """
    head = np.asarray(truth_array) > 0
    if not head.any():
        return None
    image = sitk.GetImageFromArray(head.astype(np.uint8))
    image.CopyInformation(grid)
    labels = sitk.GetArrayFromImage(  # a copy: a view would outlive its temporary image
        sitk.RelabelComponent(sitk.ConnectedComponent(image), sortByObjectSize=True)
    )
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.size < 2 or sizes[1] < MIN_SECOND_HIP_FRACTION * sizes[0]:
        return None
    centres = [mask_centroid_mm(labels == k, grid) for k in (1, 2)]
    distance = float(np.linalg.norm(centres[1] - centres[0]))
    if distance < MIN_HIP_SEPARATION_MM:
        return None
    right, left = sorted(centres, key=lambda c: c[0])
    normal = (left - right) / distance
    midpoint = (left + right) / 2.0
    # Signed distance from the mid-plane is linear in the voxel index (x, y, z).
    direction = np.asarray(grid.GetDirection(), dtype=float).reshape(3, 3)
    per_index = normal @ direction @ np.diag(grid.GetSpacing())
    offset = float(normal @ (np.asarray(grid.GetOrigin(), dtype=float) - midpoint))
    z, y, x = (np.arange(n, dtype=float) for n in head.shape)
    signed = (
        offset
        + per_index[0] * x[np.newaxis, np.newaxis, :]
        + per_index[1] * y[np.newaxis, :, np.newaxis]
        + per_index[2] * z[:, np.newaxis, np.newaxis]
    )
    on_left = signed > 0
    return [("right", ~on_left), ("left", on_left)]
