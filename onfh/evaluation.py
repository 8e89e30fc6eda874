"""Evaluation of predicted segmentations against reference labels, in the reference study's format.

Three steps, each testable alone: pair prediction files with truth files by case name
(``find_truths``, ``find_predictions``, ``pair_cases``, ``crossval_pairs``), measure every
case (``evaluate_case``: Dice, ASD, HD95 of the femoral head and the necrosis, true and
predicted ratio and grade), and summarise (``summarize``: median (IQR), grade accuracy,
confusion matrix, kappas, ICC and Bland-Altman of the ratio). ``write_report`` writes
``report.json``, ``report.md``, ``cases.csv`` and the plots.

A missing prediction is never dropped silently: it is listed, counted, and its case is a
row of ``cases.csv`` with status ``missing prediction``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh import __version__
from onfh.agreement import GRADES, bland_altman, cohen_kappas, confusion_matrix, intraclass_correlations
from onfh.errors import OnfhError
from onfh.imageio import image_suffix, write_text_atomic
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

REPORT_FILES = ("report.json", "report.md", "cases.csv", "bland_altman.png", "confusion_matrix.png")


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
    every metric is then measured with the truth's voxel spacing.
    """
    from onfh.grading import grade_label_map
    from onfh.segfile import read_segmentation, same_grid

    row: dict = {"case": pair.case_id, "fold": pair.fold, "truth_path": str(pair.truth_path)}
    if pair.prediction_path is None:
        return {**row, "prediction_path": "", "status": MISSING}, [f"{pair.case_id}: no prediction found"]
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
    spacing_xyz_mm = truth_labels.GetSpacing()
    spacing_zyx_mm = spacing_xyz_mm[::-1]  # arrays are (z, y, x)
    truth_array = sitk.GetArrayViewFromImage(truth_labels)
    predicted_array = sitk.GetArrayViewFromImage(predicted_labels)
    row.update(prediction_path=str(pair.prediction_path), status="ok", resampled=resampled)
    for structure, values in (("femoral_head", (1, 2)), ("necrosis", (2,))):
        predicted_mask, true_mask = np.isin(predicted_array, values), np.isin(truth_array, values)
        measured = overlap_metrics(predicted_mask, true_mask, spacing_zyx_mm).to_dict()
        row.update({f"{structure}_{name}": value for name, value in measured.items()})
    for side, labels in (("true", truth_array), ("pred", predicted_array)):
        result = grade_label_map(labels, spacing_xyz_mm)
        row[f"{side}_head_volume_ml"] = result.head_volume_ml
        row[f"{side}_necrosis_volume_ml"] = result.necrosis_volume_ml
        row[f"{side}_ratio"] = result.ratio
        row[f"{side}_grade"] = result.grade
        if result.grade is None:
            warnings.append(f"{pair.case_id}: no {side} grade ({result.reason})")
    graded = row["true_grade"] is not None
    row["grade_match"] = (row["true_grade"] == row["pred_grade"]) if graded else None
    return row, warnings


def evaluate_pairs(pairs: Sequence[CasePair]) -> tuple[list[dict], list[str]]:
    """Rows and warnings of every pair, in order."""
    rows, warnings = [], []
    for pair in pairs:
        row, case_warnings = evaluate_case(pair)
        rows.append(row)
        warnings.extend(case_warnings)
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


def summarize(rows: Sequence[dict]) -> dict:
    """The study's table from per-case rows: metrics, grades, ratio agreement, per fold.

    Grade accuracy counts a prediction without a grade (empty predicted head) as wrong; the
    confusion matrix and kappas use the cases where both grades exist.
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
        "reference_study": REFERENCE_STUDY,
    }
    folds = sorted({r["fold"] for r in rows if r.get("fold") is not None})
    if folds:
        summary["per_fold"] = {}
        for fold in folds:
            fold_rows = [r for r in evaluated if r["fold"] == fold]
            grading = _grading_summary(fold_rows)
            summary["per_fold"][str(fold)] = {
                "n_cases": sum(1 for r in rows if r["fold"] == fold),
                "n_evaluated": len(fold_rows),
                "femoral_head_dice": median_iqr([r["femoral_head_dice"] for r in fold_rows]),
                "necrosis_dice": median_iqr([r["necrosis_dice"] for r in fold_rows]),
                "grade_matched": grading["n_matched"],
                "grade_total": grading["n_graded"],
            }
    return summary


# ---------------------------------------------------------------- formatting


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _median_iqr_text(stats: dict, digits: int) -> str:
    if stats["median"] is None:
        text = "n/a"
    else:
        median, q1, q3 = (_number(stats[k], digits) for k in ("median", "q1", "q3"))
        text = f"{median} ({q1}-{q3})"
    if stats.get("n_infinite"):
        text += f" [{stats['n_infinite']} empty-mask case(s) excluded]"
    return text


def study_table(summary: dict) -> list[tuple[str, str, str]]:
    """(measure, this evaluation, reference study) rows of the study's table."""
    reference = summary["reference_study"]
    rows = []
    for structure in STRUCTURES:
        for metric in METRICS:
            digits = 3 if metric == "dice" else 2
            ref = reference[structure].get(metric)
            ref_text = f"{ref[0]:.2f} ({ref[1]:.2f}-{ref[2]:.2f})" if ref else "not reported"
            ours = _median_iqr_text(summary["metrics"][structure][metric], digits)
            rows.append((f"{STRUCTURE_TITLES[structure]} {METRIC_TITLES[metric]}", ours, ref_text))
    grading = summary["grading"]
    accuracy = grading["accuracy"]
    ours = f"{grading['n_matched']}/{grading['n_graded']}" + (
        f" ({100 * accuracy:.1f} %)" if accuracy is not None else ""
    )
    ref_accuracy = 100 * reference["grade_matched"] / reference["grade_total"]
    rows.append(
        (
            "Grade accuracy",
            ours,
            f"{reference['grade_matched']}/{reference['grade_total']} ({ref_accuracy:.1f} %)",
        )
    )
    for weights, value in grading["kappa"].items():
        ref_text = (
            f'{reference["weighted_kappa_unspecified"]:.2f} ("weighted", weights not stated)'
            if weights == "quadratic"
            else "not reported"
        )
        rows.append((f"Kappa {weights}", _number(value, 3), ref_text))
    ratio = summary["ratio_agreement"]
    rows.append((f"Ratio {ICC_FORM}", _number(ratio["icc"], 3), "not reported"))
    ba = ratio["bland_altman"]
    ba_text = (
        f"bias {100 * ba['bias']:+.2f} pts, limits "
        f"{100 * ba['lower_limit']:+.2f} to {100 * ba['upper_limit']:+.2f}"
        if ba["n"] >= 2
        else "n/a"
    )
    rows.append(("Ratio Bland-Altman", ba_text, "not reported"))
    return rows


def confusion_table(grading: dict) -> list[tuple[str, ...]]:
    """Header and rows of the grade confusion matrix (rows truth, columns prediction)."""
    header = ("truth \\ prediction", *grading["categories"])
    rows = [
        (g, *(str(c) for c in counts))
        for g, counts in zip(grading["categories"], grading["confusion_matrix"])
    ]
    return [header, *rows]


def fold_table(summary: dict) -> list[tuple[str, ...]]:
    """Header and one row per fold (empty without folds): cases, median Dice, grades."""
    if not summary.get("per_fold"):
        return []
    rows: list[tuple[str, ...]] = [("fold", "cases", "femoral head Dice", "necrosis Dice", "grades")]
    for fold, stats in summary["per_fold"].items():
        rows.append(
            (
                fold,
                f"{stats['n_evaluated']}/{stats['n_cases']}",
                _median_iqr_text(stats["femoral_head_dice"], 3),
                _median_iqr_text(stats["necrosis_dice"], 3),
                f"{stats['grade_matched']}/{stats['grade_total']}",
            )
        )
    return rows


def _text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _markdown_table(rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def _headed_study_table(summary: dict) -> list[tuple[str, ...]]:
    n_reference = summary["reference_study"]["n_hips"]
    heads = (
        "measure",
        f"this evaluation (n={summary['n_evaluated']})",
        f"reference study (n={n_reference} hips)",
    )
    return [heads, *study_table(summary)]


def _grading_notes(grading: dict) -> list[str]:
    """Lines explaining cases left out of the confusion matrix, if any."""
    notes = []
    if grading["n_prediction_ungraded"]:
        notes.append(
            f"{grading['n_prediction_ungraded']} prediction(s) without a grade (empty femoral head) "
            "count as misgraded in the accuracy and are left out of the matrix and kappas."
        )
    if grading["n_truth_ungraded"]:
        notes.append(f"{grading['n_truth_ungraded']} case(s) without a true grade are left out of grading.")
    return ["", *notes] if notes else []


def _counts_line(summary: dict) -> str:
    missing = summary["missing_predictions"]
    return (
        f"Evaluated {summary['n_evaluated']} of {summary['n_cases']} cases; "
        f"{summary['n_missing_predictions']} missing prediction(s)"
        + (f": {', '.join(missing)}" if missing else "")
    )


def console_text(summary: dict) -> str:
    """The study's table next to the reference study's figures, for the terminal."""
    lines = [_counts_line(summary), "", *_text_table(_headed_study_table(summary)), ""]
    lines += ["Steinberg grade confusion matrix:", *_text_table(confusion_table(summary["grading"]))]
    lines += _grading_notes(summary["grading"])
    folds = fold_table(summary)
    if folds:
        lines += ["", "Per fold:", *_text_table(folds)]
    citation = summary["reference_study"]["citation"]
    lines += ["", f"Reference: {citation} (clinical hips); synthetic data is not clinical accuracy."]
    return "\n".join(lines)


def markdown_text(report: dict) -> str:
    """``report.md``: the study's table, confusion matrix, per-fold figures, missing cases."""
    summary = report["summary"]
    source = report["source"]
    lines = [
        "# ONFH evaluation",
        "",
        f"Created {report['created']} by onfh {report['onfh_version']}. "
        f"Predictions: `{source['predictions']}`; truth: `{source['truth']}`.",
        "",
        _counts_line(summary) + ".",
        "",
        *_markdown_table(_headed_study_table(summary)),
        "",
        "## Steinberg grade confusion matrix",
        "",
        *_markdown_table(confusion_table(summary["grading"])),
        *_grading_notes(summary["grading"]),
    ]
    ratio = summary["ratio_agreement"]
    lines += [
        "",
        f"Ratio agreement over {ratio['n']} cases: {ratio['icc_form']} = {_number(ratio['icc'], 3)} "
        f"(ICC(3,1) consistency {_number(ratio['icc_consistency_3_1'], 3)}); Bland-Altman "
        f"{ratio['bland_altman_definition']}.",
        "",
        "![Bland-Altman](bland_altman.png) ![Confusion matrix](confusion_matrix.png)",
    ]
    folds = fold_table(summary)
    if folds:
        lines += ["", "## Per fold", "", *_markdown_table(folds)]
    if report.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {w}" for w in report["warnings"]]]
    lines += [
        "",
        f"Reference: {summary['reference_study']['citation']}. Figures on synthetic phantoms are not "
        "clinical accuracy.",
        "Empty-mask rules: both empty gives Dice 1 and distance 0; one empty gives Dice 0 and an "
        "infinite distance, left out of the distance medians and counted.",
        "",
    ]
    return "\n".join(lines)


CSV_COLUMNS = (
    "case", "fold", "status",
    *(f"{s}_{m}" for s in STRUCTURES for m in METRICS),
    "true_head_volume_ml", "pred_head_volume_ml", "true_necrosis_volume_ml", "pred_necrosis_volume_ml",
    "true_ratio", "pred_ratio", "true_grade", "pred_grade", "grade_match", "resampled",
    "truth_path", "prediction_path",
)  # fmt: skip


def cases_csv(rows: Sequence[dict]) -> str:
    """``cases.csv``: one row per truth case, missing predictions included."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return buffer.getvalue()


def _json_ready(value):
    """NaN and infinity are not JSON: they become ``null`` (the text files say why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    return value


def build_report(rows: list[dict], warnings: list[str], predictions: str, truth: str) -> dict:
    """The whole ``report.json`` content."""
    return {
        "onfh_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"predictions": predictions, "truth": truth},
        "summary": summarize(rows),
        "warnings": warnings,
        "cases": rows,
    }


def existing_report_files(out_dir: str | os.PathLike) -> list[Path]:
    """Report files already in ``out_dir`` (the command refuses to overwrite them unasked)."""
    return [Path(out_dir) / name for name in REPORT_FILES if (Path(out_dir) / name).exists()]


def write_report(report: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``report.json``, ``report.md``, ``cases.csv`` and both PNGs; return their paths.

    Each file is written atomically, after everything has been computed.
    """
    from onfh.plots import bland_altman_png, confusion_matrix_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = report["summary"]
    ok = [r for r in report["cases"] if r.get("status") == "ok" and r["true_ratio"] is not None]
    ok = [r for r in ok if r["pred_ratio"] is not None]
    paths = [out / name for name in REPORT_FILES]
    write_text_atomic(paths[0], json.dumps(_json_ready(report), indent=2) + "\n")
    write_text_atomic(paths[1], markdown_text(report))
    write_text_atomic(paths[2], cases_csv(report["cases"]))
    bland_altman_png([r["true_ratio"] for r in ok], [r["pred_ratio"] for r in ok], paths[3])
    confusion_matrix_png(np.array(summary["grading"]["confusion_matrix"]), GRADES, paths[4])
    return paths
