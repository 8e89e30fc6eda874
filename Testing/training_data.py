"""Small sphere phantoms and tiny-recipe flags shared by the training tests.

A "hip" here is a bright ball (the femoral head) with a darker cap (the necrosis) in a
noisy, arbitrarily scaled background: enough for the trainer's plumbing, built in
milliseconds, with labels known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.dataset import add_case

SHAPE_ZYX = (40, 48, 48)
SPACING_MM = (1.5, 1.5, 2.0)

# Flags that make `onfh train` tiny: 3-level networks on coarse grids (seconds per model).
TINY_FLAGS = [
    "--spacing-mm",
    "2.5",
    "--patch-size",
    "24",
    "--filters",
    "4,8,16",
    "--localiser-spacing-mm",
    "8",
    "--localiser-size",
    "12",
    "--localiser-filters",
    "4,8,16",
    "--batch-size",
    "1",
    "--localiser-batch-size",
    "1",
    "--jitter-mm",
    "4",
    "--validate-every",
    "2",
    "--checkpoint-every",
    "2",
    "--threads",
    "2",
]


def sphere_case(
    rng: np.random.Generator, bilateral: bool = False, direction: tuple[float, ...] | None = None
) -> tuple[sitk.Image, sitk.Image]:
    """One phantom: image (float32, random scale) and label (0/1/2) on the same grid."""
    shape = (SHAPE_ZYX[0], SHAPE_ZYX[1], SHAPE_ZYX[2] * (2 if bilateral else 1))
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    points = np.stack([xx * SPACING_MM[0], yy * SPACING_MM[1], zz * SPACING_MM[2]], axis=-1)
    label = np.zeros(shape, dtype=np.uint8)
    centres_x = [36.0, 108.0] if bilateral else [36.0]
    for centre_x in centres_x:
        centre = np.asarray([centre_x, 36.0, 40.0]) + rng.uniform(-6, 6, 3)
        radius = rng.uniform(11, 14)
        head = np.linalg.norm(points - centre, axis=-1) < radius
        cap = head & (points[..., 2] > centre[2] + rng.uniform(2, 6))
        label[head] = 1
        label[cap] = 2
    image = np.select([label == 2, label == 1], [0.3, 1.0], 0.45) + rng.normal(0, 0.05, shape)
    image = (image * rng.uniform(50, 500) + rng.uniform(0, 100)).astype(np.float32)
    image_sitk = sitk.GetImageFromArray(image)
    image_sitk.SetSpacing(SPACING_MM)
    image_sitk.SetOrigin((-20.0, 5.0, 30.0))
    if direction is not None:
        image_sitk.SetDirection(direction)
    label_sitk = sitk.GetImageFromArray(label)
    label_sitk.CopyInformation(image_sitk)
    return image_sitk, label_sitk


def sphere_dataset(root: Path, cases: int, seed: int = 0) -> Path:
    """A dataset folder of ``cases`` sphere phantoms (ids ``case_000``...)."""
    rng = np.random.default_rng(seed)
    for number in range(cases):
        image, label = sphere_case(rng)
        add_case(root, f"case_{number:03d}", image, label)
    return root
