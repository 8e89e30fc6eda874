"""Time of the ratio interval (test-time augmentation) per hip, against its 10 s budget.

Loads a model folder (default: the installed model), synthesises hip MRIs with
``onfh.synthetic.generate_case``, segments each as ``onfh segment`` does and then times
``Ensemble.measure`` (8 segmenter passes per hip, plus fold models if the folder has
them). The interval is on by default only while one hip's extra time stays within the
budget on 2 CPU threads.

    python benchmarks/bench_interval.py [--model DIR] [--cases 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the installed model)")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()

    import SimpleITK as sitk
    import torch

    torch.set_num_threads(args.threads)
    from onfh.ensemble import load_ensemble
    from onfh.grading import grade_label_map
    from onfh.inference import Segmenter
    from onfh.modelfolder import default_model_dir, load_model, load_model_folder
    from onfh.synthetic.phantom import generate_case

    folder = load_model_folder(args.model or default_model_dir())
    model = load_model(folder)
    segmenter = Segmenter(model, folder.config)
    ensemble = load_ensemble(folder, model)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"{args.threads} threads"
    )
    print(
        f"model {folder.id}: {len(ensemble.networks)} network(s), "
        f"{len(ensemble.augmentations)} members per hip"
    )
    segment_s, interval_s = [], []
    for number in range(args.cases):
        case = generate_case(args.seed + number)
        image = sitk.Cast(case.image, sitk.sitkFloat32)
        start = time.perf_counter()
        result = segmenter.segment(image)
        segment_s.append(time.perf_counter() - start)
        grade = grade_label_map(sitk.GetArrayViewFromImage(result.label), image.GetSpacing())
        start = time.perf_counter()
        fields = ensemble.measure(image, result.heads, grade.ratio)
        interval_s.append((time.perf_counter() - start) / max(len(result.heads), 1))
        low, high = fields["necrosis_ratio_interval"] or (float("nan"), float("nan"))
        print(
            f"case {args.seed + number} {image.GetSize()}: segment {segment_s[-1]:.2f} s, interval "
            f"{interval_s[-1]:.2f} s per hip; ratio {grade.ratio:.3f} [{low:.3f}, {high:.3f}], true "
            f"{case.info['ratio']:.3f}"
        )
    median = statistics.median(interval_s)
    print(
        f"median: segment {statistics.median(segment_s):.2f} s, interval {median:.2f} s per hip "
        f"(budget {BUDGET_S:.0f} s: {'holds' if median <= BUDGET_S else 'EXCEEDED'})"
    )


if __name__ == "__main__":
    main()
