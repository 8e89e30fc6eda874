"""Painting the scene: soft tissue, then per hip the pelvis, joint, femur, oedema and lesion.

Tissues are painted back to front with partial volume (see :class:`canvas.Canvas`); the
femoral head and lesion labels are set in the same pass from exact signed distances at
voxel centres, so image and label can never disagree about where the head is.
"""

from __future__ import annotations

import numpy as np

from onfh.synthetic import anatomy, lesion, signal, soft_tissue
from onfh.synthetic.canvas import (
    Canvas,
    evaluate,
    evaluate_coarse,
    evaluate_coarse_fields,
    evaluate_exact,
    fraction,
)
from onfh.synthetic.geometry import Frame, Grid, box_for_local_bounds, full_box, local_coords_box
from onfh.synthetic.scene import Hip
from onfh.synthetic.shapes import half_space, intersection, sine_perturbation

_TISSUE = signal.TISSUE_IDS


def paint_soft_tissue(
    canvas: Canvas, shapes: soft_tissue.SoftTissueShapes, patient: Frame, values: dict
) -> None:
    grid = canvas.grid
    ramp = grid.ramp_mm
    box = full_box(grid)
    body_sdf = evaluate(shapes.body, grid, patient, box=box)[1]
    canvas.paint(box, fraction(body_sdf, ramp), values["fat"], _TISSUE["fat"])
    body_sdf += evaluate_coarse(shapes.fat_mm, grid, patient, box)
    muscle_alpha = fraction(body_sdf, ramp)
    del body_sdf
    septa, factor = evaluate_coarse_fields(shapes.compartments.septa_and_factor, grid, patient, box)
    factor *= np.float32(values["muscle"])
    canvas.paint(box, muscle_alpha, factor, _TISSUE["muscle"])
    septa_alpha = fraction(septa, ramp)
    septa_alpha *= muscle_alpha
    canvas.paint(box, septa_alpha, values["fat"], _TISSUE["fat"])
    canvas.paint_shape(shapes.pelvic_fat, patient, values["fat"], _TISSUE["fat"])
    if shapes.bladder is not None:
        canvas.paint_shape(shapes.bladder, patient, values["fluid"], _TISSUE["fluid"])
    for vessel in shapes.vessels:
        canvas.paint_shape(vessel, patient, values["blood"], _TISSUE["blood"])


def paint_hip(canvas: Canvas, label: np.ndarray, hip: Hip, values: dict, distractors, rng) -> tuple[int, int]:
    """Pelvis, joint, femur, lesion and distractors of one hip; head and lesion labels.

    Returns:
        Voxel counts of this hip's femoral head (labels 1 and 2) and necrosis (label 2).
    """
    grid = canvas.grid
    ramp = grid.ramp_mm
    collapse = (hip.lesion.axis, hip.collapse_mm) if hip.lesion is not None and hip.collapse_mm else None
    femur_shapes = anatomy.build_femur(hip.femur, collapse)
    pelvis_shapes = anatomy.build_pelvis(hip.pelvis, hip.femur)
    if distractors is not None and distractors.effusion:
        effusion = lesion.effusion_shape(femur_shapes, hip.femur, distractors)
        canvas.paint_shape(effusion, hip.femur_frame, values["fluid"], _TISSUE["fluid"])
    _paint_bone(canvas, pelvis_shapes.bone, hip.frame, pelvis_shapes.cortex_mm, values, "pelvic_marrow", rng)
    canvas.paint_shape(pelvis_shapes.joint_envelope, hip.frame, values["fluid"], _TISSUE["fluid"])
    canvas.paint_shape(pelvis_shapes.socket_cartilage, hip.frame, values["cartilage"], _TISSUE["cartilage"])
    canvas.paint_shape(pelvis_shapes.fossa, hip.frame, values["fat"], _TISSUE["fat"])
    canvas.paint_shape(pelvis_shapes.labrum, hip.frame, values["fibrocartilage"], _TISSUE["fibrocartilage"])
    n, junction = femur_shapes.neck_axis, femur_shapes.junction_mm
    low, high = femur_shapes.head_box_low - 4.0, femur_shapes.head_box_high + 4.0
    articular = half_space(n, junction - 1.5, low, high)
    head_cartilage = intersection([femur_shapes.head.offset(hip.femur.cartilage_mm), articular], 1.0)
    canvas.paint_shape(head_cartilage, hip.femur_frame, values["cartilage"], _TISSUE["cartilage"])
    _paint_bone(canvas, femur_shapes.bone, hip.femur_frame, femur_shapes.cortex_mm, values, "marrow", rng)

    if distractors is not None and distractors.oedema:
        _paint_oedema(canvas, femur_shapes, hip, values, distractors)

    head_box = box_for_local_bounds(
        grid, hip.femur_frame, femur_shapes.head_box_low, femur_shapes.head_box_high
    )
    head_sdf = evaluate_exact(anatomy.head_label_shape(femur_shapes), grid, hip.femur_frame, head_box)
    head = head_sdf < 0
    label_view = label[head_box.slices]
    label_view[head] = 1
    if hip.lesion is None:
        return int(np.count_nonzero(head)), 0
    g = evaluate_exact(lesion.lesion_field(hip.lesion, femur_shapes, rng), grid, hip.femur_frame, head_box)
    t = lesion.threshold_for_ratio(g[head], hip.lesion.target_ratio)
    necrosis = head & (g < t)
    label_view[necrosis] = 2
    marrow_alpha = _marrow_fraction(femur_shapes, grid, hip.femur_frame, head_box)
    band_alpha = fraction(g, ramp, level_mm=t)
    band_alpha *= marrow_alpha
    coords = local_coords_box(grid, hip.femur_frame, head_box)
    # The band's conspicuity varies along the margin: in places it fades towards marrow.
    fade = sine_perturbation(rng, 0.7, (10.0, 30.0), 8)(*coords)
    fade += np.float32(0.5)
    np.clip(fade, 0.0, 1.0, out=fade)
    fade *= np.float32(hip.lesion.band_fade * (values["marrow"] - values["band"]))
    fade += np.float32(values["band"])
    canvas.paint(head_box, band_alpha, fade, _TISSUE["band"])
    core_alpha = fraction(g, ramp, level_mm=t - hip.lesion.band_mm)
    core_alpha *= marrow_alpha
    # The core is mottled (fat, haemorrhage, fibrosis in varying mix), a little more than marrow.
    mottle = sine_perturbation(rng, float(rng.uniform(0.03, 0.08)), (5.0, 15.0), 12)
    core = mottle(*coords)
    core += np.float32(1.0)
    core *= np.float32(values["necrotic_core"] * hip.lesion.core_rel)
    canvas.paint(head_box, core_alpha, core, _TISSUE["necrotic_core"])
    return int(np.count_nonzero(head)), int(np.count_nonzero(necrosis))


def _paint_bone(canvas: Canvas, bone, frame: Frame, cortex_mm, values: dict, marrow: str, rng) -> None:
    """Cortex, then marrow inside it (the bone's signed distance shifted by the cortex thickness).

    Marrow is not uniform on real scans (trabecular density, islands of red marrow), so its
    signal carries a smooth random texture of a few per cent.
    """
    grid = canvas.grid
    evaluated = evaluate(bone, grid, frame)
    if evaluated is None:
        return
    box, sdf = evaluated
    canvas.paint(box, fraction(sdf, grid.ramp_mm), values["cortex"], _TISSUE["cortex"])
    sdf += evaluate_coarse(cortex_mm, grid, frame, box) if callable(cortex_mm) else np.float32(cortex_mm)
    texture = sine_perturbation(rng, float(rng.uniform(0.015, 0.04)), (12.0, 40.0), 8)
    factor = evaluate_coarse(texture, grid, frame, box)
    factor += np.float32(1.0)
    factor *= np.float32(values[marrow])
    canvas.paint(box, fraction(sdf, grid.ramp_mm), factor, _TISSUE[marrow])


def _marrow_fraction(femur_shapes, grid: Grid, frame: Frame, box) -> np.ndarray:
    """Fraction of femoral marrow (bone minus cortex) in each voxel of a small box."""
    coords = local_coords_box(grid, frame, box)
    return fraction(femur_shapes.bone(*coords) + femur_shapes.cortex_mm(*coords), grid.ramp_mm)


def _paint_oedema(canvas: Canvas, femur_shapes, hip: Hip, values: dict, distractors) -> None:
    """Ill-defined oedema: an 8 mm ramp, only inside marrow."""
    grid = canvas.grid
    shape = lesion.oedema_shape(femur_shapes, hip.femur)
    width = 8.0
    evaluated = evaluate(shape, grid, hip.femur_frame)
    if evaluated is None:
        return
    box, sdf = evaluated
    alpha = fraction(sdf, width)
    alpha *= np.float32(distractors.oedema_strength)
    alpha *= _marrow_fraction(femur_shapes, grid, hip.femur_frame, box)
    canvas.paint(box, alpha, values["oedema"], _TISSUE["oedema"])
