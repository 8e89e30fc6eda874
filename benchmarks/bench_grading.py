"""Live-grading recompute time on a 512x512x300 segmentation (ONFHGrading's budget: 50 ms).

Builds a real MRML segmentation (slicer-core) whose two segments cover the whole
512x512x300 grid extent (the worst case: Slicer normally crops labelmaps to their
content) and times ``onfh.mrml.grading.compute_grade``, the call the panel makes after
each edit, in both layouts the Segment Editor produces: one shared layer and two
overlapping layers; then ``onfh.mrml.kerboul.compute_kerboul``, which the live grader
adds to each recompute.

    python benchmarks/bench_grading.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE_ZYX = (300, 512, 512)
SPACING_MM = (0.7, 0.7, 1.0)


def labelmap(slicer, vtk, numpy_support, values_zyx):
    image = slicer.vtkOrientedImageData()
    z, y, x = values_zyx.shape
    image.SetDimensions(x, y, z)
    image.SetSpacing(*SPACING_MM)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = values_zyx.ravel()
    return image


def build(layout: str):
    import slicer
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation = node.GetSegmentation()
    head_id = segmentation.AddEmptySegment("", "Femoral head")
    necrosis_id = segmentation.AddEmptySegment("", "Necrosis")
    z, y, x = np.ogrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    head = ((z - 150) / 1.0) ** 2 + ((y - 256) * 0.7) ** 2 + ((x - 256) * 0.7) ** 2 <= 24.0**2
    necrosis = head & ((z - 150) + (y - 256) * 0.7 > 12)
    if layout == "shared":
        values = head.astype(np.uint8)
        values[necrosis] = 2
        shared = labelmap(slicer, vtk, numpy_support, values)
        segmentation.GetSegment(head_id).AddRepresentation("Binary labelmap", shared)
        segmentation.GetSegment(necrosis_id).AddRepresentation("Binary labelmap", shared)
        segmentation.GetSegment(necrosis_id).SetLabelValue(2)
    else:
        for segment_id, mask in ((head_id, head), (necrosis_id, necrosis)):
            segment = segmentation.GetSegment(segment_id)
            values = mask.astype(np.uint8) * np.uint8(segment.GetLabelValue())
            segment.AddRepresentation("Binary labelmap", labelmap(slicer, vtk, numpy_support, values))
    return scene, logic, node, int(head.sum()), int(necrosis.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from onfh.mrml.grading import compute_grade, find_grading_segments
    from onfh.mrml.kerboul import compute_kerboul

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"grid {SHAPE_ZYX[::-1]} voxels (x, y, z) at {SPACING_MM} mm, budget 50 ms per recompute")
    for layout in ("shared", "overlapping"):
        _scene, _logic, node, head_voxels, necrosis_voxels = build(layout)
        layers = node.GetSegmentation().GetNumberOfLayers()
        result = compute_grade(node)
        assert abs(result.ratio - necrosis_voxels / head_voxels) < 1e-12, "benchmark graded the wrong voxels"
        times_ms = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            compute_grade(node)
            times_ms.append(1000 * (time.perf_counter() - start))
        print(
            f"{layout:12s} ({layers} layer(s)): median {statistics.median(times_ms):6.1f} ms, "
            f"max {max(times_ms):6.1f} ms over {args.repeats} recomputes "
            f"(ratio {result.ratio:.4f}, grade {result.grade})"
        )
        found = find_grading_segments(node)
        kerboul_ms = []
        for _ in range(max(3, args.repeats // 4)):
            start = time.perf_counter()
            kerboul = compute_kerboul(node, found["femoral_head"], found["necrosis"])
            kerboul_ms.append(1000 * (time.perf_counter() - start))
        print(
            f"{'':12s} Kerboul angle: median {statistics.median(kerboul_ms):6.1f} ms, max "
            f"{max(kerboul_ms):6.1f} ms ({kerboul.combined_angle_deg:.0f} deg, grade {kerboul.grade})"
        )


if __name__ == "__main__":
    main()
