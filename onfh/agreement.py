"""Agreement between true and predicted grades and ratios: kappa, ICC, Bland-Altman.

Pure functions. Grades are ordered categories (A < B < C), so besides the unweighted
Cohen's kappa we report the linear and quadratic weighted kappas; the reference study
reported "weighted kappa 0.98" without saying which weights, and DOMAIN.md shows that no
standard weighting reaches 0.98 on its counts, so all three are reported together with the
confusion matrix they come from. The continuous ratio is compared with intraclass
correlation and Bland-Altman limits of agreement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

GRADES = ("A", "B", "C")
KAPPA_WEIGHTS = ("unweighted", "linear", "quadratic")
LIMITS_Z = 1.96  # 95 % limits of agreement


def confusion_matrix(
    truth: Sequence[str], prediction: Sequence[str], categories: Sequence[str] = GRADES
) -> np.ndarray:
    """Counts of (true, predicted) category pairs: rows are truth, columns prediction.

    Raises:
        ValueError: the sequences differ in length or hold a value outside ``categories``.
    """
    if len(truth) != len(prediction):
        raise ValueError(f"truth has {len(truth)} grades, prediction {len(prediction)}")
    index = {category: i for i, category in enumerate(categories)}
    matrix = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for true_value, predicted_value in zip(truth, prediction):
        if true_value not in index or predicted_value not in index:
            raise ValueError(
                f"grade pair ({true_value!r}, {predicted_value!r}) outside categories {tuple(categories)}"
            )
        matrix[index[true_value], index[predicted_value]] += 1
    return matrix


def _disagreement_weights(k: int, weights: str) -> np.ndarray:
    i, j = np.indices((k, k))
    if weights == "unweighted":
        return (i != j).astype(float)
    distance = np.abs(i - j) / max(k - 1, 1)
    if weights == "linear":
        return distance
    if weights == "quadratic":
        return distance**2
    raise ValueError(f"weights must be one of {KAPPA_WEIGHTS}, got {weights!r}")


def cohen_kappa(confusion: np.ndarray, weights: str = "unweighted") -> float:
    """Cohen's kappa from a square confusion matrix, optionally weighted.

    ``kappa = 1 - sum(w * observed) / sum(w * expected)`` with disagreement weights
    ``w_ij`` = 0/1 (unweighted), ``|i-j|/(k-1)`` (linear) or ``((i-j)/(k-1))^2``
    (quadratic), and ``expected`` the outer product of the marginals over ``N``.

    Returns:
        Kappa, or ``nan`` when chance disagreement is zero (for example every case in one
        grade in both ratings): kappa is undefined there, not perfect.
    """
    observed = np.asarray(confusion, dtype=float)
    if observed.ndim != 2 or observed.shape[0] != observed.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {observed.shape}")
    total = observed.sum()
    if total <= 0:
        return math.nan
    w = _disagreement_weights(observed.shape[0], weights)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    chance = float((w * expected).sum())
    if chance == 0.0:
        return math.nan
    return 1.0 - float((w * observed).sum()) / chance


def cohen_kappas(confusion: np.ndarray) -> dict[str, float]:
    """The unweighted, linear and quadratic kappas of one confusion matrix."""
    return {weights: cohen_kappa(confusion, weights) for weights in KAPPA_WEIGHTS}


def intraclass_correlations(ratings: np.ndarray) -> dict[str, float]:
    """Shrout and Fleiss single-measure ICCs of an ``n subjects x k raters`` table.

    - ``ICC(1,1)``: one-way random effects.
    - ``ICC(2,1)``: two-way random effects, absolute agreement (McGraw and Wong ICC(A,1)).
      A systematic offset between model and reference lowers it: the one to report for
      "does the model give the same ratio as the surgeon".
    - ``ICC(3,1)``: two-way mixed effects, consistency (McGraw and Wong ICC(C,1)); blind to
      a constant offset.

    Returns:
        The three values by name; ``nan`` for fewer than two subjects or zero variance.
    """
    table = np.asarray(ratings, dtype=float)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"expected an n x k table with k >= 2 raters, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("ratings contain NaN or infinite values")
    n, k = table.shape
    nan = {"ICC(1,1)": math.nan, "ICC(2,1)": math.nan, "ICC(3,1)": math.nan}
    if n < 2:
        return nan
    grand = table.mean()
    ss_rows = k * float(((table.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((table.mean(axis=0) - grand) ** 2).sum())
    ss_total = float(((table - grand) ** 2).sum())
    ss_error = ss_total - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    ms_within = (ss_cols + ss_error) / (n * (k - 1))

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else math.nan

    return {
        "ICC(1,1)": ratio(ms_rows - ms_within, ms_rows + (k - 1) * ms_within),
        "ICC(2,1)": ratio(ms_rows - ms_error, ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n),
        "ICC(3,1)": ratio(ms_rows - ms_error, ms_rows + (k - 1) * ms_error),
    }


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement of prediction minus truth (same units as the inputs)."""

    n: int
    bias: float
    sd: float
    lower_limit: float
    upper_limit: float

    def to_dict(self) -> dict[str, float]:
        """The fields by name."""
        return asdict(self)


def bland_altman(truth: Sequence[float], prediction: Sequence[float]) -> BlandAltman:
    """Mean difference (prediction - truth) and 95 % limits of agreement ``bias ± 1.96 SD``.

    The SD uses ``n - 1``; with fewer than two pairs it and the limits are ``nan``.
    """
    truth_values = np.asarray(truth, dtype=float)
    predicted_values = np.asarray(prediction, dtype=float)
    if truth_values.shape != predicted_values.shape or truth_values.ndim != 1:
        raise ValueError(
            f"expected two equal-length 1D sequences, got {truth_values.shape} and {predicted_values.shape}"
        )
    n = int(truth_values.size)
    if n == 0:
        return BlandAltman(0, math.nan, math.nan, math.nan, math.nan)
    differences = predicted_values - truth_values
    bias = float(differences.mean())
    sd = float(differences.std(ddof=1)) if n > 1 else math.nan
    return BlandAltman(n, bias, sd, bias - LIMITS_Z * sd, bias + LIMITS_Z * sd)
