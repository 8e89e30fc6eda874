"""A synthetic data set on disk: :func:`write_cohort` (what ``onfh synth`` runs).

Cases go through :func:`onfh.dataset.add_case` into the ``imagesTr``/``labelsTr``/
``dataset.json`` layout, with ``cases.csv`` holding the truth of every case. Everything is
written into a hidden staging folder first and moved into place at the end, so a failure
or Ctrl-C leaves nothing half-written under the user's folder name.

Target ratios follow the reference study's mix (grades roughly balanced, 22/23/18) with
extra cases near the 0.15 and 0.30 cut-offs, where grading errors happen: every block of
eight cases holds two A, two B, two C and one near each cut-off, in a seeded order.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from onfh.dataset import (
    CASES_CSV,
    DATASET_JSON,
    IMAGES_DIR,
    LABELS_DIR,
    add_case,
    tissue_map_path,
    write_dataset_json,
)
from onfh.errors import OnfhError
from onfh.imageio import write_image_atomic, write_text_atomic
from onfh.synthetic.anatomy import DRAWN_HEAD_DIAMETER_MM
from onfh.synthetic.geometry import ACQUISITION_ORIENTATIONS
from onfh.synthetic.lesion import LESION_SHAPES, PROBE_LESION_SHAPES
from onfh.synthetic.phantom import GENERATOR_VERSION, MAX_COLLAPSE_MM, generate_case, resolve_geometry

PREVIEW_DIR = "previews"
CONTRASTS = ("spgr", "random")
RANDOM_CONTRAST_STREAM = 7  # a stream of the case seed of its own: the anatomy stays the same
HEAD_DIAMETER_STREAM = 8  # likewise: asking for other head sizes changes nothing else
# Adult femoral heads are spheres of 19-29 mm radius (DOMAIN.md), wider than the generator's draw.
HEAD_DIAMETER_LIMITS_MM = (38.0, 58.0)
CASE_PREFIX = "synth"
RATIO_RANGES = {
    "A": (0.02, 0.145),
    "B": (0.155, 0.295),
    "C": (0.305, 0.55),
    "near_0.15": (0.12, 0.18),
    "near_0.30": (0.27, 0.33),
}
_BLOCK = ("A", "A", "B", "B", "C", "C", "near_0.15", "near_0.30")
CSV_COLUMNS = (
    "case_id",
    "case_seed",
    "image",
    "label",
    "head_volume_ml",
    "necrosis_volume_ml",
    "ratio",
    "grade",
    "laterality",
    "spacing_x_mm",
    "spacing_y_mm",
    "spacing_z_mm",
    "size",
    "orientation",
    "field_strength_t",
    "tr_ms",
    "te_ms",
    "flip_deg",
    "snr",
    "head_diameter_mm",
    "neck_shaft_angle_deg",
    "anteversion_deg",
    "lesion_shape",
    "target_ratio",
    "ratio_stratum",
    "band_mm",
    "oedema",
    "effusion",
    "intensity_scale",
    "intensity_offset",
    "subcutaneous_fat_mm",
)


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a cohort: a hash of (seed, index), stable across runs."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def ratio_plan(seed: int, cases: int) -> list[tuple[str, float]]:
    """(stratum, target ratio) per case: balanced grades plus cases near each cut-off."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    plan = []
    while len(plan) < cases:
        for stratum in rng.permutation(_BLOCK):
            low, high = RATIO_RANGES[str(stratum)]
            plan.append((str(stratum), float(rng.uniform(low, high))))
    return plan[:cases]


def check_output_folder(outdir: str | os.PathLike) -> Path:
    """Refuse an output folder that holds a data set, is a file, or cannot be written."""
    root = Path(outdir)
    if root.exists() and not root.is_dir():
        raise OnfhError(f"{root}: exists and is not a folder")
    if root.is_dir():
        taken = [name for name in (DATASET_JSON, IMAGES_DIR, LABELS_DIR, CASES_CSV) if (root / name).exists()]
        if taken:
            raise OnfhError(f"{root}: already holds a data set ({', '.join(taken)}); choose a new folder")
    existing = root if root.is_dir() else next((p for p in root.absolute().parents if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OnfhError(f"{root}: cannot write there ({existing} is not a writable folder)")
    return root


def _check_arguments(
    cases, seed, spacing_mm, size, bilateral: bool, orientation, head_diameter_mm, lesion_shape, collapse_mm
) -> None:
    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or cases < 1:
        raise OnfhError(f"--cases must be an integer >= 1, got {cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OnfhError(f"--seed must be an integer >= 0, got {seed!r}")
    if orientation is not None and orientation not in ACQUISITION_ORIENTATIONS:
        raise OnfhError(
            f"--orientation must be one of {', '.join(ACQUISITION_ORIENTATIONS)}, got {orientation!r}"
        )
    if orientation == "sagittal" and bilateral:
        raise OnfhError("--orientation sagittal cannot hold both hips: a sagittal slab images one hip")
    if head_diameter_mm is not None:
        low_limit, high_limit = HEAD_DIAMETER_LIMITS_MM
        low, high = (float(v) for v in head_diameter_mm)
        if not low_limit <= low <= high <= high_limit:
            raise OnfhError(
                f"--head-diameter-mm must be MIN MAX with {low_limit:g} <= MIN <= MAX <= {high_limit:g} "
                f"(adult femoral heads), got {low:g} {high:g}"
            )
    shapes = LESION_SHAPES + PROBE_LESION_SHAPES
    if lesion_shape is not None and lesion_shape not in shapes:
        raise OnfhError(f"--lesion-shape must be one of {', '.join(shapes)}, got {lesion_shape!r}")
    if not 0.0 <= float(collapse_mm) <= MAX_COLLAPSE_MM:
        raise OnfhError(f"--collapse-mm must be within 0-{MAX_COLLAPSE_MM:g} mm, got {collapse_mm:g}")
    try:
        resolve_geometry(spacing_mm, size, bilateral)
    except ValueError as error:
        raise OnfhError(str(error)) from None


def _row(case_id: str, seed: int, stratum: str, info: dict) -> dict:
    spacing = info["spacing_mm"]
    protocol = info["protocol"]
    row = {
        "case_id": case_id,
        "case_seed": seed,
        "image": f"{IMAGES_DIR}/{case_id}_0000.nii.gz",
        "label": f"{LABELS_DIR}/{case_id}.nii.gz",
        "spacing_x_mm": spacing[0],
        "spacing_y_mm": spacing[1],
        "spacing_z_mm": spacing[2],
        "size": "x".join(str(n) for n in info["size"]),
        "ratio_stratum": stratum,
        **{key: protocol[key] for key in ("field_strength_t", "tr_ms", "te_ms", "flip_deg")},
    }
    for column in CSV_COLUMNS:
        if column not in row:
            row[column] = info.get(column)
    return row


def write_cohort(
    outdir: str | os.PathLike,
    cases: int,
    seed: int,
    spacing_mm: tuple[float, float, float] | None = None,
    size: tuple[int, int, int] | None = None,
    bilateral: bool = False,
    preview: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    tissue_maps: bool = False,
    contrast: str = "spgr",
    orientation: str | None = None,
    head_diameter_mm: tuple[float, float] | None = None,
    lesion_shape: str | None = None,
    collapse_mm: float = 0.0,
) -> list[dict]:
    """Write ``cases`` synthetic hips into ``outdir`` (a new or empty folder).

    Args:
        outdir: output folder; must not already hold a data set.
        cases: number of cases (>= 1).
        seed: cohort seed; the same seed and arguments give the same bytes.
        spacing_mm: voxel size (x, y, z), ``None`` for the generator's default.
        size: voxels (x, y, z), ``None`` for 256x256x120.
        bilateral: both hips in a wide field of view.
        preview: also write ``previews/<case>.png``.
        progress: called as ``progress(done, total, row)`` after each case.
        tissue_maps: also write ``tissuesTr/<case>.nii.gz``, the label map of every
            voxel's tissue, which contrast-randomised training draws images from.
        contrast: ``"spgr"`` (physical 3D SPGR signal) or ``"random"``: images rendered
            from the tissue map with random intensities, texture, resolution, bias and
            noise (:mod:`onfh.training.contrast`, needs torch and MONAI), the other
            generator of the leave-one-generator-out evaluation.
        orientation: every case acquired ``axial``, ``coronal``, ``sagittal`` or
            ``oblique``; ``None`` draws axial, coronal or oblique per case (never
            sagittal, so that existing seeds keep their images).
        head_diameter_mm: ``(min, max)``: each head's diameter drawn uniformly from this
            range (within 38-58 mm) instead of the generator's 42-50 mm, from a stream of
            its own so that everything else about each case stays the same.
        lesion_shape: every lesion a ``cap``, ``wedge``, ``ellipsoid`` or ``lobed`` (the last
            two never drawn: an ellipsoid anywhere on the upper half of the head, or two
            merged; probes of lesions unlike the drawn ones); ``None`` draws cap or wedge.
        collapse_mm: every lesioned head's dome over its lesion pushed in flat by this
            many millimetres (0-8; collapse, Steinberg stage III-IV; never drawn).

    Returns:
        One ``cases.csv`` row (a dict) per case.

    Raises:
        OnfhError: bad arguments or output folder; nothing is written then.
    """
    _check_arguments(
        cases, seed, spacing_mm, size, bilateral, orientation, head_diameter_mm, lesion_shape, collapse_mm
    )
    if contrast not in CONTRASTS:
        raise OnfhError(f"contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")
    render = _random_renderer() if contrast == "random" else None
    root = check_output_folder(outdir)
    staging = _staging_folder(root)
    rows: list[dict] = []
    try:
        for index, (stratum, ratio) in enumerate(ratio_plan(seed, int(cases))):
            case_id = f"{CASE_PREFIX}_{index:03d}"
            this_seed = case_seed(seed, index)
            diameter_mm = None
            if head_diameter_mm is not None:
                diameter_mm = float(
                    np.random.default_rng([this_seed, HEAD_DIAMETER_STREAM]).uniform(*head_diameter_mm)
                )
            try:
                case = generate_case(
                    this_seed,
                    spacing_mm,
                    size,
                    bilateral,
                    ratio=ratio,
                    orientation=orientation,
                    head_diameter_mm=diameter_mm,
                    lesion_shape=lesion_shape,
                    collapse_mm=float(collapse_mm),
                    tissue_map=tissue_maps or bool(render),
                )
            except ValueError as error:
                raise OnfhError(f"case {case_id}: {error}") from None
            if render is not None:
                randomised = sitk.GetImageFromArray(
                    render(case.tissue_labels, np.random.default_rng([this_seed, RANDOM_CONTRAST_STREAM]))
                )
                randomised.CopyInformation(case.image)
                case.image = randomised
                case.info["contrast"] = "random"
            files = add_case(staging, case_id, case.image, case.label, description=_description(seed))
            if tissue_maps:
                tissues = sitk.GetImageFromArray(case.tissue_labels)
                tissues.CopyInformation(case.label)
                write_image_atomic(tissues, tissue_map_path(files))
            if preview:
                from onfh.preview import write_preview

                title = (
                    f"{case_id}: grade {case.info['grade']}, ratio {case.info['ratio']:.3f} "
                    f"({case.info['orientation']}, {case.info['laterality']})"
                )
                write_preview(case.image, case.label, staging / PREVIEW_DIR / f"{case_id}.png", title=title)
            rows.append(_row(case_id, this_seed, stratum, case.info))
            if progress is not None:
                progress(index + 1, int(cases), rows[-1])
        extra = {
            "generator": "onfh.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "bilateral": bool(bilateral),
            "tissue_maps": bool(tissue_maps),
            "contrast": contrast,
            "orientation": orientation or "drawn per case",
            "head_diameter_mm": (
                list(head_diameter_mm)
                if head_diameter_mm
                else "{:g}-{:g} (drawn)".format(*DRAWN_HEAD_DIAMETER_MM)
            ),
            "lesion_shape": lesion_shape or "cap or wedge (drawn)",
            "collapse_mm": float(collapse_mm),
            "cases_csv": CASES_CSV,
        }
        write_dataset_json(staging, description=_description(seed), extra=extra, name=root.resolve().name)
        write_text_atomic(staging / CASES_CSV, _csv_text(rows))
        _publish(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return rows


def _random_renderer():
    """The randomised-contrast renderer, or a clear error where torch and MONAI are missing."""
    try:
        from onfh.training.contrast import random_contrast_scan
    except ImportError as error:
        raise OnfhError(
            f"--contrast random needs the training dependencies ({error.name} is missing): "
            'pip install "onfh[train]"'
        ) from None
    return random_contrast_scan


def _description(seed: int) -> str:
    return (
        f"Synthetic T1-weighted 3D SPGR hip MRIs with exact femoral head and necrosis labels "
        f"(onfh.synthetic v{GENERATOR_VERSION}, seed {seed}); not clinical data."
    )


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in CSV_COLUMNS})
    return buffer.getvalue()


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def _staging_folder(root: Path) -> Path:
    """A hidden folder for the work in progress: inside ``root`` if it exists, else beside it.

    Beside means in the nearest existing ancestor, so missing parent folders are only
    created when the finished data set is moved into place.
    """
    if root.is_dir():
        parent, name = root, f".onfh-synth-partial-{os.getpid()}"
    else:
        parent = next(p for p in root.absolute().parents if p.exists())
        name = f".{root.name}.onfh-synth-partial-{os.getpid()}"
    staging = parent / name
    try:
        staging.mkdir()
    except OSError as error:
        raise OnfhError(f"{root}: cannot write there ({error.strerror})") from None
    return staging


def _publish(staging: Path, root: Path) -> None:
    """Move the finished data set into place."""
    if not root.exists():
        root.absolute().parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, root)
        return
    for entry in sorted(staging.iterdir()):
        os.replace(entry, root / entry.name)
    staging.rmdir()
