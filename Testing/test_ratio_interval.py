"""Ratio interval and grade probabilities from an ensemble's spread, against known normals."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from onfh.ratio_interval import (
    MIN_SD,
    grade_probabilities,
    probabilities_text,
    ratio_interval,
    sd_scale_for_coverage,
)

Z90 = NormalDist().inv_cdf(0.95)


def test_interval_is_the_central_90_percent_of_the_members_normal():
    members = [0.20, 0.22, 0.24, 0.26]
    sd = float(np.std(members, ddof=1))
    interval = ratio_interval(0.23, members)
    assert interval.low == pytest.approx(0.23 - Z90 * sd)
    assert interval.high == pytest.approx(0.23 + Z90 * sd)
    assert interval.member_sd == pytest.approx(sd) and interval.level == 0.9


def test_sd_scale_widens_the_interval_and_agreeing_members_keep_a_floor():
    members = [0.20, 0.22, 0.24, 0.26]
    plain, scaled = ratio_interval(0.23, members), ratio_interval(0.23, members, sd_scale=2.0)
    assert scaled.high - scaled.low == pytest.approx(2 * (plain.high - plain.low))
    agreeing = ratio_interval(0.23, [0.23] * 8)
    assert agreeing.sd == MIN_SD and agreeing.high - agreeing.low == pytest.approx(2 * Z90 * MIN_SD)


def test_interval_stays_inside_zero_and_one():
    interval = ratio_interval(0.01, [0.0, 0.05, 0.1])
    assert interval.low == 0.0 and interval.high > 0.01


def test_grade_probabilities_follow_the_normal_mass_in_each_range():
    assert grade_probabilities(0.15, 0.01)["A"] == pytest.approx(0.5, abs=1e-6)
    assert grade_probabilities(0.15, 0.01)["B"] == pytest.approx(0.5, abs=1e-6)
    middle = grade_probabilities(0.225, 0.01)
    assert middle["B"] > 0.999 and sum(middle.values()) == pytest.approx(1.0)
    near_c = grade_probabilities(0.29, 0.02)
    assert near_c["C"] == pytest.approx(1 - NormalDist(0.29, 0.02).cdf(0.30), abs=1e-3)
    assert near_c["B"] > near_c["C"] > near_c["A"]


def test_probabilities_text_ranks_grades_and_drops_the_negligible():
    assert probabilities_text({"A": 0.18, "B": 0.82, "C": 0.001}) == "B 82 %; A 18 %"
    assert probabilities_text(None) == ""


@pytest.mark.parametrize(
    "members, scale, message", [([0.2], 1.0, "two ensemble members"), ([0.2, 0.3], 0.0, "sd_scale")]
)
def test_refuses_what_gives_no_interval(members, scale, message):
    with pytest.raises(ValueError, match=message):
        ratio_interval(0.2, members, sd_scale=scale)


def test_calibrated_scale_gives_the_stated_coverage_on_fresh_cases():
    rng = np.random.default_rng(0)
    member_sds = rng.uniform(0.005, 0.03, 4000)
    errors = rng.normal(0.0, 2.5 * member_sds)  # members' spread underestimates the error 2.5x
    scale = sd_scale_for_coverage(errors[:2000], member_sds[:2000])
    assert scale == pytest.approx(2.5, rel=0.1)
    truth = 0.5 - errors[2000:]  # reported ratio 0.5
    inside = [
        interval.low <= t <= interval.high
        for t, sd in zip(truth, member_sds[2000:])
        for interval in [ratio_interval(0.5, [0.5 - sd, 0.5 + sd], sd_scale=scale / np.sqrt(2))]
    ]
    assert np.mean(inside) == pytest.approx(0.9, abs=0.02)
