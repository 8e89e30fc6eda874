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
from onfh.synthetic import lesion, noise, signal, soft_tissue
from onfh.synthetic.canvas import Canvas
from onfh.synthetic.geometry import ORIENTATIONS, Grid, direction_matrix
from onfh.synthetic.render import paint_hip, paint_soft_tissue
from onfh.synthetic.scene import Hip, patient_frame, place_grid, sample_hips

GENERATOR_VERSION = "1"
DEFAULT_SPACING_MM = (0.7, 0.7, 1.0)
DEFAULT_SIZE = (256, 256, 120)
BILATERAL_SPACING_MM = (1.4, 1.4, 1.0)
MAX_COLLAPSE_MM = 8.0  # beyond this a head is no longer a head to grade (Steinberg stage V-VI)
OVERRIDES = (
    "ratio",
    "side",
    "orientation",
    "protocol",
    "snr",
    "noise",
    "bias",
    "blur",
    "oedema",
    "effusion",
    "lesion_shape",
    "band_mm",
    "band_fade",
    "head_diameter_mm",
    "collapse_mm",
    "mid_tissues",
    "tissue_map",
)
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
        tissue_labels: (z, y, x) label map of every voxel's largest tissue (tissue id + 1,
            0 where nothing was painted), only with ``tissue_map=True``: the anatomy that
            contrast-randomised training draws new images from.
    """

    image: sitk.Image
    label: sitk.Image
    info: dict
    tissues: np.ndarray | None = field(default=None, repr=False)
    tissue_labels: np.ndarray | None = field(default=None, repr=False)


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


def untilted(direction: np.ndarray) -> np.ndarray:
    """The axis-aligned direction matrix nearest ``direction``: each column snapped to the
    world axis it is closest to, keeping its sign (a tilt under 45 degrees is undone)."""
    snapped = np.zeros((3, 3))
    for column in range(3):
        axis = int(np.argmax(np.abs(direction[:, column])))
        snapped[axis, column] = np.sign(direction[axis, column])
    return snapped


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
            ``orientation`` (axial/coronal/oblique, or sagittal, never drawn),
            ``protocol`` (:class:`signal.Protocol`),
            ``snr``, ``noise`` / ``bias`` / ``blur`` (False to skip), ``oedema``, ``effusion``,
            ``lesion_shape`` ("cap"/"wedge", or "ellipsoid"/"lobed", never drawn),
            ``band_mm``, ``band_fade`` (0-1),
            ``head_diameter_mm``, ``collapse_mm`` (0-8: the dome over the lesion pushed
            in flat, never drawn), ``mid_tissues`` (True: mid-range tissue parameters),
            ``tissue_map`` (True: fill ``tissues`` and ``tissue_labels``).

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
    if not 0.0 <= float(overrides.get("collapse_mm") or 0.0) <= MAX_COLLAPSE_MM:
        raise ValueError(f"collapse_mm must be in [0, {MAX_COLLAPSE_MM:g}], got {overrides['collapse_mm']}")

    body = soft_tissue.sample_body(streams["body"])
    patient = patient_frame(pose_rng, side)
    hips = sample_hips(streams, patient, body, side, float(ratio), bilateral, overrides)
    direction = direction_matrix(pose_rng, orientation)
    try:
        grid = place_grid(pose_rng, dims, spacing, direction, patient, hips, bilateral)
    except ValueError:
        if not bilateral or orientation != "oblique":
            raise
        # A tilted slab too thin to hold both heads (they lie ~200 mm apart): plan it on
        # the body's axes, as a radiographer would. Only such cases change; others keep
        # their geometry.
        direction = untilted(direction)
        orientation = "axial" if abs(direction[2, 2]) > 0.5 else "coronal"
        grid = place_grid(pose_rng, dims, spacing, direction, patient, hips, bilateral)

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
    paint_soft_tissue(canvas, soft_tissue.build_soft_tissue(body, streams["shape"], sides), patient, values)
    hip_counts = [
        paint_hip(canvas, label, hip, values, distractors if hip.side == side else None, streams["shape"])
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
    return SyntheticCase(image, label_image, info, canvas.tissues, canvas.dominant)


@dataclass(frozen=True)
class _Acquired:
    array: np.ndarray
    snr: float | None
    scale: float
    offset: float
    bias: noise.BiasField | None
    psf_weight: float


def _acquire(clean: np.ndarray, values: dict, rng: np.random.Generator, overrides) -> _Acquired:
    """Point spread, bias field, Rician noise at SNR 15-60 (relative to fatty marrow), scale, offset."""
    bias = noise.sample_bias(rng)
    psf_weight = float(rng.uniform(0.0, 0.15)) if overrides.get("blur", True) else 0.0
    drawn_snr = float(rng.uniform(15.0, 60.0))
    snr = float(overrides.get("snr") or drawn_snr)
    fat_units = float(rng.uniform(400.0, 3000.0))
    scale = fat_units / max(values["fat"], 1e-6)
    offset = float(rng.uniform(0.0, 0.03) * fat_units)
    signal_array = clean
    noise.point_spread(signal_array, psf_weight)
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
        psf_weight,
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
        "psf_weight": round(acquired.psf_weight, 4),
        **index_hip.femur.summary(),
        **(index_hip.lesion.summary() if index_hip.lesion else {}),
        **distractors.summary(),
        **body.summary(),
    }
    if index_hip.collapse_mm:  # only when asked for, so that other cases' metadata stays as it was
        info["collapse_mm"] = round(index_hip.collapse_mm, 2)
    if bilateral:
        info["hips"] = [
            _hip_info(hip, counts, grid, index) for index, (hip, counts) in enumerate(zip(hips, hip_counts))
        ]
    return info


def _hip_info(hip: Hip, counts: tuple[int, int], grid: Grid, index: int) -> dict:
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
