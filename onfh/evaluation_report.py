"""The evaluation report: the reference study's table, Markdown, CSV, JSON and plots.

``onfh.evaluation`` measures and summarises; this module only formats and writes what it
produced, so a change of layout never touches the numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from onfh import __version__
from onfh.agreement import GRADES
from onfh.evaluation import (
    ICC_FORM,
    METRIC_TITLES,
    METRICS,
    STRUCTURE_TITLES,
    STRUCTURES,
    summarize,
)
from onfh.imageio import write_text_atomic

REPORT_FILES = ("report.json", "report.md", "cases.csv", "bland_altman.png", "confusion_matrix.png")


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
    calibration = summary.get("interval_calibration") or {}
    if calibration.get("n"):
        held = round(calibration["coverage"] * calibration["n"])
        scale = calibration.get("sd_scale_for_90_percent")
        rows.append(
            (
                "Ratio 90 % interval",
                f"holds the truth in {held}/{calibration['n']} ({100 * calibration['coverage']:.0f} %), "
                f"median width {100 * calibration['median_width']:.1f} pts"
                + ("" if scale is None else f"; sd_scale for 90 %: {scale:.2f}"),
                "not reported",
            )
        )
    kerboul = summary.get("kerboul_agreement") or {}
    if kerboul.get("n"):
        grades = f"grade {kerboul['grade_matched']}/{kerboul['n']}"
        rows.append(
            (
                "Kerboul angle",
                f"bias {kerboul['bias_deg']:+.1f} deg, mean |diff| "
                f"{kerboul['mean_absolute_difference_deg']:.1f} deg; {grades}",
                "not reported",
            )
        )
    return rows


def confusion_table(grading: dict) -> list[tuple[str, ...]]:
    """Header and rows of the grade confusion matrix (rows truth, columns prediction)."""
    header = ("truth \\ prediction", *grading["categories"])
    rows = [
        (g, *(str(c) for c in counts))
        for g, counts in zip(grading["categories"], grading["confusion_matrix"])
    ]
    return [header, *rows]


def group_table(groups: dict, title: str) -> list[tuple[str, ...]]:
    """Header and one row per group (empty without groups): cases, median Dice, grades."""
    if not groups:
        return []
    rows: list[tuple[str, ...]] = [(title, "cases", "femoral head Dice", "necrosis Dice", "grades")]
    for value, stats in groups.items():
        rows.append(
            (
                value,
                f"{stats['n_evaluated']}/{stats['n_cases']}",
                _median_iqr_text(stats["femoral_head_dice"], 3),
                _median_iqr_text(stats["necrosis_dice"], 3),
                f"{stats['grade_matched']}/{stats['grade_total']}",
            )
        )
    return rows


def group_tables(summary: dict) -> list[tuple[str, list[tuple[str, ...]]]]:
    """``(heading, table)`` for the folds and each ``--by`` column, in that order."""
    tables = [("Per fold", group_table(summary.get("per_fold", {}), "fold"))]
    for column, groups in summary.get("per_group", {}).items():
        tables.append((f"By {column}", group_table(groups, column)))
    return [(heading, table) for heading, table in tables if table]


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
    for heading, table in group_tables(summary):
        lines += ["", f"{heading}:", *_text_table(table)]
    citation = summary["reference_study"]["citation"]
    lines += ["", f"Reference: {citation} (clinical hips); synthetic data is not clinical accuracy."]
    return "\n".join(lines)


def markdown_text(report: dict) -> str:
    """``report.md``: the study's table, confusion matrix, per-fold and subgroup figures, missing cases."""
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
    for heading, table in group_tables(summary):
        lines += ["", f"## {heading}", "", *_markdown_table(table)]
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
    "case", "hip", "fold", "status",
    *(f"{s}_{m}" for s in STRUCTURES for m in METRICS),
    "true_head_volume_ml", "pred_head_volume_ml", "true_necrosis_volume_ml", "pred_necrosis_volume_ml",
    "true_ratio", "pred_ratio", "true_grade", "pred_grade", "grade_match",
    "pred_ratio_low", "pred_ratio_high", "interval_holds_truth",
    "true_kerboul_deg", "pred_kerboul_deg", "true_kerboul_grade", "pred_kerboul_grade", "resampled",
    "truth_path", "prediction_path",
)  # fmt: skip


def cases_csv(rows: Sequence[dict], group_by: Sequence[str] = ()) -> str:
    """``cases.csv``: one row per truth case, missing predictions included, ``--by`` columns last."""
    columns = [*CSV_COLUMNS, *group_by]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
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


def build_report(
    rows: list[dict], warnings: list[str], predictions: str, truth: str, group_by: Sequence[str] = ()
) -> dict:
    """The whole ``report.json`` content."""
    return {
        "onfh_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"predictions": predictions, "truth": truth},
        "group_by": list(group_by),
        "summary": summarize(rows, group_by),
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
    write_text_atomic(paths[2], cases_csv(report["cases"], report.get("group_by", ())))
    bland_altman_png([r["true_ratio"] for r in ok], [r["pred_ratio"] for r in ok], paths[3])
    confusion_matrix_png(np.array(summary["grading"]["confusion_matrix"]), GRADES, paths[4])
    return paths
