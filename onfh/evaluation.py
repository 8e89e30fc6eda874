"""Evaluation of predicted segmentations against reference labels, in the reference study's format.

Three steps, each testable alone: pair prediction files with truth files by case name
(``find_truths``, ``find_predictions``, ``pair_cases``, ``crossval_pairs``), measure every
case (``evaluate_case``: Dice, ASD, HD95 of the femoral head and the necrosis, true and
predicted ratio and grade), and summarise (``summarize``: median (IQR), grade accuracy,
confusion matrix, kappas, ICC and Bland-Altman of the ratio). ``onfh.evaluation_report``
writes ``report.json``, ``report.md``, ``cases.csv`` and the plots.

A missing prediction is never dropped silently: it is listed, counted, and its case is a
row of ``cases.csv`` with status ``missing prediction``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.agreement import GRADES, bland_altman, cohen_kappas, confusion_matrix, intraclass_correlations
from onfh.errors import OnfhError
from onfh.imageio import image_suffix
from onfh.metrics import overlap_metrics

SEG_SUFFIX = ".seg.nrrd"
LABEL_TAG = "_label"
STRUCTURES = ("femoral_head", "necrosis")
METRICS = ("dice", "asd_mm", "hd95_mm")
STRUCTURE_TITLES = {"femoral_head": "Femoral head", "necrosis": "Necrosis"}
METRIC_TITLES = {"dice": "Dice", "asd_mm": "ASD (mm)", "hd95_mm": "HD95 (mm)"}
ICC_FORM = "ICC(2,1)"  # two-way random, absolute agreement, single measure
MISSING = "missing prediction"

# Uemura et al., J Arthroplasty 2025 (DOMAIN.md): median (Q1, Q3), 63 pre-collapse hips.
REFERENCE_STUDY = {
    "citation": "Uemura K, Takashima K, Otake Y, et al. J Arthroplasty 2025;40(10 Suppl 1):S160-S166",
    "n_hips": 63,
    "true_grade_counts": {"A": 22, "B": 23, "C": 18},
    "femoral_head": {"dice": [0.95, 0.95, 0.96], "asd_mm": [0.65, 0.59, 0.75]},
    "necrosis": {"dice": [0.89, 0.85, 0.92], "asd_mm": [0.76, 0.58, 0.96]},
    "grade_matched": 59,
    "grade_total": 63,
    "weighted_kappa_unspecified": 0.98,
}


@dataclass(frozen=True)
class CasePair:
    """A truth file and its prediction (``None`` when missing); ``fold`` in cross-validation."""

    case_id: str
    truth_path: Path
    prediction_path: Path | None
    fold: int | None = None


# ---------------------------------------------------------------- finding the files


def _strip_suffix(name: str) -> str | None:
    if name.lower().endswith(SEG_SUFFIX):
        return name[: -len(SEG_SUFFIX)]
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else None


def find_truths(truth_dir: str | os.PathLike) -> dict[str, Path]:
    """Truth label files of a folder (or of its ``labelsTr/``), by case name.

    ``<case>.nii.gz`` (any NIfTI/NRRD/MHA label file) or ``<case>.seg.nrrd``, top level only,
    so a dataset's images are never mistaken for labels.

    Raises:
        OnfhError: no folder, no label file, or two files for one case.
    """
    folder = Path(truth_dir)
    if not folder.is_dir():
        raise OnfhError(f"{folder}: no such folder (--truth)")
    if (folder / "labelsTr").is_dir():
        folder = folder / "labelsTr"
    truths: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case = _strip_suffix(path.name)
        if path.name.startswith(".") or not path.is_file() or case is None:
            continue
        if case in truths:
            raise OnfhError(f"{folder}: two truth files for case {case!r}: {truths[case].name}, {path.name}")
        truths[case] = path
    if not truths:
        raise OnfhError(f"{folder}: no truth label files (<case>.nii.gz or <case>.seg.nrrd)")
    return truths


def _preference(path: Path) -> int:
    """Lower is preferred when one folder holds a case in several forms."""
    name = path.name.lower()
    if name.endswith(SEG_SUFFIX):
        return 0
    return 1 if (_strip_suffix(path.name) or "").endswith(LABEL_TAG) else 2


def find_predictions(
    pred_dir: str | os.PathLike, case_ids: Sequence[str], exclude: Sequence[Path] = ()
) -> tuple[dict[str, Path], list[Path]]:
    """Prediction files under ``pred_dir`` (recursively) for the given case ids.

    A file predicts ``<case>`` when it is ``<case>.seg.nrrd``, ``<case>_label.<ext>`` or
    ``<case>.<ext>`` (``ext`` a NIfTI/NRRD/MHA suffix). Where one folder holds a case in
    several forms (``onfh segment`` next to its input MRI), ``.seg.nrrd`` wins, then
    ``_label``; the same case in two folders is ambiguous and refused.

    Files in ``exclude`` (the truth files, when the truth folder lies under ``pred_dir``)
    are skipped, so a truth is never scored against itself.

    Returns:
        The prediction path of every case found, and the image files that matched no case.

    Raises:
        OnfhError: no such folder, or one case predicted in two folders.
    """
    root = Path(pred_dir)
    if not root.is_dir():
        raise OnfhError(f"{root}: no such folder (--pred)")
    wanted = set(case_ids)
    skipped = {Path(p).resolve() for p in exclude}
    found: dict[str, Path] = {}
    unmatched: list[Path] = []
    for path in sorted(root.rglob("*")):
        base = _strip_suffix(path.name)
        if path.name.startswith(".") or base is None or not path.is_file() or path.resolve() in skipped:
            continue
        candidates = [base] + ([base[: -len(LABEL_TAG)]] if base.endswith(LABEL_TAG) else [])
        case = next((c for c in candidates if c in wanted), None)
        if case is None:
            unmatched.append(path)
            continue
        previous = found.get(case)
        if previous is not None and previous.parent != path.parent:
            raise OnfhError(
                f"case {case!r} has predictions in two folders ({previous}, {path}); point --pred at one"
            )
        if previous is None or _preference(path) < _preference(previous):
            found[case] = path
    return found, unmatched


def pair_cases(truths: dict[str, Path], predictions: dict[str, Path]) -> list[CasePair]:
    """One ``CasePair`` per truth case, sorted by case id; missing predictions are ``None``."""
    return [CasePair(case, truths[case], predictions.get(case)) for case in sorted(truths)]


def crossval_pairs(model_dir: str | os.PathLike) -> tuple[list[CasePair], Path]:
    """The validation cases of every fold of ``MODEL_DIR/crossval`` with their predictions.

    Truth is ``<dataset>/labelsTr/<case>.nii.gz``; the prediction is
    ``crossval/fold_<k>/predictions/<case>.nii.gz``.

    Returns:
        The pairs (sorted by fold, then case) and the dataset folder.

    Raises:
        OnfhError: no ``crossval.json``, or a truth label file is missing.
    """
    # The layout's names come from the trainer that writes it: one source of truth.
    from onfh.dataset import case_paths
    from onfh.training.folds import CROSSVAL_DIR, read_crossval_json
    from onfh.training.trainer import PREDICTION_SUFFIX, PREDICTIONS_DIR

    crossval = Path(model_dir) / CROSSVAL_DIR
    dataset, split = read_crossval_json(model_dir)
    dataset_dir = Path(dataset)
    if not dataset_dir.is_absolute():
        dataset_dir = (crossval / dataset_dir).resolve()
    pairs = []
    for fold, cases in enumerate(split):
        for case in sorted(cases):
            truth = case_paths(dataset_dir, case).label_path
            if not truth.is_file():
                raise OnfhError(f"{truth}: truth label of cross-validation case {case!r} is missing")
            prediction = crossval / f"fold_{fold}" / PREDICTIONS_DIR / f"{case}{PREDICTION_SUFFIX}"
            pairs.append(CasePair(case, truth, prediction if prediction.is_file() else None, fold))
    if not pairs:
        raise OnfhError(f"{crossval}: crossval.json lists no cases")
    return pairs, dataset_dir


# ---------------------------------------------------------------- measuring


MAX_GRID_GROWTH = 8  # a scoring grid beyond 8x the truth's voxels means mismatched geometry


def _foreground_index_box(image: sitk.Image) -> tuple[list[int], list[int]] | None:
    """First and last foreground index per axis, in SimpleITK (x, y, z) order; None if empty."""
    array = sitk.GetArrayViewFromImage(image)
    first, last = [], []
    for axis in (2, 1, 0):
        present = np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis)))
        if present.size == 0:
            return None
        first.append(int(present[0]))
        last.append(int(present[-1]))
    return first, last


def scoring_grid(truth_image: sitk.Image, prediction_image: sitk.Image) -> tuple[sitk.Image, bool]:
    """The grid a prediction on another grid is scored on, and whether it extends the truth's.

    The truth grid, grown by whole voxels (same spacing, direction and lattice, so the
    truth moves exactly) until it holds every predicted foreground voxel: a prediction
    reaching past a cropped truth file keeps its false positives. Growth beyond
    ``MAX_GRID_GROWTH`` times the voxels is refused (the truth grid is returned).
    """
    box = _foreground_index_box(prediction_image)
    if box is None:
        return truth_image, False
    corners = itertools.product(*[(lo - 0.5, hi + 0.5) for lo, hi in zip(*box)])
    indices = np.array(
        [
            truth_image.TransformPhysicalPointToContinuousIndex(
                prediction_image.TransformContinuousIndexToPhysicalPoint(corner)
            )
            for corner in corners
        ]
    )
    size = np.array(truth_image.GetSize())
    # Truth voxel centres inside the predicted region; the 1e-6 keeps centres on its edge.
    low = np.minimum(np.ceil(indices.min(axis=0) - 1e-6), 0).astype(int)
    high = np.maximum(np.floor(indices.max(axis=0) + 1e-6), size - 1).astype(int)
    new_size = high - low + 1
    if (low == 0).all() and (high == size - 1).all():
        return truth_image, False
    if np.prod(new_size.astype(float)) > MAX_GRID_GROWTH * np.prod(size.astype(float)):
        return truth_image, False
    grid = sitk.Image([int(n) for n in new_size], sitk.sitkUInt8)
    grid.SetSpacing(truth_image.GetSpacing())
    grid.SetDirection(truth_image.GetDirection())
    grid.SetOrigin(truth_image.TransformContinuousIndexToPhysicalPoint([float(v) for v in low]))
    return grid, True


def _on_grid(labels: sitk.Image, grid: sitk.Image) -> sitk.Image:
    return sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def evaluate_case(pair: CasePair) -> tuple[dict, list[str]]:
    """Metrics, ratios and grades of one case (a ``cases.csv`` row) and its warnings.

    A prediction on another grid is resampled (nearest neighbour) onto the truth grid,
    grown if needed so no predicted voxel is dropped (``scoring_grid``), with a warning;
    every metric is then measured with the truth's voxel spacing. Both hips of a
    bilateral truth are pooled here; ``evaluate_case_per_hip`` separates them.
    """
    rows, warnings = _evaluate(pair, per_hip=False)
    return rows[0], warnings


def evaluate_case_per_hip(pair: CasePair) -> tuple[list[dict], list[str]]:
    """``evaluate_case``, split into one row per hip when the truth shows both (``hip`` column).

    The split and the pairing of predicted with true heads are ``onfh.bilateral``'s: every
    voxel belongs to the hip on its side of the plane midway between the two true head centres.
    """
    return _evaluate(pair, per_hip=True)


def _evaluate(pair: CasePair, per_hip: bool) -> tuple[list[dict], list[str]]:
    from onfh.bilateral import bilateral_sides

    row: dict = {"case": pair.case_id, "fold": pair.fold, "truth_path": str(pair.truth_path)}
    if pair.prediction_path is None:
        return [{**row, "prediction_path": "", "status": MISSING}], [f"{pair.case_id}: no prediction found"]
    truth_labels, predicted_labels, resampled, warnings = _labels_on_one_grid(pair)
    truth_array = sitk.GetArrayViewFromImage(truth_labels)
    predicted_array = sitk.GetArrayViewFromImage(predicted_labels)
    row.update(prediction_path=str(pair.prediction_path), status="ok", resampled=resampled)
    spacing_xyz_mm = truth_labels.GetSpacing()
    sides = bilateral_sides(truth_array, truth_labels) if per_hip else None
    if sides is None:
        row = _measure(row, truth_array, predicted_array, spacing_xyz_mm, warnings)
        row.update(_interval_fields(pair, row["true_ratio"]))
        return [_kerboul_fields(row, truth_array, predicted_array, truth_labels)], warnings
    rows = []
    for side, mask in sides:
        hip_row = {**row, "hip": side}
        name = f"{pair.case_id} ({side} hip)"
        truth_side, predicted_side = np.where(mask, truth_array, 0), np.where(mask, predicted_array, 0)
        hip_row = _measure(hip_row, truth_side, predicted_side, spacing_xyz_mm, warnings, name)
        rows.append(_kerboul_fields(hip_row, truth_side, predicted_side, truth_labels))
    return rows, warnings


def _labels_on_one_grid(pair: CasePair) -> tuple[sitk.Image, sitk.Image, bool, list[str]]:
    """Truth and prediction label images on one grid, whether the prediction was resampled,
    and the warnings that says."""
    from onfh.segfile import read_segmentation, same_grid

    truth_labels = read_segmentation(pair.truth_path).image
    predicted_labels = read_segmentation(pair.prediction_path).image
    warnings = []
    resampled = not same_grid(predicted_labels, truth_labels)
    if resampled:
        grid, extended = scoring_grid(truth_labels, predicted_labels)
        warnings.append(
            f"{pair.prediction_path}: grid differs from its truth {pair.truth_path.name}; resampled onto "
            + ("the truth grid, extended to hold the whole prediction" if extended else "the truth grid")
            + " (nearest neighbour)"
        )
        truth_labels = _on_grid(truth_labels, grid) if extended else truth_labels
        had_foreground = _foreground_index_box(predicted_labels) is not None
        predicted_labels = _on_grid(predicted_labels, grid)
        if had_foreground and _foreground_index_box(predicted_labels) is None:
            warnings.append(
                f"{pair.prediction_path}: its segmentation lies outside the truth image; "
                "check that both files belong to the same MRI"
            )
    return truth_labels, predicted_labels, resampled, warnings


def _measure(row: dict, truth_array, predicted_array, spacing_xyz_mm, warnings: list, name: str = "") -> dict:
    """Fill ``row`` with the overlap metrics, volumes, ratios and grades of one label pair."""
    from onfh.grading import grade_label_map

    spacing_zyx_mm = tuple(spacing_xyz_mm)[::-1]  # arrays are (z, y, x)
    for structure, values in (("femoral_head", (1, 2)), ("necrosis", (2,))):
        predicted_mask, true_mask = np.isin(predicted_array, values), np.isin(truth_array, values)
        measured = overlap_metrics(predicted_mask, true_mask, spacing_zyx_mm).to_dict()
        row.update({f"{structure}_{key}": value for key, value in measured.items()})
    for side, labels in (("true", truth_array), ("pred", predicted_array)):
        result = grade_label_map(labels, spacing_xyz_mm)
        row[f"{side}_head_volume_ml"] = result.head_volume_ml
        row[f"{side}_necrosis_volume_ml"] = result.necrosis_volume_ml
        row[f"{side}_ratio"] = result.ratio
        row[f"{side}_grade"] = result.grade
        if result.grade is None:
            warnings.append(f"{name or row['case']}: no {side} grade ({result.reason})")
    graded = row["true_grade"] is not None
    row["grade_match"] = (row["true_grade"] == row["pred_grade"]) if graded else None
    return row


def _kerboul_fields(row: dict, truth_array, predicted_array, reference: sitk.Image) -> dict:
    """True and predicted Kerboul combined necrotic angle and grade of one label pair."""
    from onfh.report import kerboul_report

    for side, array in (("true", truth_array), ("pred", predicted_array)):
        labels = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.uint8))
        labels.CopyInformation(reference)
        kerboul = kerboul_report(labels)
        row[f"{side}_kerboul_deg"] = None if kerboul is None else kerboul["combined_angle_deg"]
        row[f"{side}_kerboul_grade"] = None if kerboul is None else kerboul["grade"]
    return row


def _interval_fields(pair: CasePair, true_ratio: float | None) -> dict:
    """The interval ``onfh segment`` stated for this prediction (its ``<case>.json`` beside
    the segmentation) and whether it holds the true ratio; empty without such a report."""
    import json

    report_path = Path(pair.prediction_path).parent / f"{pair.case_id}.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    interval = report.get("necrosis_ratio_interval") if isinstance(report, dict) else None
    if not interval or true_ratio is None:
        return {}
    uncertainty = report.get("uncertainty") or {}
    return {
        "pred_ratio_low": interval[0],
        "pred_ratio_high": interval[1],
        "interval_holds_truth": bool(interval[0] <= true_ratio <= interval[1]),
        "reported_ratio": report.get("necrosis_ratio"),
        "member_sd": uncertainty.get("member_sd"),
        "sd_scale": uncertainty.get("sd_scale"),
    }


def evaluate_pairs(pairs: Sequence[CasePair]) -> tuple[list[dict], list[str]]:
    """Rows (one per hip of a bilateral truth) and warnings of every pair, in order.

    When any truth is bilateral, the first warning says how its hips were paired.
    """
    from onfh.bilateral import PAIRING

    rows, warnings = [], []
    for pair in pairs:
        case_rows, case_warnings = evaluate_case_per_hip(pair)
        rows.extend(case_rows)
        warnings.extend(case_warnings)
    bilateral = sorted({row["case"] for row in rows if row.get("hip")})
    if bilateral:
        warnings.insert(0, f"{len(bilateral)} case(s) with both hips: {PAIRING}")
    return rows, warnings


# ---------------------------------------------------------------- summarising


def median_iqr(values: Sequence[float]) -> dict:
    """Median, first and third quartile (linear interpolation) of the finite values.

    Infinite values (a surface distance to an empty mask) are counted in ``n_infinite`` and
    left out of the quantiles, so one missed lesion cannot turn the median into ``inf``.
    """
    array = np.asarray([v for v in values if v is not None], dtype=float)
    finite = array[np.isfinite(array)]
    summary = {"n": int(finite.size), "n_infinite": int(np.isinf(array).sum())}
    if finite.size == 0:
        return {**summary, "median": None, "q1": None, "q3": None}
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return {**summary, "median": float(median), "q1": float(q1), "q3": float(q3)}


def _grading_summary(rows: Sequence[dict]) -> dict:
    graded = [r for r in rows if r.get("true_grade") is not None]
    both = [r for r in graded if r["pred_grade"] is not None]
    matrix = confusion_matrix([r["true_grade"] for r in both], [r["pred_grade"] for r in both], GRADES)
    matched = sum(1 for r in graded if r["grade_match"])
    return {
        "n_graded": len(graded),
        "n_matched": matched,
        "accuracy": matched / len(graded) if graded else None,
        "n_prediction_ungraded": len(graded) - len(both),
        "n_truth_ungraded": sum(1 for r in rows if r.get("status") == "ok" and r["true_grade"] is None),
        "categories": list(GRADES),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_layout": "rows: true grade, columns: predicted grade",
        "true_grade_counts": {g: sum(1 for r in graded if r["true_grade"] == g) for g in GRADES},
        "kappa": cohen_kappas(matrix),
    }


def _ratio_summary(rows: Sequence[dict]) -> dict:
    pairs = [(r["true_ratio"], r["pred_ratio"]) for r in rows if r.get("status") == "ok"]
    pairs = [(t, p) for t, p in pairs if t is not None and p is not None]
    truth = [t for t, _ in pairs]
    prediction = [p for _, p in pairs]
    icc = intraclass_correlations(np.array(pairs)) if len(pairs) >= 2 else {}
    return {
        "n": len(pairs),
        "icc_form": f"{ICC_FORM}: two-way random effects, absolute agreement, single measure",
        "icc": icc.get(ICC_FORM, math.nan),
        "icc_consistency_3_1": icc.get("ICC(3,1)", math.nan),
        "bland_altman": bland_altman(truth, prediction).to_dict(),
        "bland_altman_definition": "prediction - truth, ratio units (0-1); limits bias ± 1.96 SD",
    }


def _kerboul_summary(rows: Sequence[dict]) -> dict:
    """Agreement of the combined necrotic angle (prediction - truth, degrees) and its grade."""
    pairs = [
        (r.get("true_kerboul_deg"), r.get("pred_kerboul_deg"), r) for r in rows if r.get("status") == "ok"
    ]
    pairs = [(t, p, r) for t, p, r in pairs if t is not None and p is not None]
    differences = np.array([p - t for t, p, _ in pairs], dtype=float)
    matched = sum(1 for _, _, r in pairs if r["true_kerboul_grade"] == r["pred_kerboul_grade"])
    return {
        "n": len(pairs),
        "bias_deg": float(differences.mean()) if len(pairs) else None,
        "mean_absolute_difference_deg": float(np.abs(differences).mean()) if len(pairs) else None,
        "median_absolute_difference_deg": float(np.median(np.abs(differences))) if len(pairs) else None,
        "grade_matched": matched,
        "definition": "combined necrotic angle (Ha et al. 2006) of the largest head, prediction - truth",
    }


def _interval_summary(rows: Sequence[dict]) -> dict:
    """How often the stated 90 % interval held the true ratio, and the ``sd_scale`` that
    would have made it hold in 90 % of these cases (fit it on one set, check on another)."""
    from onfh.ratio_interval import sd_scale_for_coverage

    stated = [r for r in rows if r.get("status") == "ok" and r.get("interval_holds_truth") is not None]
    if not stated:
        return {"n": 0}
    widths = [r["pred_ratio_high"] - r["pred_ratio_low"] for r in stated]
    fitted = [r for r in stated if r.get("member_sd") and r.get("reported_ratio") is not None]
    needed = sd_scale_for_coverage(
        [r["reported_ratio"] - r["true_ratio"] for r in fitted],
        [r["member_sd"] * (r.get("sd_scale") or 1.0) for r in fitted],
    )
    scales = sorted({r.get("sd_scale") for r in stated if r.get("sd_scale") is not None})
    return {
        "n": len(stated),
        "coverage": sum(1 for r in stated if r["interval_holds_truth"]) / len(stated),
        "stated_level": 0.9,
        "median_width": float(np.median(widths)),
        "sd_scale_used": scales,
        "sd_scale_for_90_percent": None
        if not fitted
        else float(needed) * (scales[0] if len(scales) == 1 else 1.0),
    }


def _natural_key(value) -> tuple:
    text = str(value)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def group_summary(rows: Sequence[dict], key: str) -> dict[str, dict]:
    """Cases, median (IQR) Dice and grades right per value of ``rows[i][key]`` (fold, side, ...).

    Rows whose ``key`` is ``None`` belong to no group.
    """
    values = sorted({row[key] for row in rows if row.get(key) is not None}, key=_natural_key)
    groups = {}
    for value in values:
        members = [row for row in rows if row.get(key) == value]
        evaluated = [row for row in members if row.get("status") == "ok"]
        grading = _grading_summary(evaluated)
        groups[str(value)] = {
            "n_cases": len(members),
            "n_evaluated": len(evaluated),
            "femoral_head_dice": median_iqr([r["femoral_head_dice"] for r in evaluated]),
            "necrosis_dice": median_iqr([r["necrosis_dice"] for r in evaluated]),
            "grade_matched": grading["n_matched"],
            "grade_total": grading["n_graded"],
        }
    return groups


def summarize(rows: Sequence[dict], group_by: Sequence[str] = ()) -> dict:
    """The study's table from per-case rows: metrics, grades, ratio agreement, per fold.

    Grade accuracy counts a prediction without a grade (empty predicted head) as wrong; the
    confusion matrix and kappas use the cases where both grades exist. ``group_by`` names
    row fields (attached from a case table) to summarise per value as well.
    """
    evaluated = [r for r in rows if r.get("status") == "ok"]
    summary = {
        "n_cases": len(rows),
        "n_evaluated": len(evaluated),
        "n_missing_predictions": len(rows) - len(evaluated),
        "missing_predictions": [r["case"] for r in rows if r.get("status") != "ok"],
        "metrics": {
            s: {m: median_iqr([r[f"{s}_{m}"] for r in evaluated]) for m in METRICS} for s in STRUCTURES
        },
        "grading": _grading_summary(evaluated),
        "ratio_agreement": _ratio_summary(evaluated),
        "kerboul_agreement": _kerboul_summary(evaluated),
        "interval_calibration": _interval_summary(evaluated),
        "reference_study": REFERENCE_STUDY,
    }
    if any(r.get("fold") is not None for r in rows):
        summary["per_fold"] = group_summary(rows, "fold")
    if group_by:
        summary["per_group"] = {column: group_summary(rows, column) for column in group_by}
    return summary


# ---------------------------------------------------------------- formatting
