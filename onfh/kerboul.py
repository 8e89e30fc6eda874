"""Modified Kerboul combined necrotic angle from a 3D segmentation (pure functions).

Ha et al. (J Bone Joint Surg Am 2006;88 Suppl 3:35-40) measured, on the mid-coronal and
the mid-sagittal MRI slice through the centre of the femoral head, the arc of the head's
articular surface involved by necrosis (an angle at the head centre) and summed the two.
Their grades: 1 < 200°, 2 200-249°, 3 250-299°, 4 >= 300°; their risk groups of collapse:
low <= 190°, moderate 190-240°, high >= 240° (all 25 hips at >= 240° collapsed).

Here the planes are defined in patient coordinates (LPS), not by the scan's slices, so an
axial, coronal or oblique acquisition gives the same angle: the coronal plane holds the
left-right and the superior-inferior axes, the sagittal plane the anterior-posterior and
the superior-inferior axes, both through the centre of a sphere fitted to the head's
surface. Rays from that centre every ``step_deg`` in each plane find the head's surface
(the last head sample along the ray); a ray counts as involved when necrosis lies within
``depth_mm`` beneath that surface point. The arc is the number of involved rays times the
step, so two separate lesions add up, as two arcs on the surface would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from onfh.head_check import robust_sphere_fit, surface_voxels

# Ha et al. 2006, grades by the combined angle: grade n if angle < GRADE_UPPER_DEG[n - 1].
GRADE_UPPER_DEG = (200.0, 250.0, 300.0)
LOW_RISK_MAX_DEG = 190.0  # <= 190°: none collapsed
HIGH_RISK_MIN_DEG = 240.0  # >= 240°: all collapsed
STEP_DEG = 0.5
SAMPLE_MM = 0.25
DEPTH_MM = 3.0  # necrosis this close under the surface involves it (cortex 0.7-1.2 mm plus a voxel)
RAY_BEYOND_RADIUS_MM = 8.0

# Unit vectors in LPS: +x patient left, +y posterior, +z superior.
_LEFT = np.array([1.0, 0.0, 0.0])
_POSTERIOR = np.array([0.0, 1.0, 0.0])
_SUPERIOR = np.array([0.0, 0.0, 1.0])
PLANES = {"coronal": (_LEFT, _SUPERIOR), "sagittal": (_POSTERIOR, _SUPERIOR)}


@dataclass(frozen=True)
class KerboulResult:
    """Necrotic arcs on the two planes, their sum and what it means."""

    coronal_angle_deg: float
    sagittal_angle_deg: float
    combined_angle_deg: float
    grade: int  # 1-4 (Ha et al. 2006)
    risk: str  # "low", "moderate" or "high" risk of collapse
    head_centre_mm: tuple[float, float, float]  # LPS
    head_radius_mm: float

    def to_dict(self) -> dict:
        """JSON-ready values, rounded for reading."""
        out = asdict(self)
        for key in ("coronal_angle_deg", "sagittal_angle_deg", "combined_angle_deg", "head_radius_mm"):
            out[key] = round(float(out[key]), 1)
        out["head_centre_mm"] = [round(float(v), 2) for v in self.head_centre_mm]
        return out


def kerboul_grade(combined_angle_deg: float) -> int:
    """Modified Kerboul grade 1-4 of a combined necrotic angle (Ha et al. 2006).

    Raises:
        ValueError: the angle is not a number in [0, 720].
    """
    angle = float(combined_angle_deg)
    if not 0.0 <= angle <= 720.0:
        raise ValueError(f"combined necrotic angle must lie in [0, 720] degrees, got {combined_angle_deg!r}")
    for grade, upper in enumerate(GRADE_UPPER_DEG, start=1):
        if angle < upper:
            return grade
    return 4


def collapse_risk(combined_angle_deg: float) -> str:
    """Ha et al.'s risk group of collapse: ``"low"`` <= 190° < ``"moderate"`` < 240° <= ``"high"``."""
    if combined_angle_deg <= LOW_RISK_MAX_DEG:
        return "low"
    return "high" if combined_angle_deg >= HIGH_RISK_MIN_DEG else "moderate"


def head_sphere(label: sitk.Image) -> tuple[np.ndarray, float]:
    """Centre (LPS mm) and radius of a sphere fitted to the surface of the head (labels > 0).

    The fit runs in physical coordinates, so any direction matrix and anisotropic spacing
    are handled; the flat head-neck cut is left out by the refit on inliers.

    Raises:
        ValueError: no head voxels, or too few to fit a sphere.
    """
    array = sitk.GetArrayViewFromImage(label) > 0
    if not array.any():
        raise ValueError("no femoral head voxels: no head centre")
    # Crop to the head's bounding box first: a whole 512x512x300 scan would cost seconds.
    box = tuple(slice(int(np.argmax(a)), len(a) - int(np.argmax(a[::-1]))) for a in _axis_profiles(array))
    offset_zyx = np.array([s.start for s in box])
    indices_xyz = (surface_voxels(array[box]) + offset_zyx)[:, ::-1].astype(float)
    points_mm = index_to_physical(label, indices_xyz)
    centre, radius, _ = robust_sphere_fit(points_mm)
    return centre, radius


def _axis_profiles(mask: np.ndarray) -> list[np.ndarray]:
    """Per axis, whether each index holds any mask voxel."""
    return [mask.any(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3)]


def index_to_physical(image: sitk.Image, indices_xyz: np.ndarray) -> np.ndarray:
    """Physical points ``[n, 3]`` (LPS mm) of continuous indices ``[n, 3]`` (x, y, z order)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    scaled = indices_xyz * np.asarray(image.GetSpacing())
    return scaled @ direction.T + np.asarray(image.GetOrigin())


def physical_to_index(image: sitk.Image, points_mm: np.ndarray) -> np.ndarray:
    """Continuous indices ``[n, 3]`` (x, y, z order) of physical points ``[n, 3]``."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    local = (points_mm - np.asarray(image.GetOrigin())) @ np.linalg.inv(direction).T
    return local / np.asarray(image.GetSpacing())


def _labels_on_rays(
    label_array: np.ndarray, image: sitk.Image, centre_mm: np.ndarray, directions: np.ndarray, distances_mm
) -> np.ndarray:
    """Nearest-neighbour label values ``[rays, samples]`` along rays from ``centre_mm`` (0 outside).

    The rays are mapped to index space once (the map is affine), not point by point.
    Nearest neighbour reads the label as a reader sees it; linear interpolation of the
    indicators was tried and loses more of a lesion's thin wedge-shaped rim.
    """
    centre_index = physical_to_index(image, np.asarray(centre_mm, dtype=float)[None, :])[0]
    step_index = physical_to_index(image, directions) - physical_to_index(image, np.zeros((1, 3)))
    index = centre_index + np.asarray(distances_mm)[None, :, None] * step_index[:, None, :]
    index = np.rint(index).astype(np.intp)
    size = np.asarray(image.GetSize())
    inside = np.all((index >= 0) & (index < size), axis=-1)
    clipped = np.minimum(np.maximum(index, 0), size - 1)
    values = label_array[clipped[..., 2], clipped[..., 1], clipped[..., 0]]
    return np.where(inside, values, 0)


def necrotic_arc_deg(
    label: sitk.Image,
    centre_mm: np.ndarray,
    radius_mm: float,
    plane: tuple[np.ndarray, np.ndarray],
    step_deg: float = STEP_DEG,
    depth_mm: float = DEPTH_MM,
    sample_mm: float = SAMPLE_MM,
) -> float:
    """Arc (degrees at ``centre_mm``) of the head surface with necrosis beneath it, on one plane.

    Args:
        label: 0/1/2 label image (1 head, 2 necrosis), any orientation.
        centre_mm: head centre (LPS).
        radius_mm: head radius; rays run to ``radius_mm + RAY_BEYOND_RADIUS_MM``.
        plane: two orthonormal LPS vectors spanning the plane through ``centre_mm``.
        step_deg: angle between rays.
        depth_mm: how far beneath the surface necrosis still involves it.
        sample_mm: spacing of samples along a ray.
    """
    label_array = sitk.GetArrayViewFromImage(label)
    angles = np.deg2rad(np.arange(0.0, 360.0, step_deg))
    first, second = (np.asarray(v, dtype=float) for v in plane)
    directions = np.cos(angles)[:, None] * first + np.sin(angles)[:, None] * second  # [rays, 3]
    distances = np.arange(0.0, radius_mm + RAY_BEYOND_RADIUS_MM, sample_mm)  # [samples]
    values = _labels_on_rays(label_array, label, centre_mm, directions, distances)  # [rays, samples]
    head = values > 0
    has_head = head.any(axis=1)
    last = head.shape[1] - 1 - np.argmax(head[:, ::-1], axis=1)  # last head sample per ray
    surface_mm = distances[last]
    near_surface = (distances[None, :] >= surface_mm[:, None] - depth_mm) & (
        distances[None, :] <= surface_mm[:, None]
    )
    involved = has_head & np.any(near_surface & (values == 2), axis=1)
    return float(np.count_nonzero(involved)) * step_deg


def combined_necrotic_angle(
    label: sitk.Image, step_deg: float = STEP_DEG, depth_mm: float = DEPTH_MM
) -> KerboulResult | None:
    """Kerboul angles of one femoral head's label image, or ``None`` without a head.

    Args:
        label: 0/1/2 label image holding one head (keep one component of a bilateral scan).
        step_deg: angle between rays.
        depth_mm: how far beneath the surface necrosis still involves it.
    """
    try:
        centre, radius = head_sphere(label)
    except ValueError:
        return None
    coronal, sagittal = (
        necrotic_arc_deg(label, centre, radius, PLANES[name], step_deg, depth_mm) for name in PLANES
    )
    combined = coronal + sagittal
    return KerboulResult(
        coronal_angle_deg=coronal,
        sagittal_angle_deg=sagittal,
        combined_angle_deg=combined,
        grade=kerboul_grade(combined),
        risk=collapse_risk(combined),
        head_centre_mm=tuple(float(v) for v in centre),
        head_radius_mm=float(radius),
    )


def head_components(label: sitk.Image, max_heads: int = 2) -> list[sitk.Image]:
    """The largest ``max_heads`` connected head components, each as its own 0/1/2 label image."""
    array = sitk.GetArrayViewFromImage(label)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(label > 0), sortByObjectSize=True)
    numbered = sitk.GetArrayViewFromImage(components)
    heads = []
    for number in range(1, max_heads + 1):
        mask = numbered == number
        if not mask.any():
            break
        one = sitk.GetImageFromArray(np.where(mask, array, 0).astype(np.uint8))
        one.CopyInformation(label)
        heads.append(one)
    return heads
