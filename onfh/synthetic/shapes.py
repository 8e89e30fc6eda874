"""Signed distance primitives and a tiny CSG tree, in millimetres, on float32 arrays.

Every anatomical structure is a signed distance function (negative inside). Signed
distances give partial volume for free (a one-voxel ramp across the zero level) and exact
labels (the sign at the voxel centre). Each shape also knows a local bounding box, so the
renderer only evaluates it where it can be. Distances are exact for the primitives and
approximate (Lipschitz <= ~1.5) after smooth blending, which the coarse-to-fine renderer
allows for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def _f32(value: float) -> np.float32:
    return np.float32(value)


def smooth_min(a: np.ndarray, b: np.ndarray, k_mm: float) -> np.ndarray:
    """Polynomial smooth minimum: a union whose crease is rounded over ``k_mm``."""
    if k_mm <= 0:
        return np.minimum(a, b)
    h = np.clip(_f32(0.5) + _f32(0.5 / k_mm) * (b - a), 0.0, 1.0)
    return b + h * (a - b) - _f32(k_mm) * h * (_f32(1.0) - h)


def smooth_max(a: np.ndarray, b: np.ndarray, k_mm: float) -> np.ndarray:
    """Polynomial smooth maximum: an intersection with a rounded crease."""
    return -smooth_min(-a, -b, k_mm)


@dataclass(frozen=True)
class Shape:
    """A signed distance function with a local axis-aligned bounding box."""

    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    low_mm: np.ndarray
    high_mm: np.ndarray
    name: str = field(default="shape")

    def __call__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self.fn(u, v, w)

    def offset(
        self, distance_mm: float | Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    ) -> Shape:
        """The shape grown by ``distance_mm`` (negative shrinks); may vary with position."""
        if callable(distance_mm):
            dist_fn = distance_mm
            return Shape(lambda u, v, w: self.fn(u, v, w) - dist_fn(u, v, w), self.low_mm, self.high_mm)
        d = float(distance_mm)
        grow = max(d, 0.0)
        return Shape(
            lambda u, v, w: self.fn(u, v, w) - _f32(d),
            self.low_mm - grow,
            self.high_mm + grow,
            self.name,
        )


def _bounds(points: list[np.ndarray], pad: float) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.asarray(points, dtype=float)
    return stacked.min(axis=0) - pad, stacked.max(axis=0) + pad


def sphere(centre_mm, radius_mm: float) -> Shape:
    """A sphere."""
    c = np.asarray(centre_mm, dtype=float)
    cu, cv, cw, r = (_f32(x) for x in (*c, radius_mm))

    def fn(u, v, w):
        return np.sqrt((u - cu) ** 2 + (v - cv) ** 2 + (w - cw) ** 2) - r

    return Shape(fn, c - radius_mm, c + radius_mm, "sphere")


def ellipsoid(centre_mm, radii_mm, rotation: np.ndarray | None = None) -> Shape:
    """An ellipsoid (semi-axes ``radii_mm`` along the rows of ``rotation``).

    Uses the k0*(k0-1)/k1 bound, which is a good distance estimate near the surface.
    """
    c = np.asarray(centre_mm, dtype=float)
    radii = np.asarray(radii_mm, dtype=float)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
    r = [_f32(x) for x in rot.ravel()]
    inv1 = [_f32(1.0 / x) for x in radii]
    inv2 = [_f32(1.0 / (x * x)) for x in radii]
    cu, cv, cw = (_f32(x) for x in c)

    def fn(u, v, w):
        du, dv, dw = u - cu, v - cv, w - cw
        q = [r[3 * i] * du + r[3 * i + 1] * dv + r[3 * i + 2] * dw for i in range(3)]
        k0 = np.sqrt((q[0] * inv1[0]) ** 2 + (q[1] * inv1[1]) ** 2 + (q[2] * inv1[2]) ** 2)
        k1 = np.sqrt((q[0] * inv2[0]) ** 2 + (q[1] * inv2[1]) ** 2 + (q[2] * inv2[2]) ** 2)
        return k0 * (k0 - _f32(1.0)) / np.maximum(k1, _f32(1e-6))

    extent = float(radii.max())
    return Shape(fn, c - extent, c + extent, "ellipsoid")


def round_cone(a_mm, b_mm, radius_a_mm: float, radius_b_mm: float) -> Shape:
    """A capsule whose radius changes linearly from ``a`` to ``b`` (neck, shaft, rami)."""
    a = np.asarray(a_mm, dtype=float)
    b = np.asarray(b_mm, dtype=float)
    ba = b - a
    inv_len2 = 1.0 / float(ba @ ba)
    au, av, aw = (_f32(x) for x in a)
    bu, bv, bw = (_f32(x) for x in ba)
    ra, dr, il = _f32(radius_a_mm), _f32(radius_b_mm - radius_a_mm), _f32(inv_len2)

    def fn(u, v, w):
        pu, pv, pw = u - au, v - av, w - aw
        t = np.clip((pu * bu + pv * bv + pw * bw) * il, 0.0, 1.0)
        d = np.sqrt((pu - t * bu) ** 2 + (pv - t * bv) ** 2 + (pw - t * bw) ** 2)
        return d - (ra + t * dr)

    low, high = _bounds([a, b], max(radius_a_mm, radius_b_mm))
    return Shape(fn, low, high, "round_cone")


def half_space(normal, offset_mm: float, low_mm, high_mm) -> Shape:
    """{p : normal . p < offset}, clipped to a finite bounding box for rendering."""
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    nu, nv, nw, d = (_f32(x) for x in (*n, offset_mm))
    return Shape(
        lambda u, v, w: nu * u + nv * v + nw * w - d,
        np.asarray(low_mm, dtype=float),
        np.asarray(high_mm, dtype=float),
        "half_space",
    )


def union(shapes: list[Shape], blend_mm: float = 0.0) -> Shape:
    """Smooth union of shapes (bounding box = union of boxes, grown by the blend)."""

    def fn(u, v, w):
        result = shapes[0](u, v, w)
        for shape in shapes[1:]:
            result = smooth_min(result, shape(u, v, w), blend_mm)
        return result

    low = np.min([s.low_mm for s in shapes], axis=0) - blend_mm
    high = np.max([s.high_mm for s in shapes], axis=0) + blend_mm
    return Shape(fn, low, high, "union")


def intersection(shapes: list[Shape], blend_mm: float = 0.0) -> Shape:
    """Smooth intersection (bounding box = the first shape's box)."""

    def fn(u, v, w):
        result = shapes[0](u, v, w)
        for shape in shapes[1:]:
            result = smooth_max(result, shape(u, v, w), blend_mm)
        return result

    low = np.max([s.low_mm for s in shapes], axis=0)
    high = np.min([s.high_mm for s in shapes], axis=0)
    return Shape(fn, low, np.maximum(high, low), "intersection")


def subtract(shape: Shape, cutter: Shape, blend_mm: float = 0.0) -> Shape:
    """``shape`` with ``cutter`` removed."""
    return Shape(
        lambda u, v, w: smooth_max(shape(u, v, w), -cutter(u, v, w), blend_mm),
        shape.low_mm,
        shape.high_mm,
        "subtract",
    )


def shell(shape: Shape, inner_mm: float, outer_mm: float) -> Shape:
    """The layer of points whose distance to ``shape`` lies in [inner, outer] (e.g. cartilage)."""
    mid = 0.5 * (inner_mm + outer_mm)
    half = 0.5 * (outer_mm - inner_mm)
    m, h = _f32(mid), _f32(half)
    grow = max(outer_mm, 0.0)
    return Shape(
        lambda u, v, w: np.abs(shape(u, v, w) - m) - h,
        shape.low_mm - grow,
        shape.high_mm + grow,
        "shell",
    )


def sine_perturbation(
    rng: np.random.Generator, amplitude_mm: float, wavelengths_mm: tuple[float, float], terms: int = 6
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A smooth random field (sum of plane waves), for irregular margins and bumpy outlines.

    The slope stays below ~amplitude * 2 pi / shortest wavelength, so a perturbed signed
    distance remains a usable distance.
    """
    waves = []
    for _ in range(terms):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = 2.0 * np.pi / rng.uniform(*wavelengths_mm)
        waves.append((*(_f32(x) for x in direction * k), _f32(rng.uniform(0, 2 * np.pi))))
    scale = _f32(amplitude_mm * np.sqrt(2.0 / terms))

    def fn(u, v, w):
        total = np.zeros(np.broadcast(u, v, w).shape, dtype=np.float32)
        for ku, kv, kw, phase in waves:
            total += np.sin(ku * u + kv * v + kw * w + phase)
        return total * scale

    return fn


def elliptic_cylinder(
    centre_mm, semi_axes_mm: tuple[float, float], low_w_mm: float, high_w_mm: float
) -> Shape:
    """An infinite elliptic cylinder along w (the trunk), boxed between two heights."""
    cu, cv = (_f32(x) for x in centre_mm[:2])
    a, b = (float(x) for x in semi_axes_mm)
    ia, ib, ia2, ib2 = _f32(1 / a), _f32(1 / b), _f32(1 / (a * a)), _f32(1 / (b * b))

    def fn(u, v, w):
        du, dv = u - cu, v - cv
        k0 = np.sqrt((du * ia) ** 2 + (dv * ib) ** 2)
        k1 = np.sqrt((du * ia2) ** 2 + (dv * ib2) ** 2)
        return k0 * (k0 - _f32(1.0)) / np.maximum(k1, _f32(1e-6))

    low = np.array([centre_mm[0] - a, centre_mm[1] - b, low_w_mm])
    high = np.array([centre_mm[0] + a, centre_mm[1] + b, high_w_mm])
    return Shape(fn, low, high, "elliptic_cylinder")


def perturbed(
    shape: Shape, field: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], pad_mm: float
) -> Shape:
    """``shape`` with its surface displaced by a smooth field (bumpy outlines, irregular margins)."""
    return Shape(
        lambda u, v, w: shape(u, v, w) + field(u, v, w),
        shape.low_mm - pad_mm,
        shape.high_mm + pad_mm,
        shape.name,
    )


def torus(axis, centre_offset_mm: float, ring_radius_mm: float, tube_radius_mm: float) -> Shape:
    """A ring around ``axis`` (through the origin) at height ``centre_offset_mm`` (the labrum)."""
    n = np.asarray(axis, dtype=float)
    n = n / np.linalg.norm(n)
    nu, nv, nw = (_f32(x) for x in n)
    h, ring, tube = _f32(centre_offset_mm), _f32(ring_radius_mm), _f32(tube_radius_mm)

    def fn(u, v, w):
        along = nu * u + nv * v + nw * w
        radial = np.sqrt(np.maximum(u * u + v * v + w * w - along * along, 0.0))
        return np.sqrt((radial - ring) ** 2 + (along - h) ** 2) - tube

    extent = ring_radius_mm + tube_radius_mm + abs(centre_offset_mm)
    return Shape(fn, np.full(3, -extent), np.full(3, extent), "torus")
