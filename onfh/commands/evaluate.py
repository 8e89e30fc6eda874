"""``onfh evaluate``: the reference study's table for predictions against reference labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onfh.errors import OnfhError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, ASD, HD95, grade accuracy, kappas, ICC of predictions vs reference labels",
        description="Compare predicted segmentations with reference labels, case by case, and print "
        "the reference study's table (median (IQR) Dice and ASD of femoral head and necrosis, "
        "Steinberg grade accuracy, confusion matrix, Cohen's kappas, ICC and Bland-Altman of the "
        "necrotic ratio) next to the study's own figures. Writes report.json, report.md, cases.csv "
        "and PNG plots.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pred",
        metavar="DIR",
        help="predictions, searched recursively: <case>.seg.nrrd, <case>_label.nii.gz or <case>.nii.gz",
    )
    source.add_argument(
        "--crossval",
        metavar="MODEL_DIR",
        help="a model folder trained by 'onfh train': evaluates every fold's validation predictions",
    )
    parser.add_argument(
        "--truth",
        metavar="DIR",
        help="reference labels <case>.nii.gz or <case>.seg.nrrd (a dataset folder: its labelsTr/); "
        "required with --pred",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="REPORT_DIR",
        help="report folder (default: PRED/evaluation, or MODEL_DIR/crossval/evaluation)",
    )
    parser.add_argument(
        "--by",
        metavar="COLUMN",
        action="append",
        default=[],
        help="also summarise per value of this case-table column (repeatable), e.g. --by laterality "
        "--by orientation for an 'onfh synth' dataset",
    )
    parser.add_argument(
        "--case-table",
        metavar="CSV",
        help="per-case attributes for --by, with a case_id (or case) column (default: cases.csv of "
        "the truth dataset)",
    )
    parser.add_argument("--force", action="store_true", help="replace the report files of an earlier run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onfh import case_table, evaluation, evaluation_report
    from onfh.output_folder import require_writable_folder

    if args.pred is not None:
        if args.truth is None:
            raise OnfhError("--pred needs --truth DIR (the reference labels)")
        truths = evaluation.find_truths(args.truth)
        predictions, unmatched = evaluation.find_predictions(
            args.pred, list(truths), exclude=list(truths.values())
        )
        pairs = evaluation.pair_cases(truths, predictions)
        source, truth_source = str(Path(args.pred)), str(Path(args.truth))
        default_output = Path(args.pred) / "evaluation"
        dataset_folders = [Path(args.truth), Path(args.truth).parent]
    else:
        if args.truth is not None:
            raise OnfhError("--truth is read from crossval.json with --crossval; leave it out")
        pairs, dataset_dir = evaluation.crossval_pairs(args.crossval)
        unmatched = []
        source, truth_source = str(Path(args.crossval) / "crossval"), str(dataset_dir / "labelsTr")
        default_output = Path(args.crossval) / "crossval" / "evaluation"
        dataset_folders = [dataset_dir]
    if not any(pair.prediction_path for pair in pairs):
        raise OnfhError(f"{source}: no prediction matches any of the {len(pairs)} truth case(s)")

    output = Path(args.output) if args.output else default_output
    existing = evaluation_report.existing_report_files(output)
    if existing and not args.force:
        raise OnfhError(f"{output}: holds an earlier report ({existing[0].name}); use --force or another -o")
    require_writable_folder(output)

    table_path, table = _case_table(args, dataset_folders)
    rows, warnings = evaluation.evaluate_pairs(pairs)
    if table is not None:
        warnings += case_table.attach_columns(rows, table, args.by, table_path)
    if unmatched:
        shown = ", ".join(p.name for p in unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
        warnings.append(f"{len(unmatched)} image file(s) under {source} match no truth case ({shown})")
    report = evaluation_report.build_report(rows, warnings, source, truth_source, args.by)
    for warning in warnings:
        print(f"onfh: warning: {warning}", file=sys.stderr)
    print(evaluation_report.console_text(report["summary"]))
    written = evaluation_report.write_report(report, output)
    print(f"Report: {', '.join(str(p) for p in written)}")
    return 0


def _case_table(args: argparse.Namespace, dataset_folders: list[Path]):
    """``(path, table)`` when ``--by`` asks for subgroups (else ``(None, None)``), read and
    checked before any case is measured."""
    from onfh import case_table, evaluation_report

    if args.case_table and not args.by:
        raise OnfhError("--case-table is only used with --by COLUMN")
    if not args.by:
        return None, None
    path = Path(args.case_table) if args.case_table else case_table.find_case_table(dataset_folders)
    if path is None:
        where = " or ".join(str(f / case_table.CASES_CSV) for f in dataset_folders)
        raise OnfhError(f"--by needs a case table: no {where}; name one with --case-table CSV")
    table = case_table.read_case_table(path)
    case_table.require_columns(table, args.by, path, reserved=evaluation_report.CSV_COLUMNS)
    return path, table
