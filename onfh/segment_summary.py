"""``summary.csv`` of an ``onfh segment`` output folder: one row per case, kept in step with
the results the folder holds (this run's and earlier runs'), written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

SUMMARY_COLUMNS = (
    "case",
    "input",
    "status",
    "femoral_head_volume_ml",
    "necrosis_volume_ml",
    "necrosis_ratio",
    "necrosis_ratio_interval",
    "steinberg_grade",
    "grade_probabilities",
    "borderline",
    "combined_necrotic_angle_deg",
    "kerboul_grade",
    "quality",
    "hips",
    "seconds",
    "segmentation",
    "report",
    "error",
)


def hips_text(case_json: dict) -> str:
    """``"left C 40.0 %; right A 5.0 %"``: each hip's grade and ratio, for the summary and the CLI line."""
    return "; ".join(
        f"{hip['side']} {hip['steinberg_grade'] or 'n/a'}"
        + ("" if hip["necrosis_ratio"] is None else f" {100 * hip['necrosis_ratio']:.1f} %")
        for hip in case_json.get("hips") or []
    )


def summary_row(case: str, input_path: str, case_json: dict | None, seconds: float, error: str = "") -> dict:
    """One ``summary.csv`` row: a case's report, or its failure with the error."""
    from onfh.ratio_interval import probabilities_text

    row = dict.fromkeys(SUMMARY_COLUMNS, "")
    row.update(case=case, input=input_path, seconds=f"{seconds:.2f}")
    if case_json is None:
        row.update(status="failed", error=error)
        return row
    ratio = case_json.get("necrosis_ratio")
    passed = (case_json.get("quality") or {}).get("passed", True)
    kerboul = case_json.get("kerboul") or {}
    interval = case_json.get("necrosis_ratio_interval")
    row.update(
        status="ok" if passed else "low_confidence",
        femoral_head_volume_ml=f"{case_json['femoral_head_volume_ml']:.3f}",
        necrosis_volume_ml=f"{case_json['necrosis_volume_ml']:.3f}",
        necrosis_ratio="" if ratio is None else f"{ratio:.4f}",
        steinberg_grade=case_json.get("steinberg_grade") or "",
        necrosis_ratio_interval="" if not interval else f"{interval[0]:.4f}-{interval[1]:.4f}",
        grade_probabilities=probabilities_text(case_json.get("grade_probabilities")),
        borderline=str(bool(case_json.get("borderline"))).lower(),
        combined_necrotic_angle_deg=kerboul.get("combined_angle_deg", ""),
        kerboul_grade=kerboul.get("grade", ""),
        quality=(case_json.get("quality") or {}).get("summary", ""),
        hips=hips_text(case_json),
        segmentation=case_json["outputs"]["segmentation"],
        report=case_json["outputs"]["report"],
        error=(case_json.get("reason") or "") if passed else "",
    )
    return row


def write_summary(path: Path, rows: list[dict]) -> None:
    """``summary.csv``: one row per case, written atomically."""
    from onfh.imageio import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def read_case_report(path: Path) -> dict | None:
    """A ``<case>.json`` that ``onfh segment`` wrote, or ``None`` (absent, damaged, or another file)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(content, dict) or not {"outputs", "femoral_head_volume_ml", "input"} <= set(content):
        return None
    return content


def earlier_rows(outdir: Path, to_run: set[str]) -> dict[str, dict]:
    """Summary rows of the results ``outdir`` holds from earlier runs (read once per run),
    by case, leaving out the cases this run segments again."""
    rows = {}
    for path in sorted(outdir.glob("*.json")) if outdir.is_dir() else []:
        case = path.name[: -len(".json")]
        report = None if case in to_run else read_case_report(path)
        if report is not None:
            rows[case] = row_from_report(case, report)
    return rows


def folder_rows(run_rows: dict[str, dict], earlier: dict[str, dict], cases: list[str]) -> list[dict]:
    """``summary.csv`` rows that agree with the folder: this run's cases in input order (their
    new row, or the row of the result kept by ``--skip-existing``), then every other case
    whose result the folder holds from earlier runs, by name."""
    rows = [run_rows.get(case) or earlier[case] for case in cases if case in run_rows or case in earlier]
    listed = set(cases)
    return rows + [row for case, row in sorted(earlier.items()) if case not in listed]


def update_summary(outdir: Path, rows: list[dict]) -> None:
    """(Re)write ``summary.csv`` with ``rows`` once the folder holds any result.

    A run whose every case failed leaves a folder without results as it found it: the
    errors were on stderr, and a summary of nothing would be an output of nothing.
    """
    if any(row["status"] != "failed" for row in rows) or (outdir / "summary.csv").exists():
        write_summary(outdir / "summary.csv", rows)


def row_from_report(case: str, report: dict) -> dict:
    """The summary row of a result an earlier run left in the folder."""
    seconds = float((report.get("timings_s") or {}).get("total_s") or 0.0)
    return summary_row(case, str(report["input"].get("path", "")), report, seconds)
