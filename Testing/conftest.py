"""Shared fixtures: a real MRML scene (slicer-core, no Qt) and nodes built in code.

Layered as ``a_scene`` -> ``a_volume_node`` -> ``a_segmentation_node``. The segmentations
logic is created with the scene: without it the binary-labelmap converter rules are not
registered and segments cannot be edited.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "2")

VOLUME_SHAPE_ZYX = (24, 40, 48)
VOLUME_SPACING_MM = (0.7, 0.7, 1.0)


@pytest.fixture
def a_scene():
    """A real ``vtkMRMLScene`` with the segmentations logic attached."""
    slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    scene.segmentations_logic = logic  # keep the logic alive as long as the scene
    yield scene
    logic.SetMRMLScene(None)
    scene.Clear(1)


@pytest.fixture
def a_volume_node(a_scene):
    """A scalar volume (48x40x24 voxels at 0.7x0.7x1.0 mm) filled with a smooth ramp."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    z, y, x = VOLUME_SHAPE_ZYX
    image = vtk.vtkImageData()
    image.SetDimensions(x, y, z)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(z, y, x)
    values[:] = np.arange(x, dtype=np.int16)[np.newaxis, np.newaxis, :]
    node = a_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Hip MRI")
    node.SetAndObserveImageData(image)
    node.SetSpacing(*VOLUME_SPACING_MM)
    node.SetOrigin(-10.0, 20.0, 5.0)
    assert isinstance(node, slicer.vtkMRMLScalarVolumeNode)
    return node


@pytest.fixture
def a_segmentation_node(a_scene, a_volume_node):
    """An empty segmentation node whose reference geometry is ``a_volume_node``."""
    node = a_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Hip MRI segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(a_volume_node)
    return node


def set_segment_mask(
    scene, segmentation_node, segment_id: str, mask_zyx: np.ndarray, volume_node, oversample: int = 1
) -> None:
    """Replace a segment's voxels with ``mask_zyx`` (on the volume's grid), like a real edit.

    With ``oversample`` > 1 the labelmap is written on a grid ``oversample`` times finer
    than the volume (each voxel split into oversample**3), so the segment's geometry
    differs from the reference volume while covering exactly the same physical region.

    Goes through ``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``, the call
    the Segment Editor effects use, so it fires the events a brush stroke fires.
    """
    import slicer
    import vtk
    from vtk.util import numpy_support

    for axis in range(3):
        mask_zyx = np.repeat(mask_zyx, oversample, axis=axis)
    z, y, x = mask_zyx.shape
    spacing = [s / oversample for s in volume_node.GetSpacing()]
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASDirectionMatrix(matrix)
    # Keep the outer voxel corner where it is: shift the first centre by half a fine voxel.
    shift = [(fine - coarse) / 2 for fine, coarse in zip(spacing, volume_node.GetSpacing())]
    origin = [
        volume_node.GetOrigin()[r] + sum(matrix.GetElement(r, c) * shift[c] for c in range(3))
        for r in range(3)
    ]
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(x, y, z)
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    labelmap.SetSpacing(spacing)
    labelmap.SetOrigin(origin)
    labelmap.SetDirectionMatrix(matrix)
    numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = mask_zyx.astype(np.uint8).ravel()
    logic = scene.segmentations_logic
    ok = logic.SetBinaryLabelmapToSegment(labelmap, segmentation_node, segment_id, logic.MODE_REPLACE)
    assert ok, f"SetBinaryLabelmapToSegment failed for {segment_id}"
