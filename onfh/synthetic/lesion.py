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
JUNCTION_CLEARANCE_MM = 4.0


@dataclass(frozen=True)
class LesionParams:
    """Random shape of one lesion; its size comes from the target ratio."""

    shape: str
    axis: np.ndarray  # unit vector from the head centre to the lesion centre (anterosuperior)
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
    """A random anterosuperior wedge or cap with a 1-3 mm reactive band."""
    drawn_shape = LESION_SHAPES[
        int(rng.integers(len(LESION_SHAPES)))
    ]  # always drawn: overrides keep the stream
    shape = drawn_shape if shape is None else shape
    if shape not in LESION_SHAPES:
        raise ValueError(f"lesion shape must be one of {LESION_SHAPES}, got {shape!r}")
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
        apex_depth_mm=float(depth),
        half_angle_deg=float(angle),
        cap_height_mm=float(cap),
        band_mm=float(band) if band_mm is None else float(band_mm),
        band_fade=float(fade) if band_fade is None else float(band_fade),
        irregularity_mm=float(rng.uniform(0.6, 1.8)),
        target_ratio=float(target_ratio),
        core_rel=float(rng.uniform(0.92, 1.05)),
    )


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

    def fn(u, v, w):
        qu, qv, qw = u - au, v - av, w - aw
        s = qu * xu + qv * xv + qw * xw
        radial = np.sqrt(np.maximum(qu * qu + qv * qv + qw * qw - s * s, 0.0))
        g = np.maximum(radial * cos_t - s * sin_t, cap - s)
        g += wobble(u, v, w)
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
