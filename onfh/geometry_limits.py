"""The image geometries ``onfh`` accepts, checked from the header before any pixel is read.

A header can claim anything: a billion voxels (the reader would allocate them before
finding out the data are missing), 10 mm voxels (the localiser grid then covers metres
and the process is killed for memory), 0.001 mm voxels. Hip MRI is far from all of
these (DOMAIN.md: voxels about 0.6-0.8 x 0.6-0.8 x 1.0-1.5 mm, field of view 160-200 mm
unilateral, 320-400 mm bilateral), so the limits below are generous for real scans and
still refuse what no model here can segment. Pure functions on sizes and spacings; the
readers call them with the header's values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onfh.errors import OnfhError

# Every reader: 2^28 voxels (1 GiB as float32, the working type) is about five times a
# 512 x 512 x 200 bilateral scan; nothing larger is allocated from an unchecked header.
MAX_VOXELS = 1 << 28
# Segmentation inputs only (label files are graded at any voxel size):
MIN_VOXEL_EDGE_MM = 0.1  # finer than any MRI; usually a header in metres or a missing spacing
MAX_VOXEL_EDGE_MM = 4.0  # a 45 mm head is ~11 voxels across; the 1-3 mm reactive band vanishes
MAX_FIELD_OF_VIEW_MM = 700.0  # per axis: a bilateral pelvis is 320-400 mm; 700 holds any hip scan


def voxel_count_problem(size: Sequence[int], components: int = 1) -> str | None:
    """Why an image of ``size`` voxels (and ``components`` values each) is too large, or ``None``."""
    count = int(np.prod([int(n) for n in size], dtype=np.int64)) * max(int(components), 1)
    if count > MAX_VOXELS:
        shown = " x ".join(str(int(n)) for n in size)
        extra = f" x {components} components" if components > 1 else ""
        return f"image of {shown}{extra} voxels exceeds the limit of {MAX_VOXELS:,} voxels"
    return None


def segmentation_geometry_problem(size: Sequence[int], spacing_mm: Sequence[float]) -> str | None:
    """Why a 3D image of ``size`` voxels at ``spacing_mm`` cannot be segmented, or ``None``.

    Checks every voxel edge against ``MIN_VOXEL_EDGE_MM``-``MAX_VOXEL_EDGE_MM`` and the
    field of view (size times spacing) per axis against ``MAX_FIELD_OF_VIEW_MM``.
    """
    spacing = [float(s) for s in spacing_mm[:3]]
    shown = " x ".join(f"{s:g}" for s in spacing)
    if not all(np.isfinite(spacing)) or min(spacing) < MIN_VOXEL_EDGE_MM:
        return f"voxel size {shown} mm is below the limit of {MIN_VOXEL_EDGE_MM:g} mm per axis"
    if max(spacing) > MAX_VOXEL_EDGE_MM:
        return (
            f"voxel size {shown} mm exceeds the limit of {MAX_VOXEL_EDGE_MM:g} mm per axis "
            "(a 3D hip MRI has voxels of about 0.6-1.5 mm)"
        )
    extent = [int(n) * s for n, s in zip(size[:3], spacing)]
    if max(extent) > MAX_FIELD_OF_VIEW_MM:
        fov = " x ".join(f"{e:.0f}" for e in extent)
        return f"field of view {fov} mm exceeds the limit of {MAX_FIELD_OF_VIEW_MM:g} mm per axis"
    return voxel_count_problem(size)


def require_voxel_count(size: Sequence[int], components: int, path) -> None:
    """Raise ``OnfhError`` naming ``path`` when the image would exceed ``MAX_VOXELS``."""
    problem = voxel_count_problem(size, components)
    if problem:
        raise OnfhError(f"{path}: {problem}")


def require_segmentable_geometry(size: Sequence[int], spacing_mm: Sequence[float], path) -> None:
    """Raise ``OnfhError`` naming ``path`` and the limit when the geometry is out of range."""
    problem = segmentation_geometry_problem(size, spacing_mm)
    if problem:
        raise OnfhError(f"{path}: {problem}")
