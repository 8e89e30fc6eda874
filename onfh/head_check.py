"""Is a segmented "femoral head" a femoral head? A sphere fit and what it says.

A model can put its crop on muscle and "segment" it with full confidence; a grade from
that is worse than no grade. The anatomy is a cheap and strong prior: an adult femoral
head is nearly a sphere of 19-29 mm radius (DOMAIN.md), cut flat only at the head-neck
junction, and a necrotic lesion lies inside it, under the articular surface. So:

1. fit a sphere to the head's surface voxels (least squares, refitted on the points near
   the first fit, so the flat head-neck cut does not pull it);
2. check the radius, the share of the surface that lies on the sphere (a slab or a
   cylinder has little), how much of the sphere the head fills (a head cut in half fills
   about half), and that any lesion reaches the sphere's surface.

Pure functions on a label array and its spacing; the inference decides what to do with a
failed check (try other candidates, then a whole-image search, then flag the result).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

MIN_RADIUS_MM = 17.0  # adult heads 19-29 mm (DOMAIN.md), less 2 mm for labelling and fit
MAX_RADIUS_MM = 31.0
MIN_SURFACE_FRACTION = (
    0.8  # a head cut at the neck keeps ~90 % of its surface on the sphere; half a head ~70 %
)
MIN_SPHERE_FILL = 0.75  # head volume / fitted sphere volume: ~1.0 for a head, ~0.6 for half of one
MAX_SPHERE_FILL = 1.2
SURFACE_TOLERANCE_MM = 2.0
LESION_REACH_MM = 4.0  # a lesion reaches the articular surface: within this of the sphere


@dataclass
class HeadCheck:
    """What the sphere check found for one segmented head.

    Attributes:
        passed: every check passed.
        reasons: one short phrase per failed check (empty when passed).
        volume_ml: head volume (labels 1 and 2).
        radius_mm: fitted sphere radius (``None`` without a head).
        surface_fraction: share of surface voxels within ``SURFACE_TOLERANCE_MM`` of the sphere.
        sphere_fill: head volume / fitted sphere volume.
        fit_residual_mm: RMS distance of those surface voxels from the sphere.
        lesion_reaches_surface: ``None`` without a lesion.
        source: where the crop came from (filled in by the inference).
    """

    passed: bool
    reasons: list[str] = field(default_factory=list)
    volume_ml: float = 0.0
    radius_mm: float | None = None
    surface_fraction: float | None = None
    sphere_fill: float | None = None
    fit_residual_mm: float | None = None
    lesion_reaches_surface: bool | None = None
    source: str = ""

    def to_dict(self) -> dict:
        """JSON-ready values, rounded for reading."""
        out = asdict(self)
        for key in ("volume_ml", "radius_mm", "surface_fraction", "sphere_fill", "fit_residual_mm"):
            if out[key] is not None:
                out[key] = round(float(out[key]), 3)
        return out

    def summary(self) -> str:
        """``"passed"`` or ``"low confidence: <reasons>"``."""
        return "passed" if self.passed else "low confidence: " + "; ".join(self.reasons)


def fit_sphere(points_mm: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points_mm`` ``[n, 3]``: ``(centre, radius)``.

    Solves ``|p|^2 = 2 c . p + (r^2 - |c|^2)``, which is linear in ``c`` and the constant.

    Raises:
        ValueError: fewer than 4 points, or all in one plane.
    """
    points = np.asarray(points_mm, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 4:
        raise ValueError(f"a sphere fit needs at least 4 points [n, 3], got shape {points.shape}")
    design = np.column_stack([2.0 * points, np.ones(len(points))])
    target = np.einsum("ij,ij->i", points, points)
    solution, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    if rank < 4:
        raise ValueError("the points lie in one plane: no sphere through them")
    centre = solution[:3]
    radius_sq = solution[3] + float(centre @ centre)
    return centre, float(np.sqrt(max(radius_sq, 0.0)))


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Indices ``[n, 3]`` of mask voxels with a face neighbour outside the mask (or the array)."""
    padded = np.pad(mask, 1)
    interior = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for step in (-1, 1):
            interior &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(mask & ~interior)


def robust_sphere_fit(points_mm: np.ndarray, tolerance_mm: float = SURFACE_TOLERANCE_MM, rounds: int = 3):
    """Sphere fit refitted on the points within ``tolerance_mm`` of the previous fit.

    Returns:
        ``(centre, radius, inlier mask)``.
    """
    centre, radius = fit_sphere(points_mm)
    inliers = np.ones(len(points_mm), dtype=bool)
    for _ in range(rounds):
        distance = np.abs(np.linalg.norm(points_mm - centre, axis=1) - radius)
        new_inliers = distance <= tolerance_mm
        if new_inliers.sum() < 4 or np.array_equal(new_inliers, inliers):
            break
        inliers = new_inliers
        centre, radius = fit_sphere(points_mm[inliers])
    distance = np.abs(np.linalg.norm(points_mm - centre, axis=1) - radius)
    return centre, radius, distance <= tolerance_mm


def check_head(label: np.ndarray, spacing_zyx_mm: Sequence[float]) -> HeadCheck:
    """Check one head's label (``[z, y, x]``, 1 head, 2 necrosis) on a grid of ``spacing_zyx_mm``.

    The grid may have any orientation (a sphere does not care); its spacing must be the
    voxel size along the array axes.
    """
    spacing = np.asarray(spacing_zyx_mm, dtype=float)
    head = label > 0
    voxel_mm3 = float(np.prod(spacing))
    volume_mm3 = float(np.count_nonzero(head)) * voxel_mm3
    if volume_mm3 == 0:
        return HeadCheck(False, ["no femoral head segmented"])
    surface_mm = surface_voxels(head) * spacing
    try:
        centre, radius, on_sphere = robust_sphere_fit(surface_mm)
    except ValueError:
        return HeadCheck(False, ["too few voxels to fit a sphere"], volume_ml=volume_mm3 / 1000.0)
    residual = float(
        np.sqrt(np.mean((np.linalg.norm(surface_mm[on_sphere] - centre, axis=1) - radius) ** 2))
        if on_sphere.any()
        else np.inf
    )
    surface_fraction = float(on_sphere.mean())
    sphere_fill = volume_mm3 / (4.0 / 3.0 * np.pi * radius**3) if radius > 0 else np.inf
    reasons = []
    if not MIN_RADIUS_MM <= radius <= MAX_RADIUS_MM:
        reasons.append(
            f"sphere radius {radius:.1f} mm outside the {MIN_RADIUS_MM:.0f}-{MAX_RADIUS_MM:.0f} mm "
            "of a femoral head"
        )
    if surface_fraction < MIN_SURFACE_FRACTION:
        reasons.append(f"only {100 * surface_fraction:.0f} % of its surface lies on a sphere")
    if not MIN_SPHERE_FILL <= sphere_fill <= MAX_SPHERE_FILL:
        reasons.append(f"it fills {100 * sphere_fill:.0f} % of its fitted sphere")
    lesion_reaches = None
    lesion = np.argwhere(label == 2)
    if len(lesion):
        reach_mm = float(np.max(np.linalg.norm(lesion * spacing - centre, axis=1)))
        lesion_reaches = reach_mm >= radius - LESION_REACH_MM
        if not lesion_reaches:
            reasons.append(f"the lesion stays {radius - reach_mm:.0f} mm below the head's surface")
    return HeadCheck(
        passed=not reasons,
        reasons=reasons,
        volume_ml=volume_mm3 / 1000.0,
        radius_mm=radius,
        surface_fraction=surface_fraction,
        sphere_fill=float(sphere_fill),
        fit_residual_mm=residual,
        lesion_reaches_surface=lesion_reaches,
    )
