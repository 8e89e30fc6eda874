"""Bones of one hip: proximal femur and acetabulum/pelvis, as signed distance shapes.

Coordinates are millimetres in a hip frame centred on the femoral head: u lateral,
v anterior, w superior. A right hip uses the mirrored frame, so one description serves both
sides. The femur carries its own small pose rotation about the head centre (the head stays
in the socket). The femoral head label follows DOMAIN.md: head bone proximal to the plane
perpendicular to the neck axis through the circle where the head sphere meets the neck.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from onfh.synthetic.geometry import rotation_matrix, small_rotation
from onfh.synthetic.shapes import (
    Shape,
    ellipsoid,
    half_space,
    intersection,
    round_cone,
    sphere,
    subtract,
    torus,
    union,
)

# Head diameters the generator draws; ``onfh synth --head-diameter-mm`` asks for others.
DRAWN_HEAD_DIAMETER_MM = (42.0, 50.0)


@dataclass(frozen=True)
class FemurParams:
    """Random shape and pose of one proximal femur."""

    head_radius_mm: float
    head_scale: tuple[float, float, float]  # asphericity of the head, along head_axes rows
    head_axes: np.ndarray
    neck_shaft_angle_deg: float
    anteversion_deg: float
    shaft_tilt_deg: float
    offset_mm: float  # head centre to shaft axis
    neck_radius_ratio: float  # neck waist radius / head radius
    shaft_radius_mm: float
    trochanter_scale: float
    cortex_head_mm: float
    cortex_neck_mm: float
    cortex_shaft_mm: float
    cartilage_mm: float
    pose: np.ndarray  # rotation of the femur about the head centre, hip-frame coordinates

    def summary(self) -> dict:
        """Values worth keeping per case."""
        return {
            "head_diameter_mm": round(2 * self.head_radius_mm, 2),
            "neck_shaft_angle_deg": round(self.neck_shaft_angle_deg, 1),
            "anteversion_deg": round(self.anteversion_deg, 1),
        }


@dataclass(frozen=True)
class PelvisParams:
    """Random shape of the acetabulum and nearby pelvis."""

    inclination_deg: float
    anteversion_deg: float
    coverage_mm: float  # opening plane offset along the acetabular axis
    wall_mm: float
    cartilage_mm: float
    film_mm: float
    cortex_mm: float
    scale: float


def sample_femur(rng: np.random.Generator, head_diameter_mm: float | None = None) -> FemurParams:
    """A random adult proximal femur (head 42-50 mm, neck-shaft 120-140 deg, anteversion 5-25 deg)."""
    # Always drawn, so that an override leaves every later draw as it was.
    drawn = float(rng.uniform(*DRAWN_HEAD_DIAMETER_MM))
    diameter = float(head_diameter_mm) if head_diameter_mm is not None else drawn
    radius = diameter / 2.0
    anteversion = float(rng.uniform(5.0, 25.0))
    return FemurParams(
        head_radius_mm=radius,
        head_scale=tuple(float(s) for s in rng.uniform(0.985, 1.015, size=3)),
        head_axes=small_rotation(rng, (90.0, 90.0, 90.0)),
        neck_shaft_angle_deg=float(rng.uniform(120.0, 140.0)),
        anteversion_deg=anteversion,
        shaft_tilt_deg=float(rng.uniform(4.0, 10.0)),
        offset_mm=float(rng.uniform(36.0, 46.0) * radius / 23.0),
        neck_radius_ratio=float(rng.uniform(0.62, 0.72)),
        shaft_radius_mm=float(rng.uniform(12.5, 15.0) * radius / 23.0),
        trochanter_scale=float(rng.uniform(0.85, 1.15)),
        cortex_head_mm=float(rng.uniform(0.7, 1.2)),
        cortex_neck_mm=float(rng.uniform(1.5, 2.5)),
        cortex_shaft_mm=float(rng.uniform(4.0, 6.0)),
        cartilage_mm=float(rng.uniform(1.5, 2.5)),
        pose=_leg_pose(rng, anteversion),
    )


def _leg_pose(rng: np.random.Generator, anteversion_deg: float) -> np.ndarray:
    """Femur rotation about the head centre: hip protocols internally rotate the leg.

    Internal rotation by 30-100 % of the anteversion brings the neck towards the coronal
    plane, as positioning aims to; a few degrees of flexion and abduction remain random.
    """
    internal = np.deg2rad(anteversion_deg * rng.uniform(0.3, 1.0))
    return small_rotation(rng, (6.0, 6.0, 4.0)) @ rotation_matrix([0.0, 0.0, 1.0], -internal)


def sample_pelvis(rng: np.random.Generator, femur: FemurParams) -> PelvisParams:
    """A random acetabulum (inclination 38-52 deg, anteversion 10-25 deg) fitting the femur."""
    return PelvisParams(
        inclination_deg=float(rng.uniform(38.0, 52.0)),
        anteversion_deg=float(rng.uniform(10.0, 25.0)),
        coverage_mm=float(rng.uniform(-0.12, 0.12) * femur.head_radius_mm),
        wall_mm=float(rng.uniform(9.0, 14.0)),
        cartilage_mm=float(rng.uniform(1.3, 2.2)),
        film_mm=float(rng.uniform(0.3, 0.9)),
        cortex_mm=float(rng.uniform(1.0, 1.6)),
        scale=float(femur.head_radius_mm / 23.0 * rng.uniform(0.92, 1.08)),
    )


@dataclass(frozen=True)
class FemurShapes:
    """The femur's shapes in the femur frame, plus what the head label needs."""

    bone: Shape
    cortex_mm: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # marrow = bone shrunk by this
    head_box_low: np.ndarray
    head_box_high: np.ndarray
    neck_axis: np.ndarray  # unit vector from the head centre along the neck
    junction_mm: float  # head-neck junction plane: neck_axis . p = junction_mm
    head: Shape  # the head ellipsoid alone (cartilage and socket follow it)
    neck_base_mm: np.ndarray
    shaft_direction: np.ndarray


def neck_axis(femur: FemurParams) -> np.ndarray:
    """Unit vector from the head centre towards the trochanters, in the femur frame."""
    theta = np.deg2rad(180.0 - femur.neck_shaft_angle_deg - femur.shaft_tilt_deg)
    version = np.deg2rad(femur.anteversion_deg)
    # The head sits anterior to the trochanters, so heading laterally the neck goes posterior.
    return np.array([np.sin(theta) * np.cos(version), -np.sin(theta) * np.sin(version), -np.cos(theta)])


def shaft_direction(femur: FemurParams) -> np.ndarray:
    """Unit vector down the shaft (inferior, drifting medially towards the knee)."""
    tilt = np.deg2rad(femur.shaft_tilt_deg)
    return np.array([-np.sin(tilt), 0.0, -np.cos(tilt)])


def build_femur(femur: FemurParams, collapse: tuple[np.ndarray, float] | None = None) -> FemurShapes:
    """Head, neck, trochanters and shaft, smoothly joined; cortex thickens down the femur.

    ``collapse`` = ``(axis, depth_mm)``: the dome around ``axis`` (unit vector from the
    head centre, femur frame) is pushed in flat by ``depth_mm``, as a head collapses over
    its necrosis (Steinberg stage III-IV); cartilage and the head label follow the bone.
    """
    r = femur.head_radius_mm
    n = neck_axis(femur)
    d_s = shaft_direction(femur)
    # The neck axis meets the shaft axis at distance L from the head centre.
    angle = np.arccos(np.clip(n @ d_s, -1.0, 1.0))
    neck_length = femur.offset_mm / max(np.sin(angle), 0.3)
    base = neck_length * n
    waist = femur.neck_radius_ratio * r
    head = ellipsoid((0, 0, 0), np.asarray(femur.head_scale) * r, femur.head_axes)
    if collapse is not None and collapse[1] > 0.0:
        pad = r * 1.1 + 3.0
        flat = half_space(collapse[0], r - float(collapse[1]), np.full(3, -pad), np.full(3, pad))
        head = intersection([head, flat], 1.5)
    neck = round_cone(0.2 * r * n, base, waist, 0.78 * r)
    lateral = np.array([1.0, 0, 0])
    posterior = np.array([0, -1.0, 0])
    shaft = round_cone(base + 8.0 * d_s, base + 260.0 * d_s, 0.72 * r, femur.shaft_radius_mm)
    ts = femur.trochanter_scale
    greater = ellipsoid(
        base + 11.0 * ts * lateral + 6.0 * posterior - 10.0 * ts * d_s,
        np.array([12.0, 16.0, 22.0]) * ts,
        np.eye(3),
    )
    lesser = ellipsoid(
        base + 30.0 * d_s - 15.0 * lateral + 9.0 * posterior, np.array([7.0, 7.0, 10.0]) * ts, np.eye(3)
    )
    bone = union([union([head, neck], 5.0), shaft, greater, lesser], 9.0)
    # Junction plane: where the head sphere meets the neck surface (radius ~ waist there).
    junction = float(np.sqrt(max(r * r - waist * waist, 1.0)))
    t_head, t_neck, t_shaft = femur.cortex_head_mm, femur.cortex_neck_mm, femur.cortex_shaft_mm
    nu, nv, nw = (np.float32(x) for x in n)
    du, dv, dw = (np.float32(x) for x in d_s)
    bu, bv, bw = (np.float32(x) for x in base)

    def cortex(u, v, w):
        along_neck = np.clip((nu * u + nv * v + nw * w - np.float32(junction)) / np.float32(15.0), 0.0, 1.0)
        down_shaft = (u - bu) * du + (v - bv) * dv + (w - bw) * dw
        shaft_part = np.clip((down_shaft - np.float32(10.0)) / np.float32(40.0), 0.0, 1.0)
        return (
            np.float32(t_head)
            + np.float32(t_neck - t_head) * along_neck
            + np.float32(t_shaft - t_neck) * shaft_part
        )

    pad = r * 1.1 + 3.0
    return FemurShapes(
        bone=bone,
        cortex_mm=cortex,
        head_box_low=np.full(3, -pad),
        head_box_high=np.full(3, pad),
        neck_axis=n,
        junction_mm=junction,
        head=head,
        neck_base_mm=base,
        shaft_direction=d_s,
    )


def head_label_shape(shapes: FemurShapes) -> Shape:
    """Head bone proximal to the head-neck junction plane (the femoral head label)."""
    plane = half_space(shapes.neck_axis, shapes.junction_mm, shapes.head_box_low, shapes.head_box_high)
    return intersection([shapes.bone, plane])


def acetabular_axis(pelvis: PelvisParams) -> np.ndarray:
    """Unit vector out of the socket (lateral, anterior, inferior), in the hip frame."""
    inc = np.deg2rad(pelvis.inclination_deg)
    av = np.deg2rad(pelvis.anteversion_deg)
    return np.array([np.sin(inc) * np.cos(av), np.sin(av), -np.cos(inc) * np.cos(av)])


@dataclass(frozen=True)
class PelvisShapes:
    """The hip bone near the joint, and the socket layers, in the hip frame."""

    bone: Shape
    cortex_mm: float
    socket_cartilage: Shape
    fossa: Shape
    joint_envelope: Shape  # where the acetabulum covers the head (fluid film lives here)
    labrum: Shape
    socket_radius_mm: float


def build_pelvis(pelvis: PelvisParams, femur: FemurParams) -> PelvisShapes:
    """Acetabular block with a congruent socket, ilium, iliac wing, pubic and ischial rami."""
    r = femur.head_radius_mm
    s = pelvis.scale
    a = acetabular_axis(pelvis)
    inner = r + femur.cartilage_mm + pelvis.film_mm  # joint surface of the acetabular cartilage
    socket_bone = inner + pelvis.cartilage_mm
    block = intersection(
        [
            sphere(-4.0 * a, socket_bone + pelvis.wall_mm),
            half_space(a, pelvis.coverage_mm, np.full(3, -80.0), np.full(3, 80.0)),
        ],
        3.0,
    )
    wing_axis = np.array([0.5, 0.86, 0.0])
    wing_rot = np.stack([np.cross(wing_axis, [0, 0, 1.0]), wing_axis, [0, 0, 1.0]])
    parts = [
        block,
        ellipsoid([-3.0 * s, -3.0 * s, r + 10.0 * s], np.array([24.0, 22.0, 15.0]) * s, np.eye(3)),
        round_cone([-8.0 * s, -6.0 * s, 0.8 * r], [-24.0 * s, -22.0 * s, r + 110.0 * s], 19.0 * s, 13.0 * s),
        ellipsoid([-22.0 * s, -12.0 * s, r + 62.0 * s], np.array([9.0, 62.0, 46.0]) * s, wing_rot),
        round_cone([-10.0 * s, 14.0 * s, -6.0 * s], [-80.0 * s, 34.0 * s, -26.0 * s], 11.0 * s, 9.0 * s),
        round_cone([-6.0 * s, -18.0 * s, -14.0 * s], [-14.0 * s, -32.0 * s, -68.0 * s], 14.0 * s, 18.0 * s),
        round_cone([-14.0 * s, -30.0 * s, -68.0 * s], [-66.0 * s, 12.0 * s, -60.0 * s], 8.0 * s, 8.0 * s),
    ]
    socket = sphere((0, 0, 0), socket_bone)
    bone = subtract(union(parts, 9.0), socket)
    opening = half_space(a, pelvis.coverage_mm, np.full(3, -socket_bone), np.full(3, socket_bone))
    envelope = intersection([sphere((0, 0, 0), socket_bone + 0.5), opening])
    cartilage = intersection([sphere((0, 0, 0), socket_bone), opening, _outside(sphere((0, 0, 0), inner))])
    fossa_axis = -a + np.array([0.0, 0.0, -0.9])
    fossa_axis /= np.linalg.norm(fossa_axis)
    fossa = intersection(
        [
            sphere((0, 0, 0), socket_bone + 2.5),
            _outside(sphere((0, 0, 0), inner - 0.2)),
            sphere(fossa_axis * socket_bone, 0.45 * r),
        ]
    )
    # Labrum: a fibrocartilage ring on the acetabular rim, hugging the head beyond the bone.
    rim = float(np.sqrt(max(socket_bone**2 - pelvis.coverage_mm**2, 1.0)))
    tube = 2.2 + 0.8 * s
    labrum = intersection(
        [
            torus(a, pelvis.coverage_mm + 0.6 * tube, rim - 0.3 * tube, tube),
            _outside(sphere((0, 0, 0), inner)),
        ]
    )
    return PelvisShapes(bone, pelvis.cortex_mm, cartilage, fossa, envelope, labrum, inner)


def _outside(shape: Shape) -> Shape:
    """Complement of a shape (bounding box kept: use only inside an intersection)."""
    return Shape(lambda u, v, w: -shape(u, v, w), shape.low_mm - 200.0, shape.high_mm + 200.0, "outside")
