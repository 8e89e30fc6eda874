"""Time ``onfh.metrics.overlap_metrics`` on femoral-head-sized masks in a 256x256x120 volume.

python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onfh import metrics

SHAPE_ZYX = (120, 256, 256)
SPACING_ZYX_MM = (1.0, 0.7, 0.7)


def ball(centre_zyx, radius_mm):
    z, y, x = np.ogrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    offsets = [(axis - c) * s for axis, c, s in zip((z, y, x), centre_zyx, SPACING_ZYX_MM)]
    return sum(o**2 for o in offsets) <= radius_mm**2


def main() -> None:
    truth = ball((60, 128, 128), 23.0)
    prediction = ball((61, 129, 127), 22.5)
    pairs = {
        "femoral head": (prediction, truth),
        "necrosis": (prediction & ball((41, 111, 127), 14.0), truth & ball((40, 110, 128), 15.0)),
    }
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; SimpleITK {sitk.Version_VersionString()} "
        f"({sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()} threads), numpy {np.__version__}"
    )
    for name, (pred, true) in pairs.items():
        metrics.overlap_metrics(pred, true, SPACING_ZYX_MM)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            result = metrics.overlap_metrics(pred, true, SPACING_ZYX_MM)
            times.append(time.perf_counter() - start)
        print(f"{name}: median {1000 * np.median(times):.1f} ms over 5 runs, {result}")


if __name__ == "__main__":
    main()
