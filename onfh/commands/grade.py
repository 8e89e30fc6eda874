"""``onfh grade``: volumes, ratio and Steinberg grade of an existing segmentation."""

from __future__ import annotations

import argparse
import json

from onfh.errors import OnfhError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "grade",
        help="grade an existing segmentation (.seg.nrrd, DICOM SEG or label file)",
        description="Volumes, necrotic ratio and Steinberg extent grade (A < 15 % <= B <= 30 % < C) "
        "of a Slicer .seg.nrrd or a DICOM Segmentation (.dcm; segments found by SNOMED CT type code, "
        "else by name) or a label file (0 background, 1 femoral head, 2 necrosis).",
    )
    parser.add_argument(
        "segmentation", metavar="SEG", help=".seg.nrrd, DICOM SEG (.dcm) or label file (NIfTI/NRRD/MHA)"
    )
    parser.add_argument(
        "--image",
        metavar="REF",
        help="reference MRI (file or DICOM series folder): the segmentation is graded on its grid "
        "if they differ",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
    parser.set_defaults(func=run)


def format_table(report: dict) -> str:
    """The report as a short table a surgeon can read at a glance."""
    ratio = report["necrosis_ratio"]
    grade = report["steinberg_grade"]
    lines = [
        f"Femoral head volume   {report['femoral_head_volume_ml']:8.2f} mL",
        f"Necrosis volume       {report['necrosis_volume_ml']:8.2f} mL",
        "Necrotic ratio        " + ("     n/a" if ratio is None else f"{100 * ratio:8.1f} %"),
        "Steinberg extent      " + (f"{grade:>8}" if grade else "     n/a"),
    ]
    kerboul = report.get("kerboul")
    if kerboul:
        lines += [
            f"Kerboul angle         {kerboul['combined_angle_deg']:8.0f} deg "
            f"(coronal {kerboul['coronal_angle_deg']:.0f} + sagittal {kerboul['sagittal_angle_deg']:.0f})",
            f"Kerboul grade         {kerboul['grade']:>8} ({kerboul['risk']} risk of collapse, Ha 2006)",
        ]
    if report.get("borderline"):
        lines.append(
            "Warning: ratio within 2 points of a grade cut-off (15 % / 30 %); check the lesion margin."
        )
    if report.get("reason"):
        lines.append(f"No grade: {report['reason']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from onfh.grading import grade_masks
    from onfh.imageio import read_image
    from onfh.report import case_report, input_info, kerboul_report
    from onfh.segfile import read_segmentation

    reference = read_image(args.image) if args.image else None
    segmentation = read_segmentation(args.segmentation, reference=reference)
    try:
        result = grade_masks(segmentation.head_mask, segmentation.necrosis_mask, segmentation.spacing_mm)
    except ValueError as error:
        raise OnfhError(f"{args.segmentation}: {error}") from None
    source = args.image if reference is not None else args.segmentation
    report = case_report(
        result,
        input_info(source, reference if reference is not None else segmentation.image),
        segmentation=str(args.segmentation),
        segments=segmentation.segment_names,
        resampled_to_image=segmentation.resampled,
        kerboul=kerboul_report(segmentation.image),
    )
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0
