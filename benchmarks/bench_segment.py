"""End-to-end speed and memory of one 256x256x120 hip MRI (0.7x0.7x1.0 mm), from a cold start.

Every run is a fresh child process, as the Slicer module starts one, so the figures
include interpreter start, imports, model loading, reading, preprocessing, the networks,
mapping back and writing. Three ways to segment the same image, in the same run:

- ``onnx``: ``onfh segment --no-interval`` on ONNX Runtime (the default backend; no torch,
  no MONAI): segmentation and grade only, like the two below;
- ``onnx+interval``: ``onfh segment`` as it runs by default, with the ratio interval's
  8 extra segmenter passes per hip;
- ``torch``: ``onfh segment --backend torch --no-interval`` (same weights in MONAI's DynUNet);
- ``monai-sliding-window``: the naive MONAI recipe: resample the whole image to the
  segmenter's spacing, ``sliding_window_inference`` over all of it (Gaussian blending,
  25 % overlap), arg-max, nearest-neighbour back to the input grid, write.

Prints the median wall time and the peak resident memory of each child (``os.wait4``),
next to the machine's load, the library versions and the thread count.

Usage::

    python benchmarks/bench_segment.py                      # the shipped model, 2 threads
    python benchmarks/bench_segment.py --model DIR --repeats 5 --threads 2
    python benchmarks/bench_segment.py --methods onnx       # only the default path
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import load_average, machine_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 2.5
GOAL_PEAK_GB = 0.5
METHODS = ("onnx", "onnx+interval", "torch", "monai-sliding-window")


def write_case(path: Path, seed: int) -> dict:
    from onfh.imageio import write_image_atomic
    from onfh.synthetic import generate_case

    case = generate_case(seed, spacing_mm=(0.7, 0.7, 1.0), size=(256, 256, 120))
    write_image_atomic(case.image, path)
    return case.info


def child_command(method: str, image: Path, model: Path, outdir: Path, device: str) -> list[str]:
    if method == "monai-sliding-window":
        return [sys.executable, __file__, "--baseline-child", str(image), str(model), str(outdir)]
    command = [sys.executable, "-m", "onfh", "segment", str(image), "-o", str(outdir), "--model", str(model)]
    backend, _, extra = method.partition("+")
    command += ["--device", device, "--backend", backend, "--progress", "none"]
    return command if extra == "interval" else [*command, "--no-interval"]


def run_child(command: list[str], threads: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one cold child process (``os.wait4``: that child alone)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONFH_NUM_THREADS": str(threads)}
    env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr.seek(0)
            text = stderr.read().decode(errors="replace").strip()
            raise SystemExit(f"{' '.join(command[:4])} failed ({process.returncode}): {text}")
    return wall, usage.ru_maxrss / 1024.0 / 1024.0


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def baseline_child(image_path: str, model_dir: str, outdir: str) -> int:
    """The naive MONAI sliding-window segmentation, in this (cold) process."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference

    from onfh.devices import configure_cpu_threads
    from onfh.modelfolder import load_model, load_model_folder
    from onfh.preprocessing import normalise_intensity, resample_label_like, resample_to_grid
    from onfh.segfile import write_seg_nrrd

    configure_cpu_threads()
    folder = load_model_folder(model_dir)
    model = load_model(folder, "cpu")
    section = folder.config["segmenter"]
    image = sitk.Cast(sitk.ReadImage(image_path), sitk.sitkFloat32)
    grid_image = resample_to_grid(image, section["spacing_mm"], default_value=float("nan"))
    array = normalise_intensity(sitk.GetArrayViewFromImage(grid_image), folder.config["intensity"])
    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(array)[None, None],
            roi_size=list(reversed(section["patch_size"])),
            sw_batch_size=1,
            predictor=model.segmenter,
            overlap=0.25,
            mode="gaussian",
        )
    label_grid = sitk.GetImageFromArray(torch.argmax(logits[0], dim=0).numpy().astype(np.uint8))
    label_grid.CopyInformation(grid_image)
    label = resample_label_like(label_grid, image)
    write_seg_nrrd(label, Path(outdir) / "baseline.seg.nrrd", {})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per child (default: 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--baseline-repeats", type=int, default=1, help="runs of the (slow) sliding-window baseline"
    )
    parser.add_argument("--baseline-child", nargs=3, metavar=("IMG", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        Path(args.baseline_child[2]).mkdir(parents=True, exist_ok=True)
        return baseline_child(*args.baseline_child)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    from onfh.modelfolder import default_model_dir

    model = (args.model or default_model_dir()).resolve()
    with tempfile.TemporaryDirectory(prefix="onfh-bench-") as tmp:
        work = Path(tmp)
        image = work / "bench_hip.nii.gz"
        info = write_case(image, args.seed)
        print(machine_line())
        print(
            f"python {platform.python_version()} | onnxruntime {version('onnxruntime')} | "
            f"torch {version('torch')} | monai {version('monai')}"
        )
        print(f"device: {args.device} | threads: {args.threads} | model: {model}")
        print(f"input: 256x256x120 at 0.7x0.7x1.0 mm, synthetic seed {args.seed} ({info['orientation']})")
        results = {}
        for method in args.methods:
            walls, peaks = [], []
            repeats = args.baseline_repeats if method == "monai-sliding-window" else args.repeats
            for repeat in range(repeats):
                outdir = work / f"{method}-{repeat}"
                command = child_command(method, image, model, outdir, args.device)
                wall, peak_gb = run_child(command, args.threads)
                walls.append(wall)
                peaks.append(peak_gb)
                print(f"{method} run {repeat + 1}: {wall:.2f} s, peak RSS {peak_gb:.2f} GB", flush=True)
            results[method] = (statistics.median(walls), min(walls), max(walls), max(peaks))
        print(f"load average after: {load_average()}")
        for method, (median, low, high, peak) in results.items():
            goal = f" | goal <= {GOAL_SECONDS} s, <= {GOAL_PEAK_GB} GB" if method == "onnx" else ""
            print(
                f"RESULT {method:<21} end-to-end median {median:.2f} s (min {low:.2f}, max {high:.2f}) | "
                f"peak RSS {peak:.2f} GB{goal}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
