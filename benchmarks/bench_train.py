"""Seconds per training iteration of ``onfh train``'s default recipe on this machine.

Measures the parts of one iteration separately (batch preparation with augmentation,
segmenter step, localiser step) and a validation pass, after a few warm-up iterations,
and prints them with the machine, torch/monai versions and thread count.

    PYTHONPATH=. python benchmarks/bench_train.py                 # spheres phantom, default recipe
    PYTHONPATH=. python benchmarks/bench_train.py --dataset d     # an 'onfh synth' dataset
    PYTHONPATH=. python benchmarks/bench_train.py --patch-size 64 --filters 16,32,64,128,256
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sphere_dataset(root: Path, cases: int, seed: int) -> Path:
    """Hip-sized phantoms: a 44-50 mm bright head with a darker cap lesion and its band, in
    muscle-like background, 0.7 x 0.7 x 1.2 mm voxels over a 180 x 180 x 144 mm field of view."""
    from onfh.dataset import add_case

    rng = np.random.default_rng(seed)
    spacing = (0.7, 0.7, 1.2)
    shape = (120, 256, 256)  # z, y, x
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    points = [xx * spacing[0], yy * spacing[1], zz * spacing[2]]
    for number in range(cases):
        centre = np.asarray([90.0, 90.0, 72.0]) + rng.uniform(-25, 25, 3)
        radius = rng.uniform(22, 25)
        distance = np.sqrt(sum((p - c) ** 2 for p, c in zip(points, centre)))
        head = distance < radius
        level = centre[2] + rng.uniform(0.0, 12.0)
        cap = head & (points[2] > level)
        band = cap & (points[2] < level + 2.0)  # the dark reactive band at the lesion's margin
        image = np.where(head, 0.95, 0.45) - 0.15 * cap - 0.62 * band
        image = image * rng.uniform(50, 800) * (1 + rng.normal(0, 0.04, shape))
        label = np.where(cap, 2, np.where(head, 1, 0)).astype(np.uint8)
        image_sitk = sitk.GetImageFromArray(np.abs(image).astype(np.float32))
        image_sitk.SetSpacing(spacing)
        label_sitk = sitk.GetImageFromArray(label)
        label_sitk.CopyInformation(image_sitk)
        add_case(root, f"bench_{number:03d}", image_sitk, label_sitk)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="dataset folder (default: sphere phantoms made here)")
    parser.add_argument("--cases", type=int, default=4, help="phantoms to make / cases to use")
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patch-size", type=int, default=None)
    parser.add_argument("--filters", default=None, help="segmenter filters, e.g. 16,32,64,128,256")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--spacing-mm", type=float, default=None)
    args = parser.parse_args()

    import monai
    import torch

    from onfh.dataset import list_cases
    from onfh.devices import configure_cpu_threads, describe_device, resolve_device
    from onfh.network import build_model
    from onfh.training.data import prepare_cases, region_size
    from onfh.training.loop import BatchSource, make_loss, make_optimiser, train_step, validate
    from onfh.training.recipe import TrainingRecipe, model_config

    threads = configure_cpu_threads(args.threads)
    device = resolve_device(args.device)
    changes = {}
    if args.patch_size:
        changes["patch_size"] = args.patch_size
    if args.filters:
        changes["filters"] = tuple(int(f) for f in args.filters.split(","))
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.spacing_mm:
        changes["segmenter_spacing_mm"] = args.spacing_mm
    recipe = TrainingRecipe(**changes).validated()
    config = model_config(recipe)

    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(args.dataset) if args.dataset else sphere_dataset(Path(tmp) / "d", args.cases, 0)
        files = list_cases(dataset)[: args.cases]
        region = region_size(recipe.patch_size, recipe.jitter_mm / recipe.segmenter_spacing_mm, 20.0, 0.15)
        started = time.perf_counter()
        prepared = list(prepare_cases(files, config, region).values())
        prepare_s = (time.perf_counter() - started) / len(files)

    torch.manual_seed(0)
    model = build_model(config).to(device)
    source = BatchSource(prepared, config, recipe, stream=0, rank=0)
    loss = make_loss()
    optimisers = {
        "localiser": make_optimiser(model.localiser.parameters(), recipe),
        "segmenter": make_optimiser(model.segmenter.parameters(), recipe),
    }
    timings: dict[str, list[float]] = {
        "batch": [],
        "segmenter_step": [],
        "localiser_step": [],
        "iteration": [],
    }
    for iteration in range(args.warmup + args.iterations):
        t0 = time.perf_counter()
        batch = source[iteration]
        t1 = time.perf_counter()
        train_step(
            model.segmenter,
            optimisers["segmenter"],
            loss,
            batch["segmenter_image"].to(device),
            batch["segmenter_label"].to(device),
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if batch["localiser_image"] is not None:
            train_step(
                model.localiser,
                optimisers["localiser"],
                loss,
                batch["localiser_image"].to(device),
                batch["localiser_label"].to(device),
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
        t3 = time.perf_counter()
        if iteration >= args.warmup:
            timings["batch"].append(t1 - t0)
            timings["segmenter_step"].append(t2 - t1)
            if batch["localiser_image"] is not None:
                timings["localiser_step"].append(t3 - t2)
            timings["iteration"].append(t3 - t0)
    t0 = time.perf_counter()
    validate(model, prepared, config, device)
    validate_s = (time.perf_counter() - t0) / len(prepared)

    per_iteration = statistics.mean(timings["iteration"])
    r = recipe
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} CPUs")
    print(f"device: {describe_device(device)}; torch {torch.__version__}; monai {monai.__version__}")
    print(f"threads: {threads}")
    print(
        f"recipe: patch {r.patch_size}^3 at {r.segmenter_spacing_mm} mm, filters {list(r.filters)}, "
        f"batch {r.batch_size}; localiser {r.localiser_size}^3 at {r.localiser_spacing_mm} mm, "
        f"filters {list(r.localiser_filters)}, batch {r.localiser_batch_size}"
    )
    print(f"cases: {len(prepared)} from {args.dataset or 'sphere phantoms'}")
    print(f"prepare per case: {prepare_s:.2f} s (region {region}^3)")
    print(f"localiser steps every {r.localiser_every} iterations (batch includes its augmentation)")
    for name, values in timings.items():
        low, high = min(values), max(values)
        print(
            f"{name:>15}: median {statistics.median(values):.3f} s (min {low:.3f}, max {high:.3f}, "
            f"n {len(values)})"
        )
    print(f"mean iteration: {per_iteration:.3f} s over {len(timings['iteration'])} iterations")
    print(f"validation per case: {validate_s:.2f} s")
    print(f"{r.iterations} iterations (default): about {per_iteration * r.iterations / 60:.0f} min per model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
