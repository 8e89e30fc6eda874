"""Labels and terminology (onfh/labels.py) agree with the shipped Slicer terminology file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT, SEGMENTS, TERMINOLOGY_CONTEXT, classify_segment

TERM_FILE = Path(__file__).resolve().parents[1] / "Resources" / "Terminology" / "ONFH.term.json"


def test_terminology_file_holds_every_segment_code_and_colour():
    content = json.loads(TERM_FILE.read_text())
    assert content["SegmentationCategoryTypeContextName"] == TERMINOLOGY_CONTEXT
    entries = {
        (category["CodeValue"], kind["CodeValue"]): kind
        for category in content["SegmentationCodes"]["Category"]
        for kind in category["Type"]
    }
    for spec in SEGMENTS:
        kind = entries[(spec.category[1], spec.type[1])]
        assert kind["CodeMeaning"] == spec.type[2]
        assert kind["recommendedDisplayRGBValue"] == [round(255 * c) for c in spec.color_rgb]


def test_terminology_entry_has_slicer_field_layout():
    fields = NECROSIS_SEGMENT.terminology_entry.split("~")
    assert len(fields) == 7
    assert fields[0] == TERMINOLOGY_CONTEXT
    assert fields[2] == "SCT^6574001^Necrosis"
    assert fields[5] == "SCT^2812003^Head of femur"


@pytest.mark.parametrize(
    "name, terminology, expected",
    [
        ("Femoral head", "", "femoral_head"),
        ("  FEMORAL_HEAD ", "", "femoral_head"),
        ("Necrotic lesion", "", "necrosis"),
        ("lesion", "", "necrosis"),
        ("Segment_7", FEMORAL_HEAD.terminology_entry, "femoral_head"),
        ("Femoral head", NECROSIS_SEGMENT.terminology_entry, "necrosis"),  # the code wins over the name
        ("Acetabulum", "", None),
        ("Tissue", "Slicer~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~x~^^~^^", None),
    ],
)
def test_classify_segment(name, terminology, expected):
    assert classify_segment(name, terminology) == expected
