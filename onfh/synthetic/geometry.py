"""Image grids, anatomical frames, direction matrices and index boxes.

The phantom is described in millimetres in anatomical frames (a hip frame centred on the
femoral head: lateral, anterior, superior) and sampled on an image grid whose direction
matrix is random, exactly as a scanner would place an axial, coronal, sagittal or oblique slab.
Rendering only touches the index box that can hold a structure, which keeps a 256x256x120
case within a few seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Drawn at random for every case. Sagittal slabs came later and are made only when asked
# for (``orientation="sagittal"``): adding them to the draw would change every seed's image.
ORIENTATIONS = ("axial", "coronal", "oblique")
ACQUISITION_ORIENTATIONS = (*ORIENTATIONS, "sagittal")


@dataclass(frozen=True)
class Grid:
    """A 3D image lattice in world (LPS) millimetres, in SimpleITK conventions.

    Attributes:
        size: voxels along the index axes (x, y, z).
        spacing_mm: voxel size along the index axes.
        direction: 3x3 matrix whose column ``c`` is the world direction of index axis ``c``.
        origin_mm: world position of voxel (0, 0, 0).
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    direction: np.ndarray
    origin_mm: np.ndarray

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """The numpy array shape (z, y, x) of an image on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def index_to_world(self) -> np.ndarray:
        """3x3 matrix taking an (x, y, z) index offset to a world offset in mm."""
        return self.direction * np.asarray(self.spacing_mm, dtype=float)[None, :]

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel."""
        return float(np.prod(self.spacing_mm))

    @property
    def ramp_mm(self) -> float:
        """Width of the partial-volume ramp: a voxel's mean extent across a random surface."""
        return 0.5 * float(sum(self.spacing_mm))

    def world_to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Continuous (x, y, z) indices of world points (N x 3)."""
        inverse = np.linalg.inv(self.index_to_world)
        return (np.asarray(points_mm, dtype=float) - self.origin_mm) @ inverse.T

    def index_to_world_points(self, index_xyz: np.ndarray) -> np.ndarray:
        """World points (N x 3) of continuous (x, y, z) indices."""
        return self.origin_mm + np.asarray(index_xyz, dtype=float) @ self.index_to_world.T

    @property
    def centre_world_mm(self) -> np.ndarray:
        """World position of the grid centre."""
        return self.index_to_world_points((np.asarray(self.size, dtype=float) - 1.0) / 2.0)

    @property
    def extent_mm(self) -> np.ndarray:
        """Field of view along each index axis."""
        return np.asarray(self.size, dtype=float) * np.asarray(self.spacing_mm, dtype=float)


def centred_grid(
    size: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    direction: np.ndarray,
    centre_world_mm: np.ndarray,
) -> Grid:
    """A grid of ``size`` and ``spacing_mm`` whose centre sits at ``centre_world_mm``."""
    direction = np.asarray(direction, dtype=float)
    matrix = direction * np.asarray(spacing_mm, dtype=float)[None, :]
    half = (np.asarray(size, dtype=float) - 1.0) / 2.0
    origin = np.asarray(centre_world_mm, dtype=float) - matrix @ half
    return Grid(tuple(int(s) for s in size), tuple(float(s) for s in spacing_mm), direction, origin)


@dataclass(frozen=True)
class Frame:
    """A rigid anatomical frame: local = axes @ (world - origin).

    ``axes`` rows are the local axes in world coordinates; for a hip frame they are
    (lateral, anterior, superior), so a right hip's frame is a mirror image of a left one
    and one anatomy description serves both sides.
    """

    origin_mm: np.ndarray
    axes: np.ndarray

    def to_world(self, local_mm: np.ndarray) -> np.ndarray:
        """World coordinates of local points (N x 3)."""
        return self.origin_mm + np.asarray(local_mm, dtype=float) @ self.axes

    def rotated(self, rotation: np.ndarray) -> Frame:
        """The same origin with local axes turned by ``rotation`` (local coordinates)."""
        return Frame(self.origin_mm, np.asarray(rotation, dtype=float) @ self.axes)

    def affine_from_index(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) with local = A @ index_xyz + b for points of ``grid``."""
        a = self.axes @ grid.index_to_world
        b = self.axes @ (grid.origin_mm - self.origin_mm)
        return a, b


@dataclass(frozen=True)
class Box:
    """An index box [start, stop) per axis, stored in numpy (z, y, x) order."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Slices selecting the box from a (z, y, x) array."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (z, y, x) of the box."""
        return tuple(b - a for a, b in zip(self.start, self.stop))


def box_for_local_bounds(
    grid: Grid, frame: Frame, low_mm: np.ndarray, high_mm: np.ndarray, pad_voxels: int = 2
) -> Box | None:
    """The index box holding the local axis-aligned box [low, high]; ``None`` if off the grid."""
    low, high = np.asarray(low_mm, dtype=float), np.asarray(high_mm, dtype=float)
    corners = np.array([[(high if (k >> a) & 1 else low)[a] for a in range(3)] for k in range(8)])
    index = grid.world_to_index(frame.to_world(corners))
    lo_xyz = np.floor(index.min(axis=0)).astype(int) - pad_voxels
    hi_xyz = np.ceil(index.max(axis=0)).astype(int) + pad_voxels + 1
    lo_xyz = np.maximum(lo_xyz, 0)
    hi_xyz = np.minimum(hi_xyz, np.asarray(grid.size))
    if np.any(hi_xyz <= lo_xyz):
        return None
    return Box(tuple(int(v) for v in lo_xyz[::-1]), tuple(int(v) for v in hi_xyz[::-1]))


def full_box(grid: Grid) -> Box:
    """The box covering the whole grid."""
    return Box((0, 0, 0), grid.shape_zyx)


def local_coords_box(grid: Grid, frame: Frame, box: Box, stride: int = 1) -> tuple[np.ndarray, ...]:
    """Local (u, v, w) float32 coordinates of the voxels of ``box`` (every ``stride``-th)."""
    a, b = frame.affine_from_index(grid)
    iz = np.arange(box.start[0], box.stop[0], stride, dtype=np.float32)
    iy = np.arange(box.start[1], box.stop[1], stride, dtype=np.float32)
    ix = np.arange(box.start[2], box.stop[2], stride, dtype=np.float32)
    coords = []
    for row in range(3):
        plane = (a[row, 0] * ix)[None, :] + (a[row, 1] * iy)[:, None] + np.float32(b[row])
        coords.append(plane[None, :, :] + (a[row, 2] * iz)[:, None, None])
    return tuple(c.astype(np.float32, copy=False) for c in coords)


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation by ``angle_rad`` about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1.0 - np.cos(angle_rad)) * (k @ k)


def small_rotation(rng: np.random.Generator, max_deg: tuple[float, float, float]) -> np.ndarray:
    """A random rotation made of three small turns about the local axes (uniform in ±max)."""
    result = np.eye(3)
    for axis, limit in zip(np.eye(3), max_deg):
        result = rotation_matrix(axis, np.deg2rad(rng.uniform(-limit, limit))) @ result
    return result


def direction_matrix(rng: np.random.Generator, orientation: str) -> np.ndarray:
    """A scanner-like direction matrix (columns = world directions of the index axes).

    Axial: rows run left-right, columns anterior-posterior, slices inferior-superior.
    Coronal: rows left-right, columns superior-inferior, slices anterior-posterior.
    Sagittal: rows anterior-posterior, columns superior-inferior, slices left-right (so
    thick slices blur across the joint space, unlike the other two). Each axis may point
    either way (as DICOM and NIfTI exports differ), and ``oblique`` turns an axial or
    coronal slab by up to 30 degrees about a random axis.
    """
    if orientation not in ACQUISITION_ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ACQUISITION_ORIENTATIONS}, got {orientation!r}")
    base_kind = orientation if orientation != "oblique" else ("axial", "coronal")[int(rng.integers(2))]
    x, y, z = np.eye(3)
    columns = {"axial": [x, y, z], "coronal": [x, -z, y], "sagittal": [y, -z, x]}[base_kind]
    signs = np.where(rng.random(3) < 0.25, -1.0, 1.0)
    matrix = np.stack([c * s for c, s in zip(columns, signs)], axis=1)
    if orientation == "oblique":
        axis = rng.normal(size=3)
        matrix = rotation_matrix(axis, np.deg2rad(rng.uniform(10.0, 30.0))) @ matrix
    return matrix
