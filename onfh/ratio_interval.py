"""How sure is the ratio? An interval and grade probabilities from an ensemble's spread (pure math).

The members (test-time augmentations of the segmenter and, where a model folder holds
them, its cross-validation fold models) each give a necrotic ratio; their standard
deviation, times a calibration factor measured on held-out data (``model.json``
``uncertainty.sd_scale``; 1 when the model does not say), is the spread of a normal
distribution centred on the reported ratio. Its central 90 % is the interval, and its
mass in each Steinberg range is that grade's probability. A floor on the spread keeps an
ensemble that agrees to the voxel from claiming certainty the labels cannot give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from onfh.grading import GRADE_B_MIN_RATIO, GRADE_C_ABOVE_RATIO

LEVEL = 0.90
MIN_SD = 0.005  # half a percentage point of ratio
GRADES = ("A", "B", "C")


@dataclass(frozen=True)
class RatioInterval:
    """The interval on a ratio and the probability of each grade."""

    low: float
    high: float
    level: float
    sd: float  # calibrated spread used
    member_sd: float  # raw spread of the members' ratios
    probabilities: dict[str, float]

    def to_report(self) -> dict:
        """``necrosis_ratio_interval`` and ``grade_probabilities`` report fields, rounded."""
        return {
            "necrosis_ratio_interval": [round(self.low, 4), round(self.high, 4)],
            "grade_probabilities": {g: round(p, 3) for g, p in self.probabilities.items()},
        }


def grade_probabilities(ratio: float, sd: float) -> dict[str, float]:
    """Mass of ``N(ratio, sd)`` in each Steinberg range, renormalised to the ratio's [0, 1].

    Raises:
        ValueError: ``sd`` not positive or ``ratio`` outside [0, 1].
    """
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"spread must be a positive number, got {sd!r}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio!r}")
    cdf = NormalDist(ratio, sd).cdf
    edges = (0.0, GRADE_B_MIN_RATIO, GRADE_C_ABOVE_RATIO, 1.0)
    masses = [cdf(high) - cdf(low) for low, high in zip(edges[:-1], edges[1:])]
    total = sum(masses)
    return {grade: mass / total for grade, mass in zip(GRADES, masses)}


def ratio_interval(
    ratio: float, member_ratios: Sequence[float], sd_scale: float = 1.0, level: float = LEVEL
) -> RatioInterval:
    """The ``level`` interval on ``ratio`` and grade probabilities from the members' spread.

    Args:
        ratio: the reported ratio (centre).
        member_ratios: one ratio per ensemble member (at least two).
        sd_scale: calibration factor on the members' standard deviation.
        level: central probability of the interval.

    Raises:
        ValueError: fewer than two members, or a non-positive ``sd_scale``.
    """
    members = np.asarray(member_ratios, dtype=float)
    if members.size < 2:
        raise ValueError(f"an interval needs at least two ensemble members, got {members.size}")
    if not sd_scale > 0:
        raise ValueError(f"sd_scale must be positive, got {sd_scale!r}")
    member_sd = float(np.std(members, ddof=1))
    sd = max(member_sd * sd_scale, MIN_SD)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return RatioInterval(
        low=max(0.0, ratio - z * sd),
        high=min(1.0, ratio + z * sd),
        level=level,
        sd=sd,
        member_sd=member_sd,
        probabilities=grade_probabilities(ratio, sd),
    )


def probabilities_text(probabilities: dict[str, float] | None, minimum: float = 0.005) -> str:
    """``"B 82 %; A 18 %"``: grades by falling probability, those under ``minimum`` left out."""
    if not probabilities:
        return ""
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    return "; ".join(f"{grade} {100 * p:.0f} %" for grade, p in ranked if p >= minimum)


def sd_scale_for_coverage(
    errors: Sequence[float], member_sds: Sequence[float], level: float = LEVEL
) -> float:
    """The ``sd_scale`` that puts ``level`` of held-out cases inside their interval.

    Args:
        errors: reported ratio - true ratio, per case.
        member_sds: the members' raw standard deviation, per case.
    """
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    spread = np.maximum(np.asarray(member_sds, dtype=float), 1e-9)
    needed = np.abs(np.asarray(errors, dtype=float)) / (z * spread)
    return float(np.quantile(needed, level)) if needed.size else float("nan")
