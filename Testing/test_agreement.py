"""Tests for onfh.agreement: kappas on hand-computed matrices, ICC on published data, Bland-Altman."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from onfh import agreement

# DOMAIN.md: the reference study's true grades were 22 A, 23 B, 18 C.
TRUE_COUNTS = (22, 23, 18)


def adjacent_misgradings(pattern: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Confusion matrix with the study's true counts and one misgrading per (truth, pred) pair."""
    matrix = np.diag(TRUE_COUNTS).astype(int)
    for true_index, predicted_index in pattern:
        matrix[true_index, true_index] -= 1
        matrix[true_index, predicted_index] += 1
    return matrix


ADJACENT = ((0, 1), (1, 0), (1, 2), (2, 1))
FOUR_ADJACENT_PATTERNS = sorted(set(itertools.combinations_with_replacement(ADJACENT, 4)))


def test_kappa_by_hand_on_one_matrix():
    # Two A graded B and two B graded C: 59 of 63 on the diagonal.
    matrix = adjacent_misgradings(((0, 1), (0, 1), (1, 2), (1, 2)))
    assert matrix.tolist() == [[20, 2, 0], [0, 21, 2], [0, 0, 18]]
    n = 63
    rows, columns = (22, 23, 18), (20, 23, 20)
    p_observed = 59 / n
    p_chance = sum(r * c for r, c in zip(rows, columns)) / n**2
    assert agreement.cohen_kappa(matrix) == pytest.approx((p_observed - p_chance) / (1 - p_chance))
    # Linear: disagreement weight 1/2 for each adjacent cell, 1 for A-C.
    linear_weights = np.array([[0, 0.5, 1], [0.5, 0, 0.5], [1, 0.5, 0]])
    chance = np.outer(rows, columns) / n
    observed_disagreement = 4 * 0.5
    expected_disagreement = float((linear_weights * chance).sum())
    assert agreement.cohen_kappa(matrix, "linear") == pytest.approx(
        1 - observed_disagreement / expected_disagreement
    )
    quadratic_disagreement = 4 * 0.25
    expected_quadratic = float((linear_weights**2 * chance).sum())
    assert agreement.cohen_kappa(matrix, "quadratic") == pytest.approx(
        1 - quadratic_disagreement / expected_quadratic
    )


@pytest.mark.parametrize("pattern", FOUR_ADJACENT_PATTERNS)
def test_domain_consistency_note_holds_for_every_error_pattern(pattern):
    """22/23/18 with 4 adjacent misgradings: ~0.905 unweighted, 0.92-0.93 linear, ~0.95 quadratic."""
    matrix = adjacent_misgradings(pattern)
    assert np.trace(matrix) == 59
    kappas = agreement.cohen_kappas(matrix)
    assert kappas["unweighted"] == pytest.approx(0.905, abs=0.002)
    assert 0.92 <= kappas["linear"] <= 0.93
    assert kappas["quadratic"] == pytest.approx(0.95, abs=0.004)
    assert kappas["quadratic"] < 0.98  # the reported 0.98 is out of reach on these counts


def test_perfect_and_chance_agreement():
    assert agreement.cohen_kappas(np.diag([5, 7, 3])) == {w: 1.0 for w in agreement.KAPPA_WEIGHTS}
    # Ratings independent of the truth: observed equals the outer product of the marginals.
    independent = np.outer([2, 4, 6], [3, 3, 6])
    for value in agreement.cohen_kappas(independent).values():
        assert value == pytest.approx(0.0, abs=1e-12)


def test_kappa_undefined_when_one_grade_only():
    assert math.isnan(agreement.cohen_kappa(np.array([[0, 0, 0], [0, 9, 0], [0, 0, 0]])))
    assert math.isnan(agreement.cohen_kappa(np.zeros((3, 3))))


def test_weights_matter_for_distant_errors():
    near = np.array([[9, 1, 0], [0, 10, 0], [0, 0, 10]])
    far = np.array([[9, 0, 1], [0, 10, 0], [0, 0, 10]])
    assert agreement.cohen_kappa(near) == pytest.approx(agreement.cohen_kappa(far), abs=0.02)
    assert agreement.cohen_kappa(near, "quadratic") > agreement.cohen_kappa(far, "quadratic")


def test_confusion_matrix_rows_are_truth():
    matrix = agreement.confusion_matrix(["A", "A", "B", "C", "C"], ["A", "B", "B", "C", "B"])
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="outside categories"):
        agreement.confusion_matrix(["A"], ["D"])
    with pytest.raises(ValueError, match="grades"):
        agreement.confusion_matrix(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="weights"):
        agreement.cohen_kappa(np.eye(3), "cubic")


def test_icc_matches_shrout_fleiss_1979():
    """Shrout & Fleiss, Psychol Bull 1979, Table 2: 6 targets rated by 4 judges."""
    ratings = np.array(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
    )
    icc = agreement.intraclass_correlations(ratings)
    # Published (Table 4) to two decimals: ICC(1,1) .17, ICC(2,1) .29, ICC(3,1) .71.
    assert icc["ICC(1,1)"] == pytest.approx(0.17, abs=0.005)
    assert icc["ICC(2,1)"] == pytest.approx(0.29, abs=0.005)
    assert icc["ICC(3,1)"] == pytest.approx(0.71, abs=0.005)


def test_icc_absolute_agreement_penalises_an_offset():
    truth = np.linspace(0.02, 0.45, 12)
    rng = np.random.default_rng(0)
    prediction = truth + rng.normal(0.0, 0.01, truth.size)
    plain = agreement.intraclass_correlations(np.column_stack([truth, prediction]))
    offset = agreement.intraclass_correlations(np.column_stack([truth, prediction + 0.08]))
    assert offset["ICC(3,1)"] == pytest.approx(plain["ICC(3,1)"])
    assert offset["ICC(2,1)"] < plain["ICC(2,1)"] - 0.05
    same = agreement.intraclass_correlations(np.column_stack([truth, truth]))
    assert same["ICC(2,1)"] == pytest.approx(1.0)


def test_icc_degenerate_inputs():
    assert all(math.isnan(v) for v in agreement.intraclass_correlations(np.array([[0.1, 0.2]])).values())
    constant = agreement.intraclass_correlations(np.full((4, 2), 0.2))
    assert all(math.isnan(v) for v in constant.values())
    with pytest.raises(ValueError, match="raters"):
        agreement.intraclass_correlations(np.ones((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        agreement.intraclass_correlations(np.array([[0.1, np.nan], [0.2, 0.3]]))


def test_bland_altman_by_hand():
    truth = [0.10, 0.20, 0.30, 0.40]
    prediction = [0.12, 0.19, 0.33, 0.42]
    differences = [0.02, -0.01, 0.03, 0.02]
    bias = sum(differences) / 4
    sd = math.sqrt(sum((d - bias) ** 2 for d in differences) / 3)
    result = agreement.bland_altman(truth, prediction)
    assert result.n == 4
    assert result.bias == pytest.approx(bias)
    assert result.sd == pytest.approx(sd)
    assert result.lower_limit == pytest.approx(bias - 1.96 * sd)
    assert result.upper_limit == pytest.approx(bias + 1.96 * sd)
    assert set(result.to_dict()) == {"n", "bias", "sd", "lower_limit", "upper_limit"}


def test_bland_altman_small_samples():
    one = agreement.bland_altman([0.2], [0.25])
    assert one.bias == pytest.approx(0.05) and math.isnan(one.sd) and math.isnan(one.upper_limit)
    none = agreement.bland_altman([], [])
    assert none.n == 0 and math.isnan(none.bias)
    with pytest.raises(ValueError, match="equal-length"):
        agreement.bland_altman([0.1, 0.2], [0.1])
