"""The per-case JSON report shared by ``onfh segment`` and ``onfh grade --json``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import SimpleITK as sitk

from onfh import __version__
from onfh.grading import GradeResult


def input_info(path: str | os.PathLike, image: sitk.Image) -> dict:
    """Path, size (voxels), spacing (mm) and orientation of an input image."""
    return {
        "path": str(path),
        "size": list(image.GetSize()),
        "spacing_mm": [round(s, 6) for s in image.GetSpacing()],
        "origin_mm": [round(o, 6) for o in image.GetOrigin()],
        "direction": [round(d, 6) for d in image.GetDirection()],
    }


def case_report(result: GradeResult, input: dict, model: dict | None = None, **extra) -> dict:
    """The JSON-ready report of one hip (ARCHITECTURE.md section 4).

    Args:
        result: grading result.
        input: ``input_info`` of the image (or segmentation) the grade refers to.
        model: ``{"id": ..., "sha256": ...}`` of the model that segmented it, if any.
        extra: further top-level fields (timings, device, truth, ...).
    """
    report = result.to_dict()
    report["necrosis_percent"] = None if result.ratio is None else round(100.0 * result.ratio, 1)
    report["model"] = model
    report["input"] = input
    report["onfh_version"] = __version__
    report.update(extra)
    return report


def kerboul_report(label: sitk.Image) -> dict | None:
    """Kerboul angles of the largest femoral head in a 0/1/2 label image, or ``None`` without one.

    A bilateral label's second head is left out: a combined necrotic angle belongs to one hip
    (``kerboul_reports`` gives each hip its own).
    """
    return kerboul_reports(label)[0]


def kerboul_reports(label: sitk.Image, centres_mm: Sequence = ()) -> tuple[dict | None, list[dict | None]]:
    """Kerboul angles of the largest head, and of each hip: the head component nearest each of
    ``centres_mm`` (LPS mm).

    Each head is measured once: in a bilateral scan the largest head is also one of the hips,
    and its rays, sphere fit and component extraction are the costly part.
    """
    import numpy as np

    from onfh.kerboul import combined_necrotic_angle, head_components

    heads = head_components(label, max_heads=max(1, len(centres_mm)))
    measured = [combined_necrotic_angle(head) for head in heads]
    largest = measured[0].to_dict() if measured and measured[0] is not None else None
    results = [r for r in measured if r is not None]
    per_hip: list[dict | None] = []
    for centre in centres_mm:
        if not results:
            per_hip.append(None)
            continue
        distances = [np.linalg.norm(np.subtract(r.head_centre_mm, centre)) for r in results]
        per_hip.append(results[int(np.argmin(distances))].to_dict())
    return largest, per_hip


def flag_low_confidence(report: dict, quality: dict) -> dict:
    """Attach the sphere check (``quality``) to a report; a failed check withholds the grade.

    A grade from a crop that is not a femoral head (muscle, half a head) is worse than
    none: ``steinberg_grade`` becomes ``None`` with ``reason`` "low confidence: <why>",
    and the grade the volumes would give is kept, clearly named, as
    ``unchecked_steinberg_grade`` (and ``unchecked_grade_probabilities``) for whoever
    reviews the case.
    """
    report["quality"] = quality
    if not quality.get("passed", True):
        report["unchecked_steinberg_grade"] = report.get("steinberg_grade")
        report["steinberg_grade"] = None
        if report.get("grade_probabilities") is not None:
            report["unchecked_grade_probabilities"] = report["grade_probabilities"]
            report["grade_probabilities"] = None
        report["reason"] = quality.get("summary") or "low confidence"
    return report


def result_text(report: object) -> str:
    """One line for a front end: grade with its probabilities, ratio with its interval, Kerboul.

    ``"Grade B (B 82 %; A 18 %), ratio 17.3 % (90 % interval 14.1-20.5 %), Kerboul 215° (grade 2)"``;
    reads an ``onfh segment`` report defensively (older reports lack the newer fields) and
    gives ``""`` for anything that is not a report.
    """
    from onfh.ratio_interval import probabilities_text

    if not isinstance(report, dict) or "necrosis_ratio" not in report:
        return ""
    grade = report.get("steinberg_grade")
    parts = [f"Grade {grade}" if grade else "No grade"]
    if grade and isinstance(report.get("grade_probabilities"), dict):
        parts[0] += f" ({probabilities_text(report['grade_probabilities'])})"
    ratio = report.get("necrosis_ratio")
    if isinstance(ratio, (int, float)):
        text = f"ratio {100 * ratio:.1f} %"
        interval = report.get("necrosis_ratio_interval")
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            text += f" (90 % interval {100 * interval[0]:.1f}-{100 * interval[1]:.1f} %)"
        parts.append(text)
    kerboul = report.get("kerboul")
    if isinstance(kerboul, dict) and "combined_angle_deg" in kerboul:
        parts.append(f"Kerboul {kerboul['combined_angle_deg']:.0f}° (grade {kerboul.get('grade')})")
    return ", ".join(parts)
