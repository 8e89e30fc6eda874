"""The necrotic lesion and its distractors (marrow oedema, joint effusion).

The lesion is the sub-level set {g < t} of a field g built in the femur frame: a cone
(wedge) and a plane (cap) around an anterosuperior axis, with a smooth random
perturbation for an irregular margin. Its size is set by t, chosen as a quantile of g over
the head-label voxels, so the label's necrosis ratio equals the requested ratio to one
voxel. The reactive band is {t - band < g < t}: the label runs to its outer edge, as in
Takashima et al. (DOMAIN.md). The lesion stops a few millimetres proximal to the head-neck
junction plane, so it always lies inside the head label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onfh.synthetic.anatomy import FemurParams, FemurShapes
from onfh.synthetic.geometry import rotation_matrix
from onfh.synthetic.shapes import Shape, round_cone, sine_perturbation, sphere, union

LESION_SHAPES = ("cap", "wedge")
# Made only when asked for (drawing them would change every seed): "ellipsoid" is in the
# v6 training data; "lobed" (two overlapping ellipsoids) is kept out of all training as
# the held-out lesion family.
PROBE_LESION_SHAPES = ("ellipsoid", "lobed")
JUNCTION_CLEARANCE_MM = 4.0


@dataclass(frozen=True)
class LesionParams:
    """Random shape of one lesion; its size comes from the target ratio."""

    shape: str
    axis: np.ndarray  # unit vector from the head centre to the lesion centre (anterosuperior)
    ellipsoid_axes: np.ndarray | None  # ellipsoid/lobed: [lobe, 3, 3], rows its axes / semi-axis
    ellipsoid_centre_mm: np.ndarray | None  # ellipsoid/lobed: [lobe, 3], head centre at the origin
    apex_depth_mm: float
    half_angle_deg: float
    cap_height_mm: float
    band_mm: float
    band_fade: float  # how far the band may fade towards marrow signal in places (0-1)
    irregularity_mm: float
    target_ratio: float
    core_rel: float  # multiplier of the core signal (heterogeneity between patients)

    def summary(self) -> dict:
        """Values worth keeping per case."""
        return {
            "lesion_shape": self.shape,
            "target_ratio": round(self.target_ratio, 4),
            "band_mm": round(self.band_mm, 2),
            "band_fade": round(self.band_fade, 3),
            "lesion_axis": [round(float(x), 3) for x in self.axis],
        }


def sample_lesion(
    rng: np.random.Generator,
    femur: FemurParams,
    target_ratio: float,
    shape: str | None = None,
    band_mm: float | None = None,
    band_fade: float | None = None,
) -> LesionParams:
    """A random anterosuperior wedge or cap with a 1-3 mm reactive band.

    ``shape="ellipsoid"`` (never drawn): an ellipsoid of random proportions centred under
    the articular surface anywhere on the upper half of the head, not only
    anterosuperiorly; ``"lobed"`` (never drawn): two such ellipsoids 20-45 degrees apart,
    merged (a lesion with two lobes or foci joined).
    """
    drawn_shape = LESION_SHAPES[
        int(rng.integers(len(LESION_SHAPES)))
    ]  # always drawn: overrides keep the stream
    shape = drawn_shape if shape is None else shape
    if shape not in LESION_SHAPES + PROBE_LESION_SHAPES:
        raise ValueError(f"lesion shape must be one of {LESION_SHAPES + PROBE_LESION_SHAPES}, got {shape!r}")
    if shape in PROBE_LESION_SHAPES:
        return _sample_ellipsoid(
            rng, femur, target_ratio, band_mm, band_fade, lobes=2 if shape == "lobed" else 1
        )
    superior = np.array([0.0, 0.0, 1.0])
    anterior_tilt = rotation_matrix([1.0, 0, 0], -np.deg2rad(rng.uniform(15.0, 45.0)))  # towards +v
    lateral_tilt = rotation_matrix([0, 1.0, 0], np.deg2rad(rng.uniform(-8.0, 22.0)))  # towards +u
    axis = lateral_tilt @ anterior_tilt @ superior
    r = femur.head_radius_mm
    if shape == "wedge":
        depth, angle, cap = rng.uniform(0.1, 0.5) * r, rng.uniform(28.0, 45.0), 0.0
    else:
        depth = rng.uniform(0.5, 0.9) * r
        angle = rng.uniform(55.0, 75.0)
        cap = depth + rng.uniform(0.2, 0.6) * r
    band = rng.uniform(1.0, 3.0)
    fade = rng.uniform(0.0, 0.35)
    return LesionParams(
        shape=shape,
        axis=axis / np.linalg.norm(axis),
        ellipsoid_axes=None,
        ellipsoid_centre_mm=None,
        apex_depth_mm=float(depth),
        half_angle_deg=float(angle),
        cap_height_mm=float(cap),
        band_mm=float(band) if band_mm is None else float(band_mm),
        band_fade=float(fade) if band_fade is None else float(band_fade),
        irregularity_mm=float(rng.uniform(0.6, 1.8)),
        target_ratio=float(target_ratio),
        core_rel=float(rng.uniform(0.92, 1.05)),
    )


def _lobe_axes(rng, axis: np.ndarray) -> np.ndarray:
    """Rows: ``axis`` and two tangents, each divided by its relative semi-axis (mean 1, so g is in mm)."""
    radial_semi = rng.uniform(0.5, 1.1)  # flattened along the radius, or a little elongated
    tangential = rng.uniform(0.8, 1.6, size=2)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t1 = np.cross(axis, helper)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(axis, t1)
    twist = rng.uniform(0.0, np.pi)
    t1, t2 = np.cos(twist) * t1 + np.sin(twist) * t2, -np.sin(twist) * t1 + np.cos(twist) * t2
    semi = np.array([radial_semi, *tangential])
    return np.stack([axis, t1, t2]) / (semi / semi.mean())[:, None]


def _upper_direction(polar_deg: float, azimuth: float) -> np.ndarray:
    polar = np.deg2rad(polar_deg)
    return np.array([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)])


def _sample_ellipsoid(
    rng, femur: FemurParams, target_ratio, band_mm, band_fade, lobes: int = 1
) -> LesionParams:
    """One ellipsoid (or two merged) centred 0-25 % of the radius under the surface, any
    azimuth within 60 degrees of superior: medial and posterior lesions too."""
    axis = _upper_direction(rng.uniform(0.0, 60.0), rng.uniform(0.0, 2.0 * np.pi))
    axes = [_lobe_axes(rng, axis)]
    radius = femur.head_radius_mm
    centres = [(1.0 - rng.uniform(0.0, 0.25)) * radius * axis]
    band = float(rng.uniform(1.0, 3.0)) if band_mm is None else float(band_mm)
    fade = float(rng.uniform(0.0, 0.35)) if band_fade is None else float(band_fade)
    irregularity, core_rel = float(rng.uniform(0.6, 1.8)), float(rng.uniform(0.92, 1.05))
    if lobes == 2:  # drawn last, so an "ellipsoid" of the same seed keeps its shape
        across = np.cross(axis, [0.0, 0.0, 1.0])
        across = across if np.linalg.norm(across) > 1e-6 else np.array([1.0, 0.0, 0.0])
        tilt = rotation_matrix(across, np.deg2rad(rng.uniform(20.0, 45.0)))
        spin = rotation_matrix(axis, rng.uniform(0.0, 2.0 * np.pi))
        second = spin @ tilt @ axis
        second /= np.linalg.norm(second)
        axes.append(_lobe_axes(rng, second))
        centres.append((1.0 - rng.uniform(0.0, 0.25)) * radius * second)
    return LesionParams(
        shape="lobed" if lobes == 2 else "ellipsoid",
        axis=axis,
        ellipsoid_axes=np.stack(axes),
        ellipsoid_centre_mm=np.stack(centres),
        apex_depth_mm=0.0,
        half_angle_deg=0.0,
        cap_height_mm=0.0,
        band_mm=band,
        band_fade=fade,
        irregularity_mm=irregularity,
        target_ratio=float(target_ratio),
        core_rel=core_rel,
    )


def _ellipsoid_distance(lesion: LesionParams):
    """Distance-like field (mm) of the lobes: the smallest of each lobe's scaled distance,
    so its sub-level sets are the lobes grown together around their centres."""
    lobes = [
        (np.asarray(centre, dtype=np.float32), np.asarray(m, dtype=np.float32))
        for centre, m in zip(lesion.ellipsoid_centre_mm, lesion.ellipsoid_axes)
    ]

    def fn(u, v, w):
        fields = []
        for (cu, cv, cw), m in lobes:
            qu, qv, qw = u - cu, v - cv, w - cw
            fields.append(np.sqrt(sum((row[0] * qu + row[1] * qv + row[2] * qw) ** 2 for row in m)))
        return fields[0] if len(fields) == 1 else np.minimum(*fields)

    return fn


def lesion_field(lesion: LesionParams, femur_shapes: FemurShapes, rng: np.random.Generator) -> Shape:
    """The field g whose sub-level sets are the lesion (femur frame, mm)."""
    axis = lesion.axis
    apex = -lesion.apex_depth_mm * axis
    au, av, aw = (np.float32(x) for x in apex)
    xu, xv, xw = (np.float32(x) for x in axis)
    cos_t, sin_t = (np.float32(f(np.deg2rad(lesion.half_angle_deg))) for f in (np.cos, np.sin))
    cap = np.float32(lesion.cap_height_mm)
    nu, nv, nw = (np.float32(x) for x in femur_shapes.neck_axis)
    stop = np.float32(femur_shapes.junction_mm - JUNCTION_CLEARANCE_MM)
    wobble = sine_perturbation(rng, lesion.irregularity_mm, (10.0, 24.0), 6)
    ellipsoid = _ellipsoid_distance(lesion) if lesion.shape in PROBE_LESION_SHAPES else None

    def fn(u, v, w):
        if ellipsoid is not None:
            g = ellipsoid(u, v, w)
        else:
            qu, qv, qw = u - au, v - av, w - aw
            s = qu * xu + qv * xv + qw * xw
            radial = np.sqrt(np.maximum(qu * qu + qv * qv + qw * qw - s * s, 0.0))
            g = np.maximum(radial * cos_t - s * sin_t, cap - s)
        g = g + wobble(u, v, w)
        return np.maximum(g, nu * u + nv * v + nw * w - stop)

    return Shape(fn, femur_shapes.head_box_low, femur_shapes.head_box_high, "lesion")


def threshold_for_ratio(field_in_head: np.ndarray, ratio: float) -> float:
    """The level t such that exactly round(ratio * N) of the N head voxels have g < t."""
    values = np.sort(field_in_head.astype(np.float64).ravel())
    count = round(float(np.clip(ratio, 0.0, 1.0)) * values.size)
    if count <= 0:
        return float(values[0] - 1.0)
    if count >= values.size:
        return float(values[-1] + 1.0)
    return float(0.5 * (values[count - 1] + values[count]))


@dataclass(frozen=True)
class Distractors:
    """Findings that are not necrosis and must not be labelled as such."""

    oedema: bool
    effusion: bool
    oedema_strength: float
    effusion_mm: float

    def summary(self) -> dict:
        """Values worth keeping per case."""
        return {"oedema": self.oedema, "effusion": self.effusion}


def sample_distractors(
    rng: np.random.Generator, oedema: bool | None = None, effusion: bool | None = None
) -> Distractors:
    """Marrow oedema in about a third of cases, effusion in about a third."""
    drawn_oedema, drawn_effusion = bool(rng.random() < 0.35), bool(rng.random() < 0.35)
    oe = drawn_oedema if oedema is None else bool(oedema)
    ef = drawn_effusion if effusion is None else bool(effusion)
    return Distractors(oe, ef, float(rng.uniform(0.4, 0.85)), float(rng.uniform(2.0, 5.0)))


def oedema_shape(femur_shapes: FemurShapes, femur: FemurParams) -> Shape:
    """Ill-defined marrow oedema along the neck into the intertrochanteric region."""
    n = femur_shapes.neck_axis
    start = (femur_shapes.junction_mm + 2.0) * n
    end = femur_shapes.neck_base_mm + 12.0 * femur_shapes.shaft_direction
    return round_cone(start, end, 0.45 * femur.head_radius_mm, 0.7 * femur.head_radius_mm)


def effusion_shape(femur_shapes: FemurShapes, femur: FemurParams, distractors: Distractors) -> Shape:
    """Joint fluid distending the capsule around the head and neck."""
    r = femur.head_radius_mm
    n = femur_shapes.neck_axis
    extra = distractors.effusion_mm
    head = sphere((0, 0, 0), r + femur.cartilage_mm + extra)
    neck = round_cone(
        0.5 * r * n,
        femur_shapes.neck_base_mm - 10.0 * n,
        femur.neck_radius_ratio * r + extra,
        0.8 * r + extra,
    )
    return union([head, neck], 6.0)
