"""Time of the DICOM outputs (SEG, SR) and of a DICOM SEG read back, on one 256x256x120 hip MRI.

Issue #14's budget: one hip within 10 s on 2 threads with the ratio interval on, so the
question is whether ``onfh segment`` of a DICOM series, writing ``<case>.seg.dcm`` and
``<case>.sr.dcm`` too, keeps it. The synthetic hip (``onfh.synthetic.generate_case``,
0.7x0.7x1.0 mm) is written as a classic MR series (``onfh.synthetic.dicom_series``: one
file per slice, shuffled names), then timed, each the median of ``--repeats``:

- end to end, each run a fresh child process as the Slicer module starts one:
  ``onfh segment SERIES`` with ``--no-interval`` and as by default (ratio interval on),
  each with and without ``--no-dicom``; and ``onfh grade CASE.seg.dcm``;
- the DICOM steps alone, in this process (imports done, one untimed run first), on the
  default run's segmentation and report: reading the series (pixels, as ``onfh segment``
  does first), reading its headers (``onfh.dicom_source.source_datasets``), writing the SEG,
  writing the SR, and reading the SEG back and grading it (``onfh grade CASE.seg.dcm --json``).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_dicom.py                 # shipped model, 2 threads
    python benchmarks/bench_dicom.py --model DIR --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_segment import run_child, version
from machine import load_average, machine_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_S = 10.0
SERIES_UID = "1.2.826.0.1.3680043.8.498.1414"
CASE = "hip_mr"
SEGMENT_RUNS = {
    "onfh segment --no-interval --no-dicom": ["--no-interval", "--no-dicom"],
    "onfh segment --no-interval": ["--no-interval"],
    "onfh segment --no-dicom": ["--no-dicom"],
    "onfh segment (default)": [],
}


def write_series(folder: Path, seed: int) -> dict:
    """The benchmark hip as an MR series in ``folder``; the phantom's info."""
    from onfh.synthetic import generate_case
    from onfh.synthetic.dicom_series import write_mr_series

    case = generate_case(seed, spacing_mm=(0.7, 0.7, 1.0), size=(256, 256, 120))
    write_mr_series(case.image, folder, SERIES_UID)
    return case.info


def median_seconds(step, repeats: int, warm_up: bool = True) -> tuple[float, float, float]:
    """``(median, min, max)`` wall seconds of ``step()`` over ``repeats`` calls (after one untimed)."""
    if warm_up:
        step()
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), min(walls), max(walls)


def time_children(series: Path, model: Path, work: Path, args, timings: dict) -> dict[str, tuple]:
    """The end-to-end commands, each a cold child; the last default run's outputs stay in ``work/default``.

    ``timings`` gets each ``onfh segment`` run's own ``timings_s`` (its report's), by command.

    The commands take turns (one run of each, then the next round), so a change in the
    machine's load falls on all of them alike.
    """
    seg = work / "default" / f"{CASE}.seg.dcm"
    commands = {}
    for name, flags in SEGMENT_RUNS.items():
        outdir = work / ("default" if name == "onfh segment (default)" else f"run-{len(commands)}")
        command = [sys.executable, "-m", "onfh", "segment", str(series), "-o", str(outdir), "--force"]
        commands[name] = [*command, "--model", str(model), "--device", "cpu", "--progress", "none", *flags]
    commands["onfh grade CASE.seg.dcm"] = [sys.executable, "-m", "onfh", "grade", str(seg), "--json"]
    commands["python -c 'import highdicom'"] = [sys.executable, "-c", "import highdicom"]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for repeat in range(args.repeats):
        for name, command in commands.items():
            wall, peak_gb = run_child(command, args.threads)
            runs[name].append((wall, peak_gb))
            print(f"{name} run {repeat + 1}: {wall:.2f} s, peak RSS {peak_gb:.2f} GB", flush=True)
            if name in SEGMENT_RUNS:
                report = json.loads((Path(command[command.index("-o") + 1]) / f"{CASE}.json").read_text())
                timings[name].append(report["timings_s"])
    results = {}
    for name, pairs in runs.items():
        walls = [wall for wall, _ in pairs]
        results[name] = (statistics.median(walls), min(walls), max(walls), max(peak for _, peak in pairs))
    return results


def time_steps(series: Path, model_dir: Path, work: Path, repeats: int) -> dict[str, tuple]:
    """The DICOM steps alone, in this process, on the default run's segmentation and report."""
    from onfh.case_segmentation import read_input
    from onfh.cli import main as onfh_main
    from onfh.dicom_seg import write_dicom_seg
    from onfh.dicom_source import source_datasets
    from onfh.dicom_sr import write_dicom_sr
    from onfh.modelfolder import load_model_folder
    from onfh.segfile import read_segmentation

    model = load_model_folder(model_dir).info()
    label = read_segmentation(work / "default" / f"{CASE}.seg.nrrd").image
    report = json.loads((work / "default" / f"{CASE}.json").read_text())
    image = read_input(series)
    sources = source_datasets(series, image)
    seg_path, sr_path = work / "steps.seg.dcm", work / "steps.sr.dcm"
    seg = write_dicom_seg(label, sources, model, seg_path)

    def grade() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            if onfh_main(["grade", str(seg_path), "--json"]) != 0:
                raise SystemExit(f"onfh grade {seg_path} failed")

    return {
        "read series (pixels)": median_seconds(lambda: read_input(series), repeats),
        "read series headers": median_seconds(lambda: source_datasets(series, image), repeats),
        "write SEG": median_seconds(lambda: write_dicom_seg(label, sources, model, seg_path), repeats),
        "write SR": median_seconds(lambda: write_dicom_sr(report, seg, sources, model, sr_path), repeats),
        "read SEG + grade": median_seconds(grade, repeats),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import SimpleITK as sitk

    from onfh.modelfolder import default_model_dir

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    model = (args.model or default_model_dir()).resolve()
    with tempfile.TemporaryDirectory(prefix="onfh-bench-dicom-") as tmp:
        work = Path(tmp)
        series = work / CASE
        info = write_series(series, args.seed)
        print(machine_line())
        print(
            f"python {platform.python_version()} | onnxruntime {version('onnxruntime')} | "
            f"highdicom {version('highdicom')} | pydicom {version('pydicom')} | "
            f"SimpleITK {version('SimpleITK')}"
        )
        print(f"threads: {args.threads} | repeats: {args.repeats} | model: {model}")
        print(
            f"input: MR series of 120 files, 256x256 at 0.7x0.7x1.0 mm, synthetic seed {args.seed} "
            f"({info['orientation']}, true ratio {info['ratio']:.3f})"
        )
        timings: dict[str, list[dict]] = {name: [] for name in SEGMENT_RUNS}
        children = time_children(series, model, work, args, timings)
        steps = time_steps(series, model, work, args.repeats)
        print(f"load average after: {load_average()}")
        print(f"{'step':<36} {'median s':>9} {'min s':>7} {'max s':>7} {'peak GB':>8}")
        for name, (median, low, high, peak) in children.items():
            print(f"{name:<36} {median:9.2f} {low:7.2f} {high:7.2f} {peak:8.2f}")
        for name, (median, low, high) in steps.items():
            print(f"{'  ' + name + ' (in process)':<36} {median:9.3f} {low:7.3f} {high:7.3f} {'':>8}")
        print(
            "inside onfh segment (its report's timings_s, medians; read_s holds the DICOM headers, "
            "write_s the SEG and SR):"
        )
        for name, runs in timings.items():
            parts = {
                key: statistics.median(run[key] for run in runs) for key in ("read_s", "write_s", "total_s")
            }
            print(f"  {name:<38} " + ", ".join(f"{key} {value:.2f}" for key, value in parts.items()))
        default = children["onfh segment (default)"][0]
        extra = default - children["onfh segment --no-dicom"][0]
        steps_s = sum(steps[name][0] for name in ("read series headers", "write SEG", "write SR"))
        print(
            f"DICOM outputs: headers + SEG + SR {steps_s:.2f} s in process; end to end "
            f"{extra:+.2f} s (default minus --no-dicom, medians)"
        )
        verdict = "holds" if default <= BUDGET_S else "EXCEEDED"
        print(
            f"RESULT one hip, DICOM in and out, interval on: {default:.2f} s | "
            f"budget {BUDGET_S:.0f} s: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
