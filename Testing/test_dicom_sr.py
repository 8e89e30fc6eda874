"""DICOM SR (TID 1500) of ``onfh segment``: the JSON report's numbers, the SEG's segments.

Read back with highdicom and with plain pydicom tree walking; the values must equal the
case report ``onfh segment`` wrote (to the DS precision of 16 characters), and the graded
case built from a phantom's exact labels must carry its known grade, interval and hips.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
import SimpleITK as sitk
from dicom_fixtures import (  # noqa: F401 (fixtures)
    PHANTOM_SERIES_UID,
    bilateral_dicom_phantom,
    dciodvfy,
    segmented_dicom_case,
    tiny_model_dir,
)

from onfh.dicom_seg import write_dicom_seg
from onfh.dicom_sr import PRIVATE_SCHEME, write_dicom_sr
from onfh.grading import grade_from_voxel_counts, grade_label_map
from onfh.report import case_report, input_info, kerboul_report

MODEL = {"id": "phantom-truth", "version": "7", "sha256": "fedcba9876543210" * 4}


def groups_of(sr) -> list:
    """The TID 1411/1501 measurement group containers under "Imaging Measurements"."""
    measurements = next(
        item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"
    )
    return list(measurements.ContentSequence)


def contents(group) -> dict[str, list]:
    """A group's items by concept (code value): (number, unit), code values, texts, UIDs, references."""
    found: dict[str, list] = {}
    for item in group.ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if item.ValueType == "NUM":
            value = float(item.MeasuredValueSequence[0].NumericValue)
            unit = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue
            found.setdefault(code, []).append((value, unit))
        elif item.ValueType == "CODE":
            found.setdefault(code, []).append(item.ConceptCodeSequence[0].CodeValue)
        elif item.ValueType == "TEXT":
            found.setdefault(code, []).append(item.TextValue)
        elif item.ValueType == "UIDREF":
            found.setdefault(code, []).append(item.UID)
        elif item.ValueType == "IMAGE":
            found.setdefault(code, []).append(item.ReferencedSOPSequence[0])
    return found


def test_sr_holds_the_json_reports_numbers_and_references_the_seg(segmented_dicom_case):  # noqa: F811
    case = segmented_dicom_case
    report = case["case_json"]
    sr = hd.sr.srread(case["dicom_sr"])
    seg = hd.seg.segread(case["dicom_seg"])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.StudyInstanceUID == seg.StudyInstanceUID and sr.PatientID == seg.PatientID
    schemes = {item.CodingSchemeDesignator: item for item in sr.CodingSchemeIdentificationSequence}
    assert schemes[PRIVATE_SCHEME].CodingSchemeName
    evidence = {
        ref.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert seg.SOPInstanceUID in evidence

    head_group, necrosis_group = groups_of(sr)[:2]
    head, necrosis = contents(head_group), contents(necrosis_group)
    volume = "118565006"
    assert head[volume] == [(pytest.approx(report["femoral_head_volume_ml"], rel=1e-9), "ml")]
    assert necrosis[volume] == [(pytest.approx(report["necrosis_volume_ml"], abs=1e-9), "ml")]
    assert necrosis["NECR-RATIO"] == [(pytest.approx(100 * report["necrosis_ratio"], abs=1e-9), "%")]
    low, high = report["necrosis_ratio_interval"]
    assert necrosis["NECR-RATIO-LO90"] == [(pytest.approx(100 * low, abs=1e-9), "%")]
    assert necrosis["NECR-RATIO-HI90"] == [(pytest.approx(100 * high, abs=1e-9), "%")]
    kerboul = report["kerboul"]
    assert necrosis["KERBOUL-ANGLE"] == [(pytest.approx(kerboul["combined_angle_deg"]), "deg")]
    assert necrosis["KERBOUL-GRADE"] == [f"KERBOUL-{kerboul['grade']}"]
    # This phantom's head fails the sphere check: the grade is withheld, and why is said.
    assert report["steinberg_grade"] is None
    code, text = necrosis["STEINBERG-EXTENT"]
    assert code == "STEINBERG-NONE" and text == report["reason"] and text.startswith("low confidence")

    for number, group in enumerate((head_group, necrosis_group), start=1):
        found = contents(group)
        reference = found["121191"][0]  # Referenced Segment
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert reference.ReferencedSegmentNumber == number
        assert found["112040"] == [seg.SegmentSequence[number - 1].TrackingUID]  # Tracking Unique Identifier
    algorithm = [
        item
        for item in head_group.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "118565006"
    ]
    names = {
        sub.ConceptNameCodeSequence[0].CodeMeaning: sub.TextValue
        for sub in algorithm[0].ContentSequence
        if sub.ValueType == "TEXT"
    }
    assert names["Algorithm Name"] == report["model"]["id"]
    assert names["Algorithm Parameters"] == f"sha256={report['model']['sha256']}"


def test_a_graded_bilateral_phantom_gives_its_known_grades_per_hip(tmp_path):
    truth, grid, sources = bilateral_dicom_phantom(tmp_path / "mr")
    labels = sitk.GetArrayFromImage(truth)
    grade = grade_label_map(labels, grid.GetSpacing())
    hips = []
    for side, half in (("right", labels[:, :, :45]), ("left", labels[:, :, 45:])):  # +x is the patient's left
        result = grade_from_voxel_counts(int((half > 0).sum()), int((half == 2).sum()), grid.GetSpacing())
        hips.append({"side": side, **result.to_dict(), "necrosis_ratio_interval": [0.05, 0.2]})
    report = case_report(
        grade,
        input_info(tmp_path / "mr", grid),
        MODEL,
        kerboul=kerboul_report(truth),
        necrosis_ratio_interval=[0.1, 0.2],
        hips=hips,
    )
    assert grade.grade in ("A", "B", "C") and grade.necrosis_volume_ml > 0

    seg = write_dicom_seg(truth, sources, MODEL, tmp_path / "hip.seg.dcm")
    write_dicom_sr(report, seg, sources, MODEL, tmp_path / "hip.sr.dcm")
    sr = hd.sr.srread(tmp_path / "hip.sr.dcm")
    groups = groups_of(sr)
    assert len(groups) == 2 + 2 * len(hips)
    necrosis = contents(groups[1])
    assert necrosis["STEINBERG-EXTENT"] == [f"STEINBERG-{grade.grade}"]
    assert necrosis["NECR-RATIO"][0][0] == pytest.approx(100 * grade.ratio, rel=1e-9)
    assert [value for value, _ in necrosis["NECR-RATIO-LO90"] + necrosis["NECR-RATIO-HI90"]] == [10.0, 20.0]
    for hip, (head_group, necrosis_group) in zip(hips, zip(groups[2::2], groups[3::2])):
        site = next(
            i for i in necrosis_group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "363698007"
        )
        laterality = site.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning
        assert laterality.lower() == hip["side"]
        assert contents(head_group)["118565006"][0][0] == pytest.approx(
            hip["femoral_head_volume_ml"], rel=1e-9
        )
        found = contents(necrosis_group)
        assert found["118565006"][0][0] == pytest.approx(hip["necrosis_volume_ml"], rel=1e-9)
        assert found["STEINBERG-EXTENT"] == [f"STEINBERG-{hip['steinberg_grade']}"]
    assert np.isclose(sum(h["femoral_head_volume_ml"] for h in hips), grade.head_volume_ml)

    errors, _ = dciodvfy(tmp_path / "hip.sr.dcm")
    assert errors == []
