"""The per-case report's front-end line and the low-confidence rule for grade probabilities."""

from __future__ import annotations

from onfh.report import flag_low_confidence, result_text


def full_report() -> dict:
    return {
        "necrosis_ratio": 0.173,
        "steinberg_grade": "B",
        "necrosis_ratio_interval": [0.141, 0.205],
        "grade_probabilities": {"A": 0.18, "B": 0.82, "C": 0.0},
        "kerboul": {"combined_angle_deg": 215.4, "grade": 2},
    }


def test_result_text_shows_probabilities_interval_and_kerboul():
    assert result_text(full_report()) == (
        "Grade B (B 82 %; A 18 %), ratio 17.3 % (90 % interval 14.1-20.5 %), Kerboul 215° (grade 2)"
    )


def test_result_text_reads_older_and_broken_reports():
    assert result_text({"necrosis_ratio": 0.4, "steinberg_grade": "C"}) == "Grade C, ratio 40.0 %"
    assert result_text({"necrosis_ratio": None, "steinberg_grade": None}) == "No grade"
    assert result_text([1, 2]) == "" and result_text({"quality": {}}) == ""


def test_low_confidence_withholds_the_probabilities_with_the_grade():
    report = flag_low_confidence(full_report(), {"passed": False, "summary": "low confidence: half a head"})
    assert report["steinberg_grade"] is None and report["grade_probabilities"] is None
    assert report["unchecked_grade_probabilities"]["B"] == 0.82
    assert result_text(report).startswith("No grade, ratio 17.3 % (90 % interval")
