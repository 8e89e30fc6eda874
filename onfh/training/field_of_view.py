"""Random fields of view for the localiser: from a small unilateral box to the whole grid.

Hip MRIs range from a 150 mm box around one joint to a 400 mm pelvis. The localiser sees
the whole scan, so it must find the head wherever the scan's edge falls; training on the
phantoms' one field-of-view size teaches it where heads usually sit in the frame instead.
Cutting the ``inside`` mask to a random box marks the rest as outside the scan, which the
augmenter turns into the same lowest value inference gives voxels outside the scan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_EXTENT_MM = 130.0
MAX_EXTENT_MM = 300.0


def random_field_of_view(
    inside: np.ndarray,
    label: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    rng: np.random.Generator,
    min_extent_mm: float = MIN_EXTENT_MM,
    max_extent_mm: float = MAX_EXTENT_MM,
) -> np.ndarray:
    """``inside`` cut to a random box that still holds every labelled voxel.

    Args:
        inside: 1 where the grid lies inside the scan, ``[1, z, y, x]``.
        label: head mask on the same grid, ``[1, z, y, x]``; the box always contains it, so
            the truth never points outside the scan.
        spacing_zyx_mm: grid spacing (z, y, x).
        rng: decides the box.
        min_extent_mm, max_extent_mm: range of the box's edge along each axis.

    Returns:
        a new uint8 mask of ``inside``'s shape (``inside`` unchanged if there is no label).
    """
    found = np.argwhere(label[0] > 0)
    if found.size == 0:
        return inside.copy()
    shape = np.asarray(inside.shape[1:])
    spacing = np.asarray(spacing_zyx_mm, dtype=float)
    low_label, high_label = found.min(axis=0), found.max(axis=0) + 1
    extent = np.round(rng.uniform(min_extent_mm, max_extent_mm, size=3) / spacing).astype(int)
    extent = np.clip(np.maximum(extent, high_label - low_label), 1, shape)
    # The box's low corner may lie anywhere that keeps the labels inside it.
    first = np.maximum(high_label - extent, 0)
    last = np.minimum(low_label, shape - extent)
    start = np.array([int(rng.integers(a, b + 1)) if b >= a else int(a) for a, b in zip(first, last)])
    box = np.zeros_like(inside)
    z, y, x = start
    dz, dy, dx = extent
    box[0, z : z + dz, y : y + dy, x : x + dx] = 1
    return (inside * box).astype(np.uint8)
