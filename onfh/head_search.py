"""Where else to look when the localiser's head fails the sphere check.

The localiser can be wrong with confidence (a bright muscle belly on a contrast it never
saw). Two cheap sources of other crop centres, tried in this order by the inference:

1. the localiser's other candidates: every head-like component of its output, not only
   the ones it picked;
2. a whole-image search: the segmenter on a lattice of crops covering the field of view;
   each crop's largest head component is a candidate.

Pure functions of arrays and geometry; the :class:`onfh.inference.Segmenter` runs the
networks and the check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from onfh.preprocessing import mask_centroid_mm, physical_bounds

SEARCH_OVERLAP = 0.25  # neighbouring search crops share a quarter of their edge
MAX_SEARCH_CROPS = 64  # a whole pelvis at a coarser stride rather than minutes of search
MIN_CANDIDATE_VOLUME_MM3 = 8000.0  # a head cut by a crop's edge still shows this much
SAME_PLACE_MM = 25.0  # candidates closer than this are the same head


def candidate_centres(
    probabilities: np.ndarray, grid: sitk.Image, min_volume_mm3: float, limit: int = 6
) -> list[np.ndarray]:
    """Centroids (x, y, z mm) of every foreground component of at least ``min_volume_mm3``, largest first."""
    mask = np.argmax(probabilities, axis=0) > 0
    if not mask.any():
        return []
    components = sitk.RelabelComponent(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))), sortByObjectSize=True
    )
    labels = sitk.GetArrayViewFromImage(components)
    sizes = np.bincount(labels.ravel())[1:]
    voxel_mm3 = float(np.prod(grid.GetSpacing()))
    centres = []
    for index, size in enumerate(sizes[:limit]):
        if float(size) * voxel_mm3 < min_volume_mm3:
            break
        centres.append(mask_centroid_mm(labels == index + 1, grid))
    return centres


def search_lattice(
    image: sitk.Image, crop_extent_mm: Sequence[float], max_crops: int = MAX_SEARCH_CROPS
) -> list[np.ndarray]:
    """Crop centres (x, y, z mm) that tile the image's bounding box with overlapping crops.

    Neighbours overlap by ``SEARCH_OVERLAP`` of a crop; when that needs more than
    ``max_crops`` crops the stride grows until it does not (large fields of view).
    """
    lower, upper = physical_bounds(image)
    extent = np.asarray(crop_extent_mm, dtype=float)
    span = upper - lower
    stride = extent * (1.0 - SEARCH_OVERLAP)
    while True:
        counts = [max(1, math.ceil(max(s - e, 0.0) / st) + 1) for s, e, st in zip(span, extent, stride)]
        if int(np.prod(counts)) <= max_crops:
            break
        stride = stride * 1.15
    axes = []
    for low, high, e, count in zip(lower, upper, extent, counts):
        first, last = low + e / 2.0, high - e / 2.0
        axes.append([0.5 * (low + high)] if count == 1 or last <= first else np.linspace(first, last, count))
    return [np.array([x, y, z]) for z in axes[2] for y in axes[1] for x in axes[0]]


def distinct(centres: list[np.ndarray], taken: list[np.ndarray], min_distance_mm: float = SAME_PLACE_MM):
    """``centres`` without those within ``min_distance_mm`` of one already taken (or kept)."""
    kept: list[np.ndarray] = []
    for centre in centres:
        if all(np.linalg.norm(centre - other) >= min_distance_mm for other in [*taken, *kept]):
            kept.append(centre)
    return kept


CONTRALATERAL_DISTANCES_MM = (155.0, 190.0)  # adult head centres ~150-200 mm apart (a crop spans 80 mm)
CONTRALATERAL_MARGIN_MM = 25.0  # a head centred this far inside every edge is wholly in view


def contralateral_centres(
    image: sitk.Image,
    head_centre_mm: Sequence[float],
    distances_mm: Sequence[float] = CONTRALATERAL_DISTANCES_MM,
    margin_mm: float = CONTRALATERAL_MARGIN_MM,
) -> list[np.ndarray]:
    """Where the other femoral head would be, on either side along the patient's left-right
    (LPS x) axis, at the places that lie inside the field of view.

    Empty for a unilateral field of view: then the other hip is simply not imaged.
    """
    centre = np.asarray(head_centre_mm, dtype=float)
    size = np.asarray(image.GetSize(), dtype=float)
    margin_vox = margin_mm / np.asarray(image.GetSpacing(), dtype=float)
    places = []
    for distance in distances_mm:
        for sign in (1.0, -1.0):
            place = centre + np.array([sign * distance, 0.0, 0.0])
            index = np.asarray(image.TransformPhysicalPointToContinuousIndex(place.tolist()))
            if np.all(index >= margin_vox - 0.5) and np.all(index <= size - 0.5 - margin_vox):
                places.append(place)
    return places
