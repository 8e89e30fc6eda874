"""Soft tissue around the hip: body outline, subcutaneous fat, muscle with fat septa,
pelvic fat and bladder, femoral vessels.

Coordinates are millimetres in the patient frame: x towards the index hip's side, y
anterior, z superior, origin on the midline at the level of the femoral heads. A model
that only ever saw bone on a flat background would learn the wrong cues, so the
surroundings carry the same intensity structure a real T1-weighted hip scan shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from onfh.synthetic.shapes import (
    Shape,
    ellipsoid,
    elliptic_cylinder,
    perturbed,
    round_cone,
    sine_perturbation,
    smooth_max,
    union,
)


@dataclass(frozen=True)
class BodyParams:
    """Random habitus of one patient."""

    head_half_distance_mm: float  # midline to femoral head centre
    half_width_mm: float
    half_depth_mm: float
    body_centre_y_mm: float
    perineum_z_mm: float
    thigh_radius_mm: float
    fat_mm: float
    buttock_extra_fat_mm: float
    bladder: bool

    def summary(self) -> dict:
        """Values worth keeping per case."""
        return {
            "subcutaneous_fat_mm": round(self.fat_mm, 1),
            "hip_half_width_mm": round(self.half_width_mm, 1),
        }


def sample_body(rng: np.random.Generator) -> BodyParams:
    """A random adult pelvis/thigh habitus (lean to obese)."""
    half_distance = float(rng.uniform(82.0, 100.0))
    return BodyParams(
        head_half_distance_mm=half_distance,
        half_width_mm=half_distance + float(rng.uniform(70.0, 110.0)),
        half_depth_mm=float(rng.uniform(100.0, 140.0)),
        body_centre_y_mm=float(rng.uniform(-30.0, -10.0)),
        perineum_z_mm=float(rng.uniform(-85.0, -60.0)),
        thigh_radius_mm=float(rng.uniform(70.0, 95.0)),
        fat_mm=float(rng.uniform(6.0, 30.0)),
        buttock_extra_fat_mm=float(rng.uniform(5.0, 25.0)),
        bladder=bool(rng.random() < 0.7),
    )


@dataclass(frozen=True)
class SoftTissueShapes:
    """Shapes in the patient frame, painted in this order."""

    body: Shape
    fat_mm: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # muscle = body shrunk by this
    compartments: MuscleCompartments
    pelvic_fat: Shape
    bladder: Shape | None
    vessels: list[Shape]


def build_soft_tissue(
    body: BodyParams, rng: np.random.Generator, hip_sides: tuple[float, ...]
) -> SoftTissueShapes:
    """Body outline (trunk blended into the thighs), muscle, septa, pelvic contents, vessels.

    Args:
        body: habitus parameters.
        rng: random stream for the bumps and septa.
        hip_sides: +1 for the index side, -1 for the other, for every hip in the field.
    """
    d = body.head_half_distance_mm
    trunk_raw = elliptic_cylinder(
        (0.0, body.body_centre_y_mm), (body.half_width_mm, body.half_depth_mm), -300, 300
    )
    perineum = np.float32(body.perineum_z_mm)

    def trunk_fn(u, v, w):
        return smooth_max(trunk_raw(u, v, w), perineum - w, 30.0)

    trunk = Shape(trunk_fn, trunk_raw.low_mm, trunk_raw.high_mm, "trunk")
    thighs = [
        round_cone(
            (side * (d + 12.0), body.body_centre_y_mm + 25.0, -30.0),
            (side * (d - 20.0), body.body_centre_y_mm + 35.0, -420.0),
            body.thigh_radius_mm,
            body.thigh_radius_mm * 0.85,
        )
        for side in (1.0, -1.0)
    ]
    outline = perturbed(union([trunk, *thighs], 40.0), sine_perturbation(rng, 4.0, (80.0, 200.0), 5), 6.0)
    cy, depth = np.float32(body.body_centre_y_mm), np.float32(body.half_depth_mm)
    fat0, extra = np.float32(body.fat_mm), np.float32(body.buttock_extra_fat_mm)

    def fat_thickness(u, v, w):
        posterior = np.clip((cy - v) / depth, 0.0, 1.0)
        return fat0 + extra * posterior

    compartments = sample_compartments(rng, [side * d for side in hip_sides])
    pelvic_fat = perturbed(
        ellipsoid((0.0, 5.0, 25.0), (d - 38.0, 48.0, 55.0)), sine_perturbation(rng, 3.0, (40.0, 90.0), 4), 4.0
    )
    bladder = None
    if body.bladder:
        bladder = ellipsoid(
            (rng.uniform(-8, 8), rng.uniform(18, 32), rng.uniform(-15, 5)),
            (rng.uniform(25, 42), rng.uniform(20, 32), rng.uniform(22, 35)),
        )
    vessels = []
    for side in hip_sides:
        x = side * (d - 14.0)
        vessels.append(round_cone((x, 46.0, 90.0), (side * (d - 8.0), 42.0, -120.0), 4.0, 3.5))
        vessels.append(round_cone((x - side * 10.0, 44.0, 90.0), (side * (d - 16.0), 38.0, -120.0), 5.0, 4.5))
    return SoftTissueShapes(outline, fat_thickness, compartments, pelvic_fat, bladder, vessels)


@dataclass(frozen=True)
class MuscleCompartments:
    """Muscle bellies as Voronoi cells around random centres, stretched along the limb.

    Real intermuscular fat planes run mostly along the thigh and wrap the bellies; the
    borders between anisotropic Voronoi cells (z shrunk) do the same, and a smooth
    perturbation bends them. Each belly gets its own intensity factor.
    """

    centres: np.ndarray  # K x 3, patient frame
    z_scale: float
    thickness_mm: float
    factors: np.ndarray  # K intensity factors
    wobble: object

    def _nearest_two(self, u, v, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distances to the nearest and second-nearest centre, and the nearest's index."""
        zs = np.float32(self.z_scale)
        first = np.full(np.broadcast(u, v, w).shape, np.inf, dtype=np.float32)
        second = first.copy()
        index = np.zeros(first.shape, dtype=np.int16)
        for k, c in enumerate(self.centres):
            d = (u - np.float32(c[0])) ** 2 + (v - np.float32(c[1])) ** 2 + (zs * (w - np.float32(c[2]))) ** 2
            np.sqrt(d, out=d)
            closer = d < first
            np.minimum(second, np.maximum(first, d), out=second)
            np.minimum(first, d, out=first)
            index[closer] = k
        return first, second, index

    def septa_and_factor(self, u, v, w) -> tuple[np.ndarray, np.ndarray]:
        """Septum signed distance and the intensity factor of each point's belly, in one pass."""
        first, second, index = self._nearest_two(u, v, w)
        sdf = np.float32(0.5) * (second - first) + self.wobble(u, v, w) - np.float32(self.thickness_mm / 2)
        return sdf, self.factors.astype(np.float32)[index]


def sample_compartments(rng: np.random.Generator, hip_xs: list[float]) -> MuscleCompartments:
    """About ten bellies around each hip in the field."""
    centres = []
    for x in hip_xs:
        sign = np.sign(x) if x else 1.0
        for _ in range(10):
            centres.append([x + sign * rng.uniform(-70, 90), rng.uniform(-110, 80), rng.uniform(-120, 80)])
    count = len(centres)
    return MuscleCompartments(
        centres=np.asarray(centres),
        z_scale=float(rng.uniform(0.25, 0.45)),
        thickness_mm=float(rng.uniform(0.8, 2.2)),
        factors=rng.uniform(0.88, 1.12, size=count),
        wobble=sine_perturbation(rng, 1.0, (30.0, 80.0), 5),
    )
