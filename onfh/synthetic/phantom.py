"""One synthetic hip MRI with exact labels: :func:`generate_case`.

Order of work: draw every random choice from independent streams of one seed (so an
override of one choice leaves the others unchanged), place the patient and an image grid
with a scanner-like direction matrix, paint tissues back to front with partial volume,
label the femoral head and lesion from the same signed distances at voxel centres, then
add bias, Rician noise and a random intensity scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from onfh.grading import grade_from_voxel_counts, grade_label_map
from onfh.synthetic import anatomy, lesion, noise, signal, soft_tissue
from onfh.synthetic.canvas import (
    Canvas,
    evaluate,
    evaluate_coarse,
    evaluate_coarse_fields,
    evaluate_exact,
    fraction,
)
from onfh.synthetic.geometry import (
    ORIENTATIONS,
    Frame,
    Grid,
    box_for_local_bounds,
    centred_grid,
    direction_matrix,
    full_box,
    local_coords_box,
    small_rotation,
)
from onfh.synthetic.shapes import half_space, intersection, sine_perturbation

GENERATOR_VERSION = "1"
DEFAULT_SPACING_MM = (0.7, 0.7, 1.0)
DEFAULT_SIZE = (256, 256, 120)
BILATERAL_SPACING_MM = (1.4, 1.4, 1.0)
OVERRIDES = (
    "ratio",
    "side",
    "orientation",
    "protocol",
    "snr",
    "noise",
    "bias",
    "oedema",
    "effusion",
    "lesion_shape",
    "band_mm",
    "head_diameter_mm",
    "mid_tissues",
    "tissue_map",
)
_TISSUE = signal.TISSUE_IDS
_STREAMS = ("pose", "femur", "lesion", "protocol", "body", "noise", "shape", "other")


@dataclass
class SyntheticCase:
    """A synthetic MRI, its exact label on the same grid, and what is true about it.

    Attributes:
        image: int16 MRI with the case's direction matrix and origin.
        label: uint8 label map (0 background, 1 femoral head without necrosis, 2 necrosis).
        info: true volumes (mL), ratio, grade, laterality, spacing, protocol, parameters.
        tissues: (z, y, x) ids of voxels holding a single tissue (``signal.TISSUE_IDS``,
            255 = mixed), only with ``tissue_map=True``.
    """

    image: sitk.Image
    label: sitk.Image
    info: dict
    tissues: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Hip:
    side: str
    frame: Frame
    femur_frame: Frame
    femur: anatomy.FemurParams
    pelvis: anatomy.PelvisParams
    lesion: lesion.LesionParams | None


def resolve_geometry(
    spacing_mm: tuple[float, float, float] | None, size: tuple[int, int, int] | None, bilateral: bool
) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    """Defaults: 0.7x0.7x1.0 mm, 256x256x120 (unilateral); 1.4x1.4x1.0 mm (bilateral).

    Raises:
        ValueError: spacing not three positive numbers, size not three integers >= 16.
    """
    if spacing_mm is None:
        spacing_mm = BILATERAL_SPACING_MM if bilateral else DEFAULT_SPACING_MM
    if size is None:
        size = DEFAULT_SIZE
    spacing = tuple(float(s) for s in spacing_mm)
    dims = tuple(int(s) for s in size)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers in mm, got {tuple(spacing_mm)}")
    if len(dims) != 3 or min(dims) < 16:
        raise ValueError(f"size must be three integers >= 16, got {tuple(size)}")
    return spacing, dims


def generate_case(
    seed: int,
    spacing_mm: tuple[float, float, float] | None = None,
    size: tuple[int, int, int] | None = None,
    bilateral: bool = False,
    **overrides,
) -> SyntheticCase:
    """Synthesise one T1-weighted 3D SPGR hip MRI with its exact femoral head/necrosis label.

    Args:
        seed: the case's seed; the same seed and arguments give the same bytes.
        spacing_mm: voxel size (x, y, z); ``None``: 0.7x0.7x1.0 mm, or 1.4x1.4x1.0 mm
            for a bilateral field of view.
        size: voxels (x, y, z); ``None`` for 256x256x120.
        bilateral: both hips in a wide field of view (both heads labelled).
        **overrides: fix a random choice: ``ratio`` (0-1), ``side`` ("left"/"right"),
            ``orientation`` (axial/coronal/oblique), ``protocol`` (:class:`signal.Protocol`),
            ``snr``, ``noise`` / ``bias`` (False to skip), ``oedema``, ``effusion``,
            ``lesion_shape`` ("cap"/"wedge"), ``band_mm``, ``head_diameter_mm``, ``mid_tissues`` (True:
            mid-range tissue parameters), ``tissue_map`` (True: fill ``tissues``).

    Raises:
        ValueError: unknown override, invalid spacing/size, or a field of view too small
            to hold the femoral head(s).
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"unknown generate_case option(s) {unknown}; known: {', '.join(OVERRIDES)}")
    spacing, dims = resolve_geometry(spacing_mm, size, bilateral)
    streams = dict(
        zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(8)))
    )
    pose_rng = streams["pose"]

    # Every choice is drawn even when overridden, so overriding one leaves the others unchanged.
    drawn_side = "left" if pose_rng.random() < 0.5 else "right"
    drawn_orientation = ORIENTATIONS[int(pose_rng.integers(len(ORIENTATIONS)))]
    drawn_ratio = float(streams["lesion"].uniform(0.02, 0.55))
    side = overrides.get("side") or drawn_side
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    orientation = overrides.get("orientation") or drawn_orientation
    ratio = drawn_ratio if overrides.get("ratio") is None else overrides["ratio"]
    if not 0.0 <= float(ratio) <= 0.9:
        raise ValueError(f"ratio must be in [0, 0.9], got {ratio}")

    body = soft_tissue.sample_body(streams["body"])
    patient = _patient_frame(pose_rng, side)
    hips = _sample_hips(streams, patient, body, side, float(ratio), bilateral, overrides)
    direction = direction_matrix(pose_rng, orientation)
    grid = _place_grid(pose_rng, dims, spacing, direction, patient, hips, bilateral)

    drawn_protocol = signal.sample_protocol(streams["protocol"])
    protocol = overrides.get("protocol") or drawn_protocol
    tissues = (
        signal.mid_tissues(protocol.field_strength_t)
        if overrides.get("mid_tissues")
        else signal.sample_tissues(streams["protocol"], protocol.field_strength_t)
    )
    values = signal.tissue_signals(tissues, protocol)
    values["blood"] *= float(streams["protocol"].uniform(1.0, 3.0))  # inflow enhancement
    distractors = lesion.sample_distractors(
        streams["other"], overrides.get("oedema"), overrides.get("effusion")
    )

    canvas = Canvas(grid, tissue_map=bool(overrides.get("tissue_map")))
    label = np.zeros(grid.shape_zyx, dtype=np.uint8)
    sides = tuple(1.0 if h.side == side else -1.0 for h in hips)
    _paint_soft_tissue(canvas, soft_tissue.build_soft_tissue(body, streams["shape"], sides), patient, values)
    hip_counts = [
        _paint_hip(canvas, label, hip, values, distractors if hip.side == side else None, streams["shape"])
        for hip in hips
    ]

    image_array = _acquire(canvas.signal, values, streams["noise"], overrides)
    image = _to_sitk(image_array.array, grid)
    label_image = _to_sitk(label, grid)
    info = _info(
        seed,
        grid,
        label,
        hips,
        hip_counts,
        side,
        bilateral,
        orientation,
        protocol,
        body,
        distractors,
        image_array,
    )
    return SyntheticCase(image, label_image, info, canvas.tissues)


def _patient_frame(rng: np.random.Generator, side: str) -> Frame:
    """Patient frame (x towards the index side, y anterior, z superior) at a random table position."""
    lps_axes = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])  # left, anterior, superior
    axes = small_rotation(rng, (6.0, 6.0, 8.0)) @ lps_axes
    if side == "right":
        axes = np.stack([-axes[0], axes[1], axes[2]])
    origin = np.array([rng.uniform(-20, 20), rng.uniform(-40, 20), rng.uniform(-120, 60)])
    return Frame(origin, axes)


def _sample_hips(
    streams, patient: Frame, body, side: str, ratio: float, bilateral: bool, overrides
) -> list[_Hip]:
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
                lesion_rng, femur, hip_ratio, overrides.get("lesion_shape"), overrides.get("band_mm")
            )
        hips.append(_Hip(hip_side, frame, frame.rotated(femur.pose), femur, pelvis, the_lesion))
    return hips


def _place_grid(rng, dims, spacing, direction, patient: Frame, hips: list[_Hip], bilateral: bool) -> Grid:
    """Centre the field of view on the hip (or both hips), with a random shift that keeps heads inside."""
    if bilateral:
        target = patient.origin_mm
    else:
        medial = -hips[0].frame.axes[0]
        target = hips[0].frame.origin_mm + 12.0 * medial
    for jitter_mm in (12.0, 0.0):
        centre = target + rng.uniform(-jitter_mm, jitter_mm, size=3)
        grid = centred_grid(dims, spacing, direction, centre)
        if all(_head_inside(grid, hip) for hip in hips):
            return grid
    fov = " x ".join(f"{e:.0f}" for e in grid.extent_mm)
    raise ValueError(
        f"field of view {fov} mm is too small to hold the femoral head(s); enlarge size or spacing"
    )


def _head_inside(grid: Grid, hip: _Hip) -> bool:
    pad = hip.femur.head_radius_mm * 1.05 + 2.0
    corners = np.array([[sx, sy, sz] for sx in (-pad, pad) for sy in (-pad, pad) for sz in (-pad, pad)])
    index = grid.world_to_index(hip.frame.to_world(corners))
    return bool(np.all(index >= 0) and np.all(index <= np.asarray(grid.size) - 1))


def _paint_soft_tissue(
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


def _paint_hip(
    canvas: Canvas, label: np.ndarray, hip: _Hip, values: dict, distractors, rng
) -> tuple[int, int]:
    """Pelvis, joint, femur, lesion and distractors of one hip; head and lesion labels.

    Returns:
        Voxel counts of this hip's femoral head (labels 1 and 2) and necrosis (label 2).
    """
    grid = canvas.grid
    ramp = grid.ramp_mm
    femur_shapes = anatomy.build_femur(hip.femur)
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
    canvas.paint(head_box, band_alpha, values["band"], _TISSUE["band"])
    core_alpha = fraction(g, ramp, level_mm=t - hip.lesion.band_mm)
    core_alpha *= marrow_alpha
    # The core is mottled (fat, haemorrhage, fibrosis in varying mix), a little more than marrow.
    mottle = sine_perturbation(rng, float(rng.uniform(0.03, 0.08)), (5.0, 15.0), 12)
    core = mottle(*local_coords_box(grid, hip.femur_frame, head_box))
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


def _paint_oedema(canvas: Canvas, femur_shapes, hip: _Hip, values: dict, distractors) -> None:
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


@dataclass(frozen=True)
class _Acquired:
    array: np.ndarray
    snr: float | None
    scale: float
    offset: float
    bias: noise.BiasField | None


def _acquire(clean: np.ndarray, values: dict, rng: np.random.Generator, overrides) -> _Acquired:
    """Bias field, Rician noise at SNR 15-60 (relative to fatty marrow), scale and offset."""
    bias = noise.sample_bias(rng, clean.shape[::-1])
    drawn_snr = float(rng.uniform(15.0, 60.0))
    snr = float(overrides.get("snr") or drawn_snr)
    fat_units = float(rng.uniform(400.0, 3000.0))
    scale = fat_units / max(values["fat"], 1e-6)
    offset = float(rng.uniform(0.0, 0.03) * fat_units)
    signal_array = clean
    if overrides.get("bias", True):
        noise.apply_bias(signal_array, bias)
    if overrides.get("noise", True):
        signal_array = noise.add_rician_noise(signal_array, values["marrow"] / snr, rng)
    return _Acquired(
        noise.to_scanner_units(signal_array, scale, offset),
        snr if overrides.get("noise", True) else None,
        scale,
        offset,
        bias if overrides.get("bias", True) else None,
    )


def _to_sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing_mm)
    image.SetOrigin(tuple(float(x) for x in grid.origin_mm))
    image.SetDirection(tuple(float(x) for x in grid.direction.ravel()))
    return image


def _info(
    seed, grid, label, hips, hip_counts, side, bilateral, orientation, protocol, body, distractors, acquired
) -> dict:
    """What is true about the case; volumes, ratio and grade come from the label voxels."""
    result = grade_label_map(label, grid.spacing_mm)
    index_hip = hips[0]
    info = {
        "generator": "onfh.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "head_volume_ml": result.head_volume_ml,
        "necrosis_volume_ml": result.necrosis_volume_ml,
        "ratio": result.ratio,
        "grade": result.grade,
        "laterality": "bilateral" if bilateral else side,
        "index_side": side,
        "spacing_mm": list(grid.spacing_mm),
        "size": list(grid.size),
        "orientation": orientation,
        "direction": [round(float(x), 6) for x in grid.direction.ravel()],
        "protocol": protocol.to_dict(),
        "snr": None if acquired.snr is None else round(acquired.snr, 2),
        "intensity_scale": round(acquired.scale, 3),
        "intensity_offset": round(acquired.offset, 3),
        "bias": None if acquired.bias is None else acquired.bias.to_dict(),
        **index_hip.femur.summary(),
        **(index_hip.lesion.summary() if index_hip.lesion else {}),
        **distractors.summary(),
        **body.summary(),
    }
    if bilateral:
        info["hips"] = [
            _hip_info(hip, counts, grid, index) for index, (hip, counts) in enumerate(zip(hips, hip_counts))
        ]
    return info


def _hip_info(hip: _Hip, counts: tuple[int, int], grid: Grid, index: int) -> dict:
    """Per-side volumes, ratio and grade of a bilateral case (from that head's label voxels)."""
    result = grade_from_voxel_counts(counts[0], counts[1], grid.spacing_mm)
    return {
        "side": hip.side,
        "index": index == 0,
        "head_volume_ml": result.head_volume_ml,
        "necrosis_volume_ml": result.necrosis_volume_ml,
        "ratio": result.ratio,
        "grade": result.grade,
    }
