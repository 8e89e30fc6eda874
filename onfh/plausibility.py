"""Is a segmentation result anatomically plausible as a whole? Checks across heads.

The sphere check (``onfh.head_check``) judges each head alone: its radius, shape and fill
bound its volume. What it cannot see is the count: a one-hip scan "segmented" as two
hips, or two "heads" of very different size. Adult femoral head centres lie about
150-200 mm apart and the two heads are near mirror images, so a pair outside generous
bounds makes the result low confidence rather than two plain grades.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BILATERAL_DISTANCE_MM = (130.0, 260.0)  # adult head centres ~150-200 mm apart, with margin
MAX_BILATERAL_VOLUME_RATIO = 1.6  # contralateral heads differ by far less than this


def head_pair_problems(centres_mm: Sequence[Sequence[float]], volumes_ml: Sequence[float]) -> list[str]:
    """Why two (or more) segmented heads are implausible as the two hips of one patient; empty if fine."""
    if len(centres_mm) < 2:
        return []
    problems = []
    if len(centres_mm) > 2:
        problems.append(f"{len(centres_mm)} femoral heads found (a patient has two)")
    first, second = (np.asarray(c, dtype=float) for c in centres_mm[:2])
    distance = float(np.linalg.norm(first - second))
    low, high = BILATERAL_DISTANCE_MM
    if not low <= distance <= high:
        problems.append(f"two heads {distance:.0f} mm apart (adult hips: {low:.0f}-{high:.0f} mm)")
    small, large = sorted(float(v) for v in volumes_ml[:2])
    if small <= 0 or large / small > MAX_BILATERAL_VOLUME_RATIO:
        problems.append(f"two heads of unequal size ({small:.1f} and {large:.1f} mL)")
    return problems


def with_problems(quality: dict, problems: Sequence[str]) -> dict:
    """``quality`` (the sphere checks' summary) with further problems: failed, reasons appended."""
    if not problems:
        return quality
    reasons = (
        [] if quality.get("passed", True) else [quality.get("summary", "").removeprefix("low confidence: ")]
    )
    return {**quality, "passed": False, "summary": "low confidence: " + "; ".join([*reasons, *problems])}
