"""End-to-end speed and memory of ``onfh segment`` on a 256x256x120, 0.7x0.7x1.0 mm hip MRI.

Runs the real command as a child process (as the Slicer module does), so the figures
include interpreter start, imports, reading, preprocessing, both networks, mapping back
and writing. Prints seconds per stage (from the case report), wall time, peak resident
memory of the child, torch version, thread count and the machine.

Usage::

    python benchmarks/bench_segment.py                 # full-size architecture, random weights
    python benchmarks/bench_segment.py --model DIR     # a trained model folder
    python benchmarks/bench_segment.py --threads 2 --repeats 3 --device cpu

Speed does not depend on the weights' values, only on the architecture and grid sizes,
so without ``--model`` the full-size networks of the training recipe's defaults
(``onfh.training.recipe.model_config``) are saved with random weights. Their output-layer
biases are set so that every voxel is "femoral head": localisation then always succeeds
and the map-back works on the full crop (the slowest case for post-processing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def random_full_size_model(folder: Path) -> Path:
    """The shared design's networks with random weights, biased to predict 'head' everywhere."""
    import torch

    from onfh.modelfolder import default_config, save_model_folder
    from onfh.network import build_model

    torch.manual_seed(0)
    config = default_config("benchmark-random-weights")
    try:  # the architecture the training recipe ships, when the trainer is installed
        from onfh.training.recipe import TrainingRecipe, model_config

        config.update(model_config(TrainingRecipe()))
    except ImportError:
        pass
    model = build_model(config)
    with torch.no_grad():
        for network in (model.localiser, model.segmenter):
            bias = network.output_block.conv.conv.bias
            bias.zero_()
            bias[1] = 100.0
    config["training"] = {"note": "random weights for speed measurement only"}
    return save_model_folder(folder, model, config).path


def write_case(path: Path, seed: int) -> dict:
    from onfh.imageio import write_image_atomic
    from onfh.synthetic import generate_case

    case = generate_case(seed, spacing_mm=(0.7, 0.7, 1.0), size=(256, 256, 120))
    write_image_atomic(case.image, path)
    return case.info


def run_once(image: Path, model: Path, outdir: Path, device: str, threads: int) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (GB) of the largest child so far, and the case report."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONFH_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "onfh", "segment", str(image), "-o", str(outdir)]
    command += ["--model", str(model), "--device", device, "--progress", "none"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if result.returncode != 0:
        raise SystemExit(f"onfh segment failed ({result.returncode}): {result.stderr.strip()}")
    report = json.loads((outdir / f"{image.name[: -len('.nii.gz')]}.json").read_text())
    return wall, peak_kb / 1024.0 / 1024.0, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained model folder (default: random full-size weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import monai
    import torch

    from onfh.devices import available_cpu_count

    threads = args.threads or available_cpu_count()
    with tempfile.TemporaryDirectory(prefix="onfh-bench-") as tmp:
        work = Path(tmp)
        model = args.model or random_full_size_model(work / "model")
        image = work / "bench_hip.nii.gz"
        info = write_case(image, args.seed)
        print(f"machine: {platform.node()} | {cpu_name()} | {available_cpu_count()} cores available")
        print(f"python {platform.python_version()} | torch {torch.__version__} | monai {monai.__version__}")
        print(f"device: {args.device} | threads: {threads} | model: {model}")
        print(f"input: 256x256x120 at 0.7x0.7x1.0 mm, synthetic seed {args.seed} ({info['orientation']})")
        walls, peaks = [], []
        for repeat in range(args.repeats):
            wall, peak_gb, report = run_once(image, model, work / f"out{repeat}", args.device, threads)
            walls.append(wall)
            peaks.append(peak_gb)
            stages = ", ".join(f"{k} {v:.2f}" for k, v in report["timings_s"].items())
            print(f"run {repeat + 1}: end to end {wall:.2f} s | peak RSS {peak_gb:.2f} GB | {stages}")
        print(
            f"RESULT end-to-end median {statistics.median(walls):.2f} s (min {min(walls):.2f}, "
            f"max {max(walls):.2f}) | peak RSS {max(peaks):.2f} GB (largest child process) | "
            "bars: <= 20 s, <= 3 GB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
