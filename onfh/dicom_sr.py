"""DICOM Structured Report (TID 1500 Measurement Report) of one case, from its JSON report.

The numbers are the per-case JSON report's (``onfh.report.case_report``), never computed
again, so the SR, the JSON and ``summary.csv`` cannot disagree. The document holds:

- a "Femoral head" group (TID 1411) that references segment 1 of the SEG: head volume;
- a "Necrosis" group that references segment 2: necrosis volume, necrotic ratio with its
  90 % interval when measured, Kerboul combined necrotic angle when measured, and the
  Steinberg extent grade and Kerboul grade as qualitative evaluations;
- one group per hip (TID 1501, finding site head of femur with laterality) for a
  bilateral scan, since one SEG segment covers both hips.

Standard codes are used where they exist (SCT volume, head of femur, necrosis; UCUM ml, %,
deg; LOINC 25056-3 "MRI unspecified body region" from CID 100). The Steinberg and Kerboul
concepts have no standard code: they use the private coding scheme ``99ONFH``, declared in
the CodingSchemeIdentificationSequence as PS3.3 C.12.1.1.2 asks (dcmqi does the same with
its ``99...`` schemes). The tracking UIDs equal the SEG segments' TrackingUIDs, so a viewer
can join measurements and segments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PRIVATE_SCHEME = "99ONFH"
SR_SERIES_NUMBER = 9002
# TID 1501/1411 code values are SH (16 characters at most).
PRIVATE_CODES = {
    "ratio": ("NECR-RATIO", "Necrotic volume ratio of femoral head"),
    "ratio_low": ("NECR-RATIO-LO90", "Necrotic ratio 90% interval lower bound"),
    "ratio_high": ("NECR-RATIO-HI90", "Necrotic ratio 90% interval upper bound"),
    "steinberg": ("STEINBERG-EXTENT", "Steinberg extent grade"),
    "steinberg_A": ("STEINBERG-A", "Steinberg grade A (mild, < 15%)"),
    "steinberg_B": ("STEINBERG-B", "Steinberg grade B (moderate, 15-30%)"),
    "steinberg_C": ("STEINBERG-C", "Steinberg grade C (severe, > 30%)"),
    "steinberg_none": ("STEINBERG-NONE", "No grade: low confidence"),
    "kerboul_angle": ("KERBOUL-ANGLE", "Combined necrotic angle (modified Kerboul)"),
    "kerboul_grade": ("KERBOUL-GRADE", "Modified Kerboul grade"),
    **{f"kerboul_{g}": (f"KERBOUL-{g}", f"Modified Kerboul grade {g}") for g in (1, 2, 3, 4)},
}


def private_code(key: str):
    """A code of our private scheme ``99ONFH``."""
    from pydicom.sr.coding import Code

    value, meaning = PRIVATE_CODES[key]
    return Code(value, PRIVATE_SCHEME, meaning)


def coding_scheme():
    """The declaration of ``99ONFH`` for the CodingSchemeIdentificationSequence."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name="ONFH femoral head osteonecrosis grading",
        version="1",
        responsible_organization="onfh project",
    )


def _units() -> dict[str, Any]:
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    return {"ml": Code("ml", "UCUM", "milliliter"), "%": codes.UCUM.Percent, "deg": codes.UCUM.Degree}


def _algorithm(model: dict):
    """The model as TID 4019 Algorithm Identification: id, version, sha256 as a parameter."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.AlgorithmIdentification(
        name=str(model["id"]),
        version=str(model.get("version") or model["sha256"][:12]),
        parameters=[f"sha256={model['sha256']}"],
        family=codes.cid7162.ArtificialIntelligence,
        manufacturer="onfh",
    )


def _measurement(name, value: float, unit, algorithm, finding_site=None):
    import highdicom as hd

    return hd.sr.Measurement(
        name=name,
        value=float(value),
        unit=unit,
        algorithm_id=algorithm,
        finding_sites=[finding_site] if finding_site is not None else None,
    )


def _steinberg(report: dict):
    """Steinberg grade as a qualitative evaluation: A/B/C, or "no grade" for a withheld one."""
    import highdicom as hd

    grade = report.get("steinberg_grade")
    value = private_code(f"steinberg_{grade}" if grade in ("A", "B", "C") else "steinberg_none")
    return hd.sr.QualitativeEvaluation(private_code("steinberg"), value)


def add_no_grade_reason(group, report: dict) -> None:
    """Next to a coded "no grade", why: a TEXT item of the same concept (TID 1501/1411 allow
    text qualitative evaluations), e.g. "low confidence: head is not spherical"."""
    import highdicom as hd

    if report.get("steinberg_grade") in ("A", "B", "C"):
        return
    reason = str(report.get("reason") or "no femoral head")
    text = reason if reason.startswith("low confidence") else f"low confidence: {reason}"
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=private_code("steinberg"),
            value=text[:1024],
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )


def ratio_measurements(report: dict, algorithm) -> list:
    """Necrotic ratio (%) and its 90 % interval bounds when the report has them."""
    units = _units()
    items = []
    if report.get("necrosis_ratio") is not None:
        items.append(
            _measurement(private_code("ratio"), 100 * report["necrosis_ratio"], units["%"], algorithm)
        )
    interval = report.get("necrosis_ratio_interval")
    if interval:
        for key, bound in (("ratio_low", interval[0]), ("ratio_high", interval[1])):
            items.append(_measurement(private_code(key), 100 * bound, units["%"], algorithm))
    return items


def _kerboul(report: dict, algorithm) -> tuple[list, list]:
    import highdicom as hd

    kerboul = report.get("kerboul")
    if not kerboul:
        return [], []
    angle = _measurement(
        private_code("kerboul_angle"), kerboul["combined_angle_deg"], _units()["deg"], algorithm
    )
    grade = hd.sr.QualitativeEvaluation(
        private_code("kerboul_grade"), private_code(f"kerboul_{kerboul['grade']}")
    )
    return [angle], [grade]


def measurement_groups(report: dict, seg, model: dict) -> list:
    """The TID 1411/1501 groups of a case report (see the module docstring)."""
    source_series_uid = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = _algorithm(model)
    units = _units()
    head_site = hd.sr.FindingSite(codes.SCT.HeadOfFemur)
    groups = []
    for number, description in enumerate(seg.SegmentSequence, start=1):
        tracking = hd.sr.TrackingIdentifier(
            uid=description.TrackingUID, identifier=f"{description.SegmentLabel} (segment {number})"
        )
        is_head = number == 1
        volume = report["femoral_head_volume_ml" if is_head else "necrosis_volume_ml"]
        measurements = [_measurement(codes.SCT.Volume, volume, units["ml"], algorithm)]
        evaluations = []
        if not is_head:
            measurements += ratio_measurements(report, algorithm)
            kerboul_measurements, kerboul_evaluations = _kerboul(report, algorithm)
            measurements += kerboul_measurements
            evaluations = [_steinberg(report), *kerboul_evaluations]
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                # Built by hand: ``from_segmentation`` refuses a segment without frames (no necrosis).
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=seg.SOPClassUID,
                    sop_instance_uid=seg.SOPInstanceUID,
                    segment_number=number,
                    source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
                ),
                finding_type=hd.sr.CodedConcept.from_dataset(
                    description.SegmentedPropertyTypeCodeSequence[0]
                ),
                finding_category=hd.sr.CodedConcept.from_dataset(
                    description.SegmentedPropertyCategoryCodeSequence[0]
                ),
                finding_sites=None if is_head else [head_site],
                algorithm_id=algorithm,
                measurements=measurements,
                qualitative_evaluations=evaluations or None,
            )
        )
        if not is_head:
            add_no_grade_reason(groups[-1], report)
    for hip in report.get("hips") or []:
        groups += _hip_groups(hip, algorithm)
    return groups


def _hip_groups(hip: dict, algorithm) -> list:
    """The two groups of one hip of a bilateral scan (TID 1501, finding site head of femur
    with laterality): head volume; necrosis volume, ratio and grades."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    laterality = {"left": codes.SCT.Left, "right": codes.SCT.Right}.get(str(hip.get("side")).lower())
    site = hd.sr.FindingSite(codes.SCT.HeadOfFemur, laterality=laterality)
    volume_ml = _units()["ml"]
    kerboul_measurements, kerboul_evaluations = _kerboul(hip, algorithm)
    groups = []
    for finding, key in (
        (codes.SCT.HeadOfFemur, "femoral_head_volume_ml"),
        (codes.SCT.Necrosis, "necrosis_volume_ml"),
    ):
        measurements = [_measurement(codes.SCT.Volume, hip[key], volume_ml, algorithm)]
        evaluations = None
        if finding == codes.SCT.Necrosis:
            measurements += ratio_measurements(hip, algorithm) + kerboul_measurements
            evaluations = [_steinberg(hip), *kerboul_evaluations]
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=f"{finding.meaning}, {hip.get('side')} hip"
                ),
                finding_type=finding,
                finding_sites=[site],
                algorithm_id=algorithm,
                measurements=measurements,
                qualitative_evaluations=evaluations,
            )
        )
        if evaluations:
            add_no_grade_reason(groups[-1], hip)
    return groups


def make_dicom_sr(report: dict, seg, sources: list, model: dict):
    """A highdicom ``Comprehensive3DSR`` (TID 1500) of ``report``, referencing ``seg`` and its sources."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from onfh import __version__

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(prefix=None, entropy_srcs=[model["sha256"]]),  # one UID per model weights
        name=str(model["id"])[:64],
        manufacturer_name="onfh",
        model_name=str(model["id"])[:64],
        serial_number=str(model["sha256"])[:16],
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device)
    )
    content = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.LN.MRIUnspecifiedBodyRegion,
        imaging_measurements=measurement_groups(report, seg, model),
        title=codes.DCM.ImagingMeasurementReport,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources],
        content=content[0],
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="onfh",
        manufacturer_model_name=str(model["id"])[:64],
        software_versions=f"onfh {__version__}",
        device_serial_number=str(model["sha256"])[:16],
        is_complete=True,
        series_description="Femoral head osteonecrosis measurements (onfh)",
        coding_schemes=[coding_scheme()],
    )


def write_dicom_sr(report: dict, seg, sources: list, model: dict, path: str | os.PathLike):
    """Write the SR of ``report`` to ``path`` atomically; return the dataset."""
    from onfh.imageio import write_atomic

    sr = make_dicom_sr(report, seg, sources, model)
    write_atomic(Path(path), lambda tmp: sr.save_as(tmp, enforce_file_format=True))
    return sr
