"""Label values, segment names, colours and terminology shared by files, Slicer and the CLI.

Label files use ``0`` background, ``1`` femoral head without necrosis, ``2`` necrosis;
the femoral head is ``{1, 2}`` (ARCHITECTURE.md section 4). Segments are identified by
their SNOMED CT code first and by name second, so renamed or translated segments still
grade correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = 0
HEAD_WITHOUT_NECROSIS = 1
NECROSIS = 2

LABEL_NAMES = {
    "background": BACKGROUND,
    "femoral_head": HEAD_WITHOUT_NECROSIS,
    "necrosis": NECROSIS,
}

# Our own terminology context, shipped as Resources/Terminology/ONFH.term.json.
TERMINOLOGY_CONTEXT = "ONFH - Femoral head osteonecrosis"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class SegmentSpec:
    """How one structure appears as a Slicer segment and in a label file."""

    key: str
    name: str
    label_value: int
    color_rgb: tuple[float, float, float]
    category: tuple[str, str, str]  # (scheme, code, meaning)
    type: tuple[str, str, str]
    anatomic_region: tuple[str, str, str] | None
    name_aliases: tuple[str, ...]

    @property
    def terminology_entry(self) -> str:
        """Slicer's serialised terminology string (the ``TerminologyEntry`` segment tag)."""

        def code(triple: tuple[str, str, str] | None) -> str:
            return "^".join(triple) if triple else "^^"

        return "~".join(
            [
                TERMINOLOGY_CONTEXT,
                code(self.category),
                code(self.type),
                "^^",
                ANATOMIC_CONTEXT,
                code(self.anatomic_region),
                "^^",
            ]
        )


# Head of femur: SNOMED CT 2812003 (DICOM CID 7304 "Implant Target Anatomy", SRT T-12711).
FEMORAL_HEAD = SegmentSpec(
    key="femoral_head",
    name="Femoral head",
    label_value=HEAD_WITHOUT_NECROSIS,
    color_rgb=(0.87, 0.80, 0.55),
    category=("SCT", "91723000", "Anatomical Structure"),
    type=("SCT", "2812003", "Head of femur"),
    anatomic_region=None,
    name_aliases=("femoral head", "femoral_head", "head", "head of femur", "femur head"),
)

# Necrosis: SNOMED CT 6574001 (morphologic abnormality), located in the head of femur.
NECROSIS_SEGMENT = SegmentSpec(
    key="necrosis",
    name="Necrosis",
    label_value=NECROSIS,
    color_rgb=(0.85, 0.20, 0.20),
    category=("SCT", "49755003", "Morphologically Altered Structure"),
    type=("SCT", "6574001", "Necrosis"),
    anatomic_region=("SCT", "2812003", "Head of femur"),
    name_aliases=("necrosis", "necrotic lesion", "lesion", "necrotic", "osteonecrosis"),
)

SEGMENTS = (FEMORAL_HEAD, NECROSIS_SEGMENT)


def classify_segment(name: str, terminology_entry: str = "") -> str | None:
    """Return ``"femoral_head"``, ``"necrosis"`` or ``None`` for a segment.

    The SNOMED CT type code in the terminology entry wins (it survives renaming); the
    name is the fallback, compared case-insensitively against known aliases.
    """
    fields = terminology_entry.split("~") if terminology_entry else []
    if len(fields) >= 3:
        type_code = fields[2].split("^")
        if len(type_code) >= 2:
            kind = classify_type_code(type_code[0], type_code[1])
            if kind is not None:
                return kind
    return classify_segment_name(name)


def classify_type_code(scheme: str, value: str) -> str | None:
    """``"femoral_head"``, ``"necrosis"`` or ``None`` for a segmented property type code
    (a Slicer terminology entry's or a DICOM SEG's SegmentedPropertyTypeCodeSequence)."""
    if scheme == "SCT":
        for spec in SEGMENTS:
            if value == spec.type[1]:
                return spec.key
    return None


def classify_segment_name(name: str) -> str | None:
    """``"femoral_head"``, ``"necrosis"`` or ``None`` for a segment name, by known aliases."""
    normalised = " ".join(name.strip().lower().replace("_", " ").split())
    for spec in SEGMENTS:
        if normalised in {alias.replace("_", " ") for alias in spec.name_aliases}:
            return spec.key
    return None
