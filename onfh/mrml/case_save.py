"""Save a reviewed hip: ``<case>.seg.nrrd``, ``<case>.json`` and one CSV row, never overwriting.

The surgeon segments, corrects in the Segment Editor and saves next to the image. The
files are the ones ``onfh segment`` writes, so ``onfh grade`` and every other tool read
them back; the grade in the JSON is computed from the label file actually written
(head = head ∪ necrosis, necrosis wins where the segments overlap), so the file and the
report cannot disagree. An existing file is never replaced: the case name gets the
first free ``-<n>`` suffix and the caller shows the name used. Layer 1: scene and nodes
in, no Qt, no web.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from onfh.errors import OnfhError
from onfh.grading import grade_label_map
from onfh.imageio import case_name, write_text_atomic
from onfh.mrml.segmentation_import import volume_to_image
from onfh.mrml.training_export import labels_on_volume_grid
from onfh.report import case_report, input_info
from onfh.segfile import write_seg_nrrd

CSV_NAME = "onfh-reviewed.csv"
"""The table of saved cases in the image's folder; rows are appended, never rewritten."""
CSV_COLUMNS = (
    "case",
    "input",
    "femoral_head_volume_ml",
    "necrosis_volume_ml",
    "necrosis_ratio",
    "steinberg_grade",
    "borderline",
    "model_quality",
    "segmentation",
    "report",
)


@dataclass(frozen=True)
class SavedCase:
    """What ``save_case`` wrote, and the report it wrote."""

    case: str
    segmentation_path: Path
    report_path: Path
    csv_path: Path
    report: dict


def free_case_name(folder: str | os.PathLike, case: str) -> str:
    """``case``, or ``case-2``, ``case-3``... : the first name none of whose outputs exist."""
    root = Path(folder)
    candidate, number = case, 2
    while (root / f"{candidate}.seg.nrrd").exists() or (root / f"{candidate}.json").exists():
        candidate = f"{case}-{number}"
        number += 1
    return candidate


def _csv_row(case: str, report: dict) -> dict:
    ratio = report["necrosis_ratio"]
    return {
        "case": case,
        "input": report["input"]["path"],
        "femoral_head_volume_ml": f"{report['femoral_head_volume_ml']:.3f}",
        "necrosis_volume_ml": f"{report['necrosis_volume_ml']:.3f}",
        "necrosis_ratio": "" if ratio is None else f"{ratio:.4f}",
        "steinberg_grade": report["steinberg_grade"] or "",
        "borderline": str(bool(report["borderline"])).lower(),
        "model_quality": report.get("model_quality") or "",
        "segmentation": report["outputs"]["segmentation"],
        "report": report["outputs"]["report"],
    }


def append_csv_row(path: str | os.PathLike, row: dict) -> None:
    """Append one row to a CSV table, writing the header first if the file is new.

    Raises:
        OnfhError: the file exists with other columns (it belongs to something else).
    """
    path = Path(path)
    if path.exists():
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if header != list(CSV_COLUMNS):
            raise OnfhError(f"{path}: has other columns ({', '.join(header)}); not appending to it")
        existing = path.read_text(encoding="utf-8")
    else:
        existing = ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if not existing:
        writer.writeheader()
    writer.writerow(row)
    write_text_atomic(path, existing + buffer.getvalue())


def save_case(
    scene,
    segmentation_node,
    volume_node,
    folder: str | os.PathLike,
    image_path: str | os.PathLike,
    model: dict | None = None,
    model_quality: str | None = None,
) -> SavedCase:
    """Write a segmentation node's femoral head and necrosis as one reviewed case.

    Args:
        scene: the MRML scene (a temporary labelmap node is added and removed).
        segmentation_node: holds "Femoral head" and, usually, "Necrosis".
        volume_node: the MRI; the label file is written on its grid.
        folder: output folder (the image's folder); created if missing.
        image_path: the MRI's file or DICOM folder: names the case, recorded in the report.
        model: ``{"id", "sha256"}`` of the model that pre-segmented it, if any.
        model_quality: the model's quality warning for the original result, if any;
            kept for the record (the surgeon reviewed the segments, so it does not
            withhold the grade).

    Raises:
        OnfhError: no or empty femoral head segment, or a file that cannot be written.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    image = volume_to_image(volume_node)
    labels = sitk.GetImageFromArray(labels_on_volume_grid(scene, segmentation_node, volume_node))
    labels.CopyInformation(image)
    grade = grade_label_map(sitk.GetArrayViewFromImage(labels), image.GetSpacing())
    case = free_case_name(root, case_name(image_path))
    seg_path, report_path = root / f"{case}.seg.nrrd", root / f"{case}.json"
    tags = {"ONFHModelId": model["id"], "ONFHModelSHA256": model.get("sha256", "")} if model else None
    report = case_report(
        grade,
        input_info(image_path, image),
        model,
        case=case,
        reviewed=True,
        model_quality=model_quality,
        outputs={"segmentation": seg_path.name, "report": report_path.name},
    )
    try:
        write_seg_nrrd(labels, seg_path, tags)
        write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    except OSError as error:
        seg_path.unlink(missing_ok=True)
        raise OnfhError(f"{root}: could not save case {case!r} ({error})") from None
    csv_path = root / CSV_NAME
    append_csv_row(csv_path, _csv_row(case, report))
    return SavedCase(case, seg_path, report_path, csv_path, report)
