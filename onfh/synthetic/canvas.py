"""Rasterising signed distance shapes: coarse-to-fine evaluation and partial-volume painting.

Image shapes are evaluated on every second voxel and interpolated (signed distances are
smooth, so this is accurate and eight times cheaper); label shapes are evaluated exactly at
every voxel centre of their small box. Partial volume comes from a one-voxel linear ramp
across each signed distance's zero level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onfh.synthetic.geometry import Box, Frame, Grid, box_for_local_bounds, local_coords_box
from onfh.synthetic.shapes import Shape

MIXED = 255  # tissue-map value of voxels shared by several tissues


def upsample2(coarse: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear upsampling by 2 of samples taken at even indices, cropped to ``shape``.

    ``coarse`` must hold ``n // 2 + 1`` samples along each axis of length ``n``.
    """
    out = coarse
    for axis in (2, 1, 0):
        n = shape[axis]
        take = [slice(None)] * 3
        target_shape = list(out.shape)
        target_shape[axis] = n
        result = np.empty(target_shape, dtype=np.float32)
        n_even, n_odd = (n + 1) // 2, n // 2
        take[axis] = slice(0, n, 2)
        source = [slice(None)] * 3
        source[axis] = slice(0, n_even)
        result[tuple(take)] = out[tuple(source)]
        if n_odd:
            take[axis] = slice(1, n, 2)
            left, right = [slice(None)] * 3, [slice(None)] * 3
            left[axis], right[axis] = slice(0, n_odd), slice(1, n_odd + 1)
            mid = out[tuple(left)] + out[tuple(right)]
            mid *= np.float32(0.5)
            result[tuple(take)] = mid
        out = result
    return out


def _coarse_box(box: Box) -> Box:
    """The box extended so that stride-2 sampling has one sample past each end."""
    stop = tuple(start + 2 * (n // 2) + 1 for start, n in zip(box.start, box.shape))
    return Box(box.start, stop)


def evaluate(shape: Shape, grid: Grid, frame: Frame, box: Box | None = None) -> tuple[Box, np.ndarray] | None:
    """Signed distance of ``shape`` over its index box (or ``box``), from a stride-2 grid.

    Signed distances are smooth away from creases, so trilinear interpolation from every
    second voxel is accurate to hundredths of a millimetre for the curvatures of bones
    and soft tissue, at an eighth of the cost. Labels never come from here: they use
    :func:`evaluate_exact`.

    Returns:
        (box, float32 array of the box's shape), or ``None`` when the shape misses the grid.
    """
    if box is None:
        box = box_for_local_bounds(grid, frame, shape.low_mm, shape.high_mm)
        if box is None:
            return None
    coarse = shape(*local_coords_box(grid, frame, _coarse_box(box), stride=2))
    return box, upsample2(np.asarray(coarse, dtype=np.float32), box.shape)


def evaluate_coarse(fn, grid: Grid, frame: Frame, box: Box) -> np.ndarray:
    """A slowly varying field (textures, factors) interpolated from every second voxel."""
    coarse = np.asarray(fn(*local_coords_box(grid, frame, _coarse_box(box), stride=2)), dtype=np.float32)
    return upsample2(coarse, box.shape)


def evaluate_coarse_fields(fn, grid: Grid, frame: Frame, box: Box) -> list[np.ndarray]:
    """Several fields computed together by ``fn`` (returning a tuple), each interpolated."""
    fields = fn(*local_coords_box(grid, frame, _coarse_box(box), stride=2))
    return [upsample2(np.asarray(f, dtype=np.float32), box.shape) for f in fields]


def evaluate_exact(shape: Shape, grid: Grid, frame: Frame, box: Box) -> np.ndarray:
    """Signed distance of ``shape`` on every voxel of ``box`` (no coarse shortcut)."""
    return shape(*local_coords_box(grid, frame, box)).astype(np.float32, copy=False)


def fraction(sdf: np.ndarray, ramp_mm: float, level_mm: float = 0.0) -> np.ndarray:
    """Partial-volume fraction inside the level set: 1 deep inside, 0 outside, linear across a voxel."""
    out = np.float32(0.5 + level_mm / ramp_mm) - sdf * np.float32(1.0 / ramp_mm)
    return np.clip(out, 0.0, 1.0, out=out)


@dataclass
class Canvas:
    """The noise-free signal being painted, tissue by tissue, back to front.

    Painting a tissue of signal ``s`` with fraction ``f`` mixes it in as
    ``signal = (1 - f) signal + f s``: each voxel ends up the volume-weighted mean of the
    tissues it holds, which is what a voxel of a real scan records.
    """

    grid: Grid
    tissue_map: bool = False
    signal: np.ndarray = field(init=False)
    tissues: np.ndarray | None = field(init=False)
    dominant: np.ndarray | None = field(init=False)

    def __post_init__(self) -> None:
        self.signal = np.zeros(self.grid.shape_zyx, dtype=np.float32)
        self.tissues = np.zeros(self.grid.shape_zyx, dtype=np.uint8) if self.tissue_map else None
        # Label map for contrast-randomised training: 0 unpainted, else tissue id + 1 of the
        # tissue that holds most of the voxel (painting over half of it makes a tissue the
        # largest share, since later tissues are mixed in over earlier ones).
        self.dominant = np.zeros(self.grid.shape_zyx, dtype=np.uint8) if self.tissue_map else None

    def paint(self, box: Box, alpha: np.ndarray, value: float | np.ndarray, tissue_id: int) -> None:
        """Mix ``value`` (a number or a box-shaped array) into ``box`` with per-voxel fraction ``alpha``."""
        view = self.signal[box.slices]
        delta = (np.float32(value) if np.isscalar(value) else value) - view
        delta *= alpha
        view += delta
        if self.tissues is not None:
            tview = self.tissues[box.slices]
            tview[(alpha > 0.001) & (alpha < 0.999)] = MIXED
            tview[alpha >= 0.999] = tissue_id
            self.dominant[box.slices][alpha >= 0.5] = tissue_id + 1

    def paint_shape(
        self,
        shape: Shape,
        frame: Frame,
        value: float,
        tissue_id: int,
        within: tuple[Box, np.ndarray] | None = None,
    ) -> tuple[Box, np.ndarray] | None:
        """Paint a shape with a one-voxel partial-volume ramp; optionally only inside ``within``.

        ``within`` is a (box, fraction) pair (e.g. the marrow) that multiplies the shape's
        fraction, so a lesion never paints over cortex. Returns the shape's (box, sdf).
        """
        ramp = self.grid.ramp_mm
        if within is not None:
            box = within[0]
            evaluated = evaluate(shape, self.grid, frame, box=box)
        else:
            evaluated = evaluate(shape, self.grid, frame)
        if evaluated is None:
            return None
        box, sdf = evaluated
        alpha = fraction(sdf, ramp)
        if within is not None:
            alpha *= within[1]
        self.paint(box, alpha, value, tissue_id)
        return box, sdf
