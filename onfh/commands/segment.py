"""``onfh segment``: femoral head and necrosis segmentation of 3D hip MRIs, one or many.

Per case it writes ``<case>.seg.nrrd`` (Slicer segmentation on the input's grid),
``<case>.json`` (volumes, ratio, grade, model, input, timings, device), for a DICOM series
input ``<case>.seg.dcm`` (DICOM SEG over the source slices) and ``<case>.sr.dcm`` (DICOM
SR, TID 1500, referencing the SEG) unless ``--no-dicom``, and, with ``--label-map``,
``<case>_label.nii.gz``; ``summary.csv`` gets one row per case. A failed
case is reported and the batch goes on; the exit code says whether any failed. The Slicer
module runs this command as a child process and reads ``--progress json`` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from onfh.case_segmentation import BACKENDS, load_segmenter, output_paths, segment_case
from onfh.errors import OnfhError
from onfh.segment_summary import (
    earlier_rows,
    folder_rows,
    hips_text,
    read_case_report,
    summary_row,
    update_summary,
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device`` and ``--backend``, shared with ``onfh demo``."""
    from onfh.devices import DEVICE_CHOICES

    parser.add_argument("--model", metavar="DIR", help="model folder (default: the installed model)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where to run the networks")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="onnx",
        help="onnx: ONNX Runtime, no torch needed (default); torch: PyTorch and MONAI",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment the femoral head and necrosis of 3D hip MRIs",
        description="Segment the femoral head and necrotic lesion of each INPUT (NIfTI, NRRD, MHA "
        "file, DICOM series folder or Enhanced MR file) and grade it (Steinberg A/B/C). Writes "
        "<case>.seg.nrrd, <case>.json and OUTDIR/summary.csv; for a DICOM series also <case>.seg.dcm "
        "(DICOM SEG) and <case>.sr.dcm (DICOM SR measurement report), which NIfTI/NRRD/MHA inputs "
        "cannot have (they come with no source series to reference); an Enhanced MR file, or a series "
        "whose slices lack what a SEG must copy, is segmented without them and its report says why. "
        "A folder of NIfTI/NRRD/MHA files stands for those files. "
        "Results already in OUTDIR are never replaced silently: use --skip-existing or --force.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or DICOM series folders")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    add_model_arguments(parser)
    parser.add_argument(
        "--progress",
        choices=("plain", "json", "none"),
        default="plain",
        help="plain: progress bar on stderr; json: one JSON object per line on stdout",
    )
    parser.add_argument("--label-map", action="store_true", help="also write <case>_label.nii.gz")
    parser.add_argument(
        "--no-dicom",
        action="store_true",
        help="do not write <case>.seg.dcm and <case>.sr.dcm for DICOM series inputs",
    )
    parser.add_argument(
        "--series", metavar="UID", help="DICOM series to read from input folders that hold several"
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep the results of cases OUTDIR already holds and segment only the others",
    )
    existing.add_argument(
        "--force", action="store_true", help="replace the results of cases OUTDIR already holds"
    )
    parser.add_argument(
        "--no-interval",
        action="store_true",
        help="skip the ratio interval and grade probabilities (test-time augmentation: 8 more "
        "segmenter passes per hip)",
    )
    parser.set_defaults(func=run)


class Progress:
    """Progress of a batch: JSON lines on stdout, a bar on stderr, or nothing."""

    def __init__(self, mode: str, total: int) -> None:
        self.mode = mode
        self.total = max(total, 1)
        self.index = 0
        self.case = ""
        self._bar_shown = False

    def update(self, stage: str, fraction: float, **extra: Any) -> None:
        """Report ``stage`` at ``fraction`` (0-1) of the current case."""
        overall = min(1.0, (self.index + max(0.0, min(fraction, 1.0))) / self.total)
        if self.mode == "json":
            event = {"stage": stage, "fraction": round(overall, 4), "case": self.case, **extra}
            print(json.dumps(event), flush=True)
        elif self.mode == "plain" and sys.stderr.isatty():
            width = 30
            filled = round(overall * width)
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r[{bar}] {100 * overall:5.1f}% {self.case}: {stage:<12}")
            sys.stderr.flush()
            self._bar_shown = True

    def clear(self) -> None:
        """Erase the bar so a line can be printed."""
        if self._bar_shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._bar_shown = False

    def message(self, text: str) -> None:
        """A status line for humans (plain mode only), on stderr so stdout holds results."""
        if self.mode != "plain":
            return
        self.clear()
        print(text, file=sys.stderr, flush=True)


def existing_results(outdir: Path, cases: list[str]) -> dict[str, list[Path]]:
    """The output files of each case that ``outdir`` already holds (cases without any left out)."""
    found = {}
    for case in cases:
        present = [path for path in output_paths(outdir, case, True, True).values() if path.exists()]
        if present:
            found[case] = present
    return found


def _check_cases(inputs: list[str], outdir: Path, label_map: bool, dicom: bool = False) -> list[str]:
    """Case names for the inputs; refuse duplicates, outputs that would replace an input and
    DICOM outputs inside their own input series folder (it would hold several series then)."""
    from onfh.imageio import case_name

    cases = [case_name(path) for path in inputs]
    seen: dict[str, str] = {}
    for case, path in zip(cases, inputs):
        if case in seen:
            raise OnfhError(f"inputs {seen[case]} and {path} would both write case {case!r}; rename one")
        seen[case] = path
    input_files = {Path(path).resolve() for path in inputs}
    for case in cases:
        for output in output_paths(outdir, case, label_map, dicom).values():
            if output.resolve() in input_files:
                raise OnfhError(f"{output}: output would overwrite an input; choose another -o folder")
    if dicom and outdir.resolve() in input_files:
        raise OnfhError(
            f"{outdir}: is a DICOM input folder; its DICOM SEG and SR would join the source series "
            "there; choose another -o folder (or add --no-dicom)"
        )
    return cases


def _format_result(case: str, case_json: dict) -> str:
    ratio = case_json.get("necrosis_ratio")
    ratio_text = "n/a" if ratio is None else f"{100 * ratio:.1f} %"
    from onfh.ratio_interval import probabilities_text

    grade = case_json.get("steinberg_grade") or "n/a"
    interval = case_json.get("necrosis_ratio_interval")
    if interval:
        ratio_text += f" (90 % interval {100 * interval[0]:.1f}-{100 * interval[1]:.1f} %)"
    if case_json.get("grade_probabilities"):
        grade += f" ({probabilities_text(case_json['grade_probabilities'])})"
    flag = " (borderline)" if case_json.get("borderline") else ""
    quality = case_json.get("quality") or {}
    if not quality.get("passed", True):
        unchecked = case_json.get("unchecked_steinberg_grade")
        flag += f" [{quality['summary'].upper()}; the volumes would give {unchecked}]"
    elif quality.get("notes"):
        flag += " [CHECK: " + "; ".join(quality["notes"]).upper() + "]"
    kerboul = case_json.get("kerboul")
    if kerboul:
        flag += f", Kerboul {kerboul['combined_angle_deg']:.0f}° (grade {kerboul['grade']})"
    if case_json.get("hips"):
        flag += f" | per hip: {hips_text(case_json)}"
    if case_json.get("dicom_outputs_skipped"):
        flag += f" [no DICOM SEG/SR: {case_json['dicom_outputs_skipped']}]"
    return (
        f"{case}: head {case_json['femoral_head_volume_ml']:.2f} mL, necrosis "
        f"{case_json['necrosis_volume_ml']:.2f} mL, ratio {ratio_text}, grade {grade}{flag} "
        f"[{case_json['timings_s']['total_s']:.1f} s]"
    )


def _cases_to_run(args: argparse.Namespace, outdir: Path, cases: list[str]) -> set[str]:
    """Cases this run segments: all, or those without results with ``--skip-existing``.

    Raises:
        OnfhError: results exist and neither ``--skip-existing`` nor ``--force`` says what to do.
    """
    existing = existing_results(outdir, cases)
    if existing and not (args.force or args.skip_existing):
        files = next(iter(existing.values()))
        raise OnfhError(
            f"{outdir}: already holds results of {len(existing)} of these case(s) (e.g. {files[0].name}); "
            "add --skip-existing to keep them or --force to replace them"
        )
    if args.skip_existing:
        return {c for c in cases if c not in existing or read_case_report(outdir / f"{c}.json") is None}
    return set(cases)


def run(args: argparse.Namespace) -> int:
    from onfh.imageio import expand_input_folders
    from onfh.output_folder import require_writable_folder

    outdir = Path(args.output)
    require_writable_folder(outdir)
    inputs = expand_input_folders(list(args.inputs))
    cases = _check_cases(inputs, outdir, args.label_map, dicom=not args.no_dicom)
    to_run = _cases_to_run(args, outdir, cases)
    progress = Progress(args.progress, len(to_run))
    skipped = len(cases) - len(to_run)
    if skipped:
        progress.message(f"{skipped} case(s) already segmented in {outdir}: kept (--skip-existing)")
    earlier = earlier_rows(outdir, to_run)
    rows: dict[str, dict] = {}
    failures = 0
    ensemble = None
    if to_run:
        progress.update("load_model", 0.0)
        segmenter, folder, device_text = load_segmenter(args.model, args.device, args.backend)
        if not args.no_interval:
            from onfh.ensemble import load_ensemble

            ensemble = load_ensemble(folder, segmenter.model, segmenter.device)
        progress.message(f"model {folder.id} ({folder.sha256[:12]}) on {device_text}")
    for input_path, case in zip(inputs, cases):
        if case not in to_run:
            continue
        progress.case = case
        start = time.perf_counter()
        if args.force:  # replacing starts by removing: a failed case leaves no stale result
            for path in output_paths(outdir, case, True, True).values():
                if path.is_file() or path.is_symlink():
                    path.unlink()
        try:
            case_json = segment_case(
                input_path,
                outdir,
                segmenter,
                folder,
                device_text,
                label_map=args.label_map,
                progress=progress.update,
                case=case,
                series_uid=args.series,
                ensemble=ensemble,
                dicom=not args.no_dicom,
            )
        except (OnfhError, MemoryError, OSError, RuntimeError, ValueError) as error:
            # One bad case must not stop a batch of hundreds: report it and go on.
            failures += 1
            text = str(error) if isinstance(error, OnfhError) else f"{type(error).__name__}: {error}"
            text = " ".join(text.split())
            if not text.startswith(str(input_path)):
                text = f"{input_path}: {text}"
            rows[case] = summary_row(case, str(input_path), None, time.perf_counter() - start, text)
            progress.clear()
            print(f"onfh: error: {text}", file=sys.stderr, flush=True)
            if args.progress == "json":
                progress.update("failed", 1.0, error=text)
        else:
            rows[case] = summary_row(case, str(input_path), case_json, time.perf_counter() - start)
            if args.progress == "json":
                progress.update("case_done", 1.0, report=case_json["outputs"]["report"])
            else:
                progress.clear()
                print(_format_result(case, case_json), flush=True)
        progress.index += 1
        update_summary(outdir, folder_rows(rows, earlier, cases))
    if not to_run:
        update_summary(outdir, folder_rows(rows, earlier, cases))
    progress.index, progress.case = len(to_run), ""
    if args.progress == "json":
        progress.update("finished", 1.0, failed=failures, summary=str(outdir / "summary.csv"))
    summary = outdir / "summary.csv"
    progress.message(
        f"{len(to_run) - failures} of {len(to_run)} case(s) segmented"
        + (f", {skipped} kept" if skipped else "")
        + (f"; summary: {summary}" if summary.is_file() else "")
    )
    return 1 if failures else 0
