"""Steinberg extent grading: volumes, necrotic ratio and grade from masks (pure functions).

The femoral head is head ∪ necrosis whatever the segment editor did (overlapping or
exclusive segments), so a lesion painted over the head is never counted twice and a
lesion painted outside it still enlarges the head. Volumes are voxel counts times the voxel
volume in floating point; nothing is rounded before the grade is decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Steinberg (University of Pennsylvania) extent cut-offs, DOMAIN.md: A < 0.15 <= B <= 0.30 < C.
GRADE_B_MIN_RATIO = 0.15
GRADE_C_ABOVE_RATIO = 0.30
# A ratio this close to a cut-off can flip grade with a one-voxel-layer edit.
BORDERLINE_MARGIN = 0.02
MM3_PER_ML = 1000.0


def voxel_volume_mm3(spacing_mm: Sequence[float]) -> float:
    """Volume of one voxel in mm³.

    Raises:
        ValueError: spacing is not three positive finite numbers.
    """
    values = tuple(float(s) for s in spacing_mm)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be three positive finite numbers in mm, got {tuple(spacing_mm)}")
    return values[0] * values[1] * values[2]


def as_binary_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean array; refuse anything but 3D {0, 1} / bool arrays.

    A label map (values 0/1/2) passed where a binary mask belongs is a caller bug that
    would silently change volumes, so it is an error rather than ``mask > 0``.
    """
    array = np.asarray(mask)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D array, got shape {array.shape}")
    if array.dtype == bool:
        return array
    if array.size and (array.min() < 0 or array.max() > 1):
        values = np.unique(array)
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise ValueError(f"{name} must be binary (0/1), got values {shown}")
    return array.astype(bool, copy=False)


def _check_same_shape(head: np.ndarray, necrosis: np.ndarray) -> None:
    if head.shape != necrosis.shape:
        raise ValueError(f"head and necrosis masks differ in shape: {head.shape} vs {necrosis.shape}")


def mask_volume_mm3(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Volume of a binary mask in mm³ (voxel count times voxel volume)."""
    return float(np.count_nonzero(as_binary_mask(mask))) * voxel_volume_mm3(spacing_mm)


# Slabs of about this many voxels fit in L2 cache: comparing slab by slab is ~3x faster
# than comparing a whole 512x512x300 labelmap at once, and empty slabs are skipped.
_SLAB_VOXELS = 1 << 18


def _slabs(array: np.ndarray):
    """Consecutive views of ``array`` along its first axis, each about ``_SLAB_VOXELS``."""
    per_index = max(1, int(np.prod(array.shape[1:])))
    step = max(1, _SLAB_VOXELS // per_index)
    for start in range(0, array.shape[0], step):
        yield slice(start, start + step)


def count_label_values(labels: np.ndarray, values: Sequence[int]) -> dict[int, int]:
    """Voxel count of each label value in a labelmap, in one cache-friendly pass.

    This is the hot path of live grading (a shared Slicer layer holds head and
    necrosis under different values); zero slabs, most of a hip MRI, cost one check.
    """
    array = np.asarray(labels)
    counts = dict.fromkeys(values, 0)
    for slab in _slabs(array):
        part = array[slab]
        if not part.any():
            continue
        for value in counts:
            counts[value] += int(np.count_nonzero(part == value))
    return counts


def count_pair(a: np.ndarray, a_value: int, b: np.ndarray, b_value: int) -> tuple[int, int, int]:
    """Counts of ``a == a_value``, ``b == b_value`` and both, in one pass over two labelmaps.

    Overlapping Slicer segments live in separate layers; one fused pass keeps their
    recompute as cheap as a shared layer's.
    """
    if a.shape != b.shape:
        raise ValueError(f"labelmaps differ in shape: {a.shape} vs {b.shape}")
    count_a = count_b = both = 0
    for slab in _slabs(a):
        part_a, part_b = a[slab], b[slab]
        has_a, has_b = part_a.any(), part_b.any()
        mask_a = part_a == a_value if has_a else None
        mask_b = part_b == b_value if has_b else None
        count_a += int(np.count_nonzero(mask_a)) if has_a else 0
        count_b += int(np.count_nonzero(mask_b)) if has_b else 0
        both += int(np.count_nonzero(mask_a & mask_b)) if has_a and has_b else 0
    return count_a, count_b, both


def head_and_necrosis_voxels(head_mask: np.ndarray, necrosis_mask: np.ndarray) -> tuple[int, int]:
    """Voxel counts of the femoral head (head ∪ necrosis) and of the necrosis.

    Counts |head| + |necrosis \\ head| without building the union, which keeps a
    512x512x300 recompute inside the live-grading budget.
    """
    head = as_binary_mask(head_mask, "head mask")
    necrosis = as_binary_mask(necrosis_mask, "necrosis mask")
    _check_same_shape(head, necrosis)
    necrosis_voxels = int(np.count_nonzero(necrosis))
    outside_head = int(np.count_nonzero(necrosis & ~head)) if necrosis_voxels else 0
    return int(np.count_nonzero(head)) + outside_head, necrosis_voxels


def steinberg_grade(ratio: float) -> str:
    """Steinberg extent grade for a necrotic ratio in [0, 1]: A < 0.15 <= B <= 0.30 < C.

    Both cut-offs belong to B, the literal reading of "<15 %, 15-30 %, >30 %".

    Raises:
        ValueError: ratio is NaN or outside [0, 1].
    """
    if not (isinstance(ratio, (int, float, np.floating)) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
    if ratio < GRADE_B_MIN_RATIO:
        return "A"
    if ratio <= GRADE_C_ABOVE_RATIO:
        return "B"
    return "C"


def is_borderline(ratio: float, margin: float = BORDERLINE_MARGIN) -> bool:
    """True when ``ratio`` lies within ``margin`` of a grade cut-off (0.15 or 0.30).

    A 1e-12 tolerance keeps decimal inputs like 0.32 on the inclusive side despite binary
    floating point.
    """
    return any(abs(ratio - cut) <= margin + 1e-12 for cut in (GRADE_B_MIN_RATIO, GRADE_C_ABOVE_RATIO))


@dataclass(frozen=True)
class GradeResult:
    """Volumes, ratio and grade of one hip.

    ``ratio`` and ``grade`` are ``None`` when no grade can be given; ``reason`` says why.
    """

    head_volume_mm3: float
    necrosis_volume_mm3: float
    ratio: float | None
    grade: str | None
    borderline: bool
    reason: str | None = None

    @property
    def head_volume_ml(self) -> float:
        return self.head_volume_mm3 / MM3_PER_ML

    @property
    def necrosis_volume_ml(self) -> float:
        return self.necrosis_volume_mm3 / MM3_PER_ML

    def to_dict(self) -> dict:
        """The grading fields of the per-case JSON report (ARCHITECTURE.md section 4)."""
        return {
            "femoral_head_volume_ml": self.head_volume_ml,
            "necrosis_volume_ml": self.necrosis_volume_ml,
            "necrosis_ratio": self.ratio,
            "steinberg_grade": self.grade,
            "borderline": self.borderline,
            "reason": self.reason,
        }


def grade_from_voxel_counts(
    head_voxels: int, necrosis_voxels: int, spacing_mm: Sequence[float]
) -> GradeResult:
    """Grade from voxel counts; ``head_voxels`` already includes the necrosis.

    The ratio is a ratio of counts (the voxel volume cancels), so it is exact whatever the
    spacing; volumes are counts times the voxel volume.
    """
    if head_voxels < 0 or necrosis_voxels < 0 or necrosis_voxels > head_voxels:
        raise ValueError(f"invalid voxel counts: head {head_voxels}, necrosis {necrosis_voxels}")
    voxel_mm3 = voxel_volume_mm3(spacing_mm)
    head_mm3 = head_voxels * voxel_mm3
    necrosis_mm3 = necrosis_voxels * voxel_mm3
    if head_voxels == 0:
        return GradeResult(head_mm3, necrosis_mm3, None, None, False, "femoral head segment is empty")
    ratio = necrosis_voxels / head_voxels
    return GradeResult(head_mm3, necrosis_mm3, ratio, steinberg_grade(ratio), is_borderline(ratio))


def necrosis_ratio(
    head_mask: np.ndarray, necrosis_mask: np.ndarray, spacing_mm: Sequence[float]
) -> float | None:
    """Necrotic volume / femoral head volume (head ∪ necrosis), or ``None`` for an empty head."""
    return grade_masks(head_mask, necrosis_mask, spacing_mm).ratio


def grade_masks(head_mask: np.ndarray, necrosis_mask: np.ndarray, spacing_mm: Sequence[float]) -> GradeResult:
    """Volumes, ratio and Steinberg grade of a hip from its two binary masks.

    Args:
        head_mask: femoral head, with or without the necrosis (both are handled).
        necrosis_mask: necrotic lesion; voxels outside ``head_mask`` enlarge the head.
        spacing_mm: voxel spacing (x, y, z) in mm.

    Raises:
        ValueError: masks not 3D binary arrays of one shape, or invalid spacing.
    """
    voxel_volume_mm3(spacing_mm)
    head_voxels, necrosis_voxels = head_and_necrosis_voxels(head_mask, necrosis_mask)
    return grade_from_voxel_counts(head_voxels, necrosis_voxels, spacing_mm)


def grade_label_map(
    labels: np.ndarray, spacing_mm: Sequence[float], head_value: int = 1, necrosis_value: int = 2
) -> GradeResult:
    """Grade a label map of the file convention (1 head without necrosis, 2 necrosis)."""
    array = np.asarray(labels)
    if array.ndim != 3:
        raise ValueError(f"label map must be 3D, got shape {array.shape}")
    necrosis_voxels = int(np.count_nonzero(array == necrosis_value))
    head_voxels = int(np.count_nonzero(array == head_value)) + necrosis_voxels
    return grade_from_voxel_counts(head_voxels, necrosis_voxels, spacing_mm)
