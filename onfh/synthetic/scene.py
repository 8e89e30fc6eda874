"""Where everything is: the patient, each hip's anatomy and pose, and the image grid.

Every random choice about placement comes from the caller's streams, so one seed gives one
scene. The field of view is centred on the hip (or between the hips) with a random shift
that never pushes a femoral head out of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onfh.synthetic import anatomy, lesion
from onfh.synthetic.geometry import Frame, Grid, centred_grid, small_rotation
from onfh.synthetic.lesion import LesionParams


@dataclass(frozen=True)
class Hip:
    """One hip: side, frames, bone parameters and its lesion (``None``: no lesion)."""

    side: str
    frame: Frame
    femur_frame: Frame
    femur: anatomy.FemurParams
    pelvis: anatomy.PelvisParams
    lesion: LesionParams | None
    collapse_mm: float = 0.0  # the dome over the lesion pushed in flat by this much (never drawn)


def patient_frame(rng: np.random.Generator, side: str) -> Frame:
    """Patient frame (x towards the index side, y anterior, z superior) at a random table position."""
    lps_axes = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])  # left, anterior, superior
    axes = small_rotation(rng, (6.0, 6.0, 8.0)) @ lps_axes
    if side == "right":
        axes = np.stack([-axes[0], axes[1], axes[2]])
    origin = np.array([rng.uniform(-20, 20), rng.uniform(-40, 20), rng.uniform(-120, 60)])
    return Frame(origin, axes)


def sample_hips(
    streams, patient: Frame, body, side: str, ratio: float, bilateral: bool, overrides
) -> list[Hip]:
    femur_rng, lesion_rng = streams["femur"], streams["lesion"]
    diameter = overrides.get("head_diameter_mm")
    hips = []
    sides = [side, "right" if side == "left" else "left"] if bilateral else [side]
    for index, hip_side in enumerate(sides):
        if index and diameter is None:
            diameter = 2.0 * hips[0].femur.head_radius_mm + femur_rng.uniform(-1.0, 1.0)
        femur = anatomy.sample_femur(femur_rng, diameter)
        pelvis = anatomy.sample_pelvis(femur_rng, femur)
        x_sign = 1.0 if index == 0 else -1.0  # patient x points to the index side
        offset = np.array(
            [x_sign * body.head_half_distance_mm, femur_rng.uniform(-3, 3), femur_rng.uniform(-3, 3)]
        )
        origin = patient.to_world(offset[None, :])[0]
        lps_like = np.stack(
            [patient.axes[0] * (1.0 if hip_side == side else -1.0), patient.axes[1], patient.axes[2]]
        )
        frame = Frame(origin, lps_like)
        the_lesion = None
        if index == 0 or lesion_rng.random() < 0.5:
            hip_ratio = ratio if index == 0 else float(lesion_rng.uniform(0.02, 0.45))
            the_lesion = lesion.sample_lesion(
                lesion_rng,
                femur,
                hip_ratio,
                overrides.get("lesion_shape"),
                overrides.get("band_mm"),
                overrides.get("band_fade"),
            )
        collapse_mm = float(overrides.get("collapse_mm") or 0.0) if the_lesion is not None else 0.0
        hips.append(Hip(hip_side, frame, frame.rotated(femur.pose), femur, pelvis, the_lesion, collapse_mm))
    return hips


def place_grid(rng, dims, spacing, direction, patient: Frame, hips: list[Hip], bilateral: bool) -> Grid:
    """Centre the field of view on the hip (or both hips), with a random shift that keeps heads inside."""
    if bilateral:
        target = patient.origin_mm
    else:
        medial = -hips[0].frame.axes[0]
        target = hips[0].frame.origin_mm + 12.0 * medial
    for jitter_mm in (12.0, 0.0):
        centre = target + rng.uniform(-jitter_mm, jitter_mm, size=3)
        grid = centred_grid(dims, spacing, direction, centre)
        if all(head_inside(grid, hip) for hip in hips):
            return grid
    fov = " x ".join(f"{e:.0f}" for e in grid.extent_mm)
    raise ValueError(
        f"field of view {fov} mm is too small to hold the femoral head(s); enlarge size or spacing"
    )


def head_inside(grid: Grid, hip: Hip) -> bool:
    pad = hip.femur.head_radius_mm * 1.05 + 2.0
    corners = np.array([[sx, sy, sz] for sx in (-pad, pad) for sy in (-pad, pad) for sz in (-pad, pad)])
    index = grid.world_to_index(hip.frame.to_world(corners))
    return bool(np.all(index >= 0) and np.all(index <= np.asarray(grid.size) - 1))
