"""DICOM Segmentation (SEG) out and in: the femoral head and necrosis as a PACS object.

Written with highdicom as a BINARY SEG on the frames of the source MR series, so a PACS,
OHIF or 3D Slicer (QuantitativeReporting's DICOMSegmentationPlugin, through dcmqi) shows
it over the images it came from. Two segments, which overlap on purpose:

1. "Femoral head": the whole head, necrosis included (label values 1 and 2), so that the
   segment is what its code says (SCT 2812003 head of femur) and its volume is the
   femoral head volume the SR reports;
2. "Necrosis": label value 2 (SCT 6574001, in the head of femur).

A bilateral scan gives one "Femoral head" segment covering both hips (and one
"Necrosis"): the SEG holds structures, the SR's per-hip groups hold the per-hip numbers.

Reading accepts any DICOM SEG: segments are found by their SNOMED CT type code first and
their label second (like ``.seg.nrrd`` segments), and the masks are rebuilt on the grid
the SEG's plane positions and pixel measures define.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from onfh.dicom_volume import short_error, volume_image
from onfh.errors import OnfhError
from onfh.labels import NECROSIS, SEGMENTS, classify_segment_name, classify_type_code

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# Series numbers of our derived series: far from the scanner's own (1-100 as a rule).
SEG_SERIES_NUMBER = 9001
MANUFACTURER = "onfh"


def algorithm_identification(model: dict):
    """SegmentAlgorithmIdentification of the model: its id, version and sha256.

    The family is CID 7162 "Artificial Intelligence" (DCM 123110); the sha256 goes into
    AlgorithmParameters so that a SEG names the exact weights, as the JSON report does.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=str(model["id"]),
        family=codes.cid7162.ArtificialIntelligence,
        version=str(model.get("version") or model["sha256"][:12]),
        source=MANUFACTURER,
        parameters={"sha256": str(model["sha256"])},
    )


def segment_descriptions(model: dict) -> list:
    """The two SegmentDescriptions, with our terminology (``onfh.labels``) and colours."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    algorithm = algorithm_identification(model)
    descriptions = []
    for number, spec in enumerate(SEGMENTS, start=1):
        rgb = [round(255 * c) for c in spec.color_rgb]
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=spec.name,
                segmented_property_category=Code(spec.category[1], spec.category[0], spec.category[2]),
                segmented_property_type=Code(spec.type[1], spec.type[0], spec.type[2]),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=hd.UID(),
                tracking_id=spec.name,
                anatomic_regions=(
                    [Code(spec.anatomic_region[1], spec.anatomic_region[0], spec.anatomic_region[2])]
                    if spec.anatomic_region
                    else None
                ),
                display_color=hd.color.CIELabColor.from_rgb(*rgb),
            )
        )
    return descriptions


def segment_masks(label_array_zyx: np.ndarray) -> np.ndarray:
    """(slices, rows, columns, 2) booleans of a 0/1/2 label array: whole head, necrosis."""
    head = label_array_zyx > 0
    return np.stack([head, label_array_zyx == NECROSIS], axis=-1)


def make_dicom_seg(label_image: sitk.Image, sources: list, model: dict):
    """A highdicom ``Segmentation`` of ``label_image`` over the source instances.

    Args:
        label_image: 0/1/2 labels on the input image's grid.
        sources: the source instances' headers, item ``k`` being slice ``k`` of the grid
            (``onfh.dicom_source.source_datasets``).
        model: ``{"id", "version", "sha256"}`` of the model that segmented it.
    """
    import highdicom as hd

    from onfh import __version__

    array = sitk.GetArrayViewFromImage(label_image)
    if array.shape[0] != len(sources):
        raise ValueError(f"label image has {array.shape[0]} slices but {len(sources)} source instances")
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segment_masks(array),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(model),
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=str(model["id"])[:64],
        software_versions=f"onfh {__version__}",
        device_serial_number=str(model["sha256"])[:16],
        # highdicom keeps all frames of an empty result anyway, with a warning on the console.
        omit_empty_frames=bool(array.any()),
        content_label="ONFH_SEG",
        content_description="Femoral head and necrosis (onfh)",
        series_description="Femoral head and necrosis segmentation (onfh)",
    )


def write_dicom_seg(label_image: sitk.Image, sources: list, model: dict, path: str | os.PathLike):
    """Write the SEG of ``label_image`` to ``path`` atomically; return the dataset (the SR refers to it)."""
    from onfh.imageio import write_atomic

    seg = make_dicom_seg(label_image, sources, model)
    write_atomic(Path(path), lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    return seg


def read_dicom_seg(path: str | os.PathLike):
    """Read a DICOM SEG into an ``onfh.segfile.Segmentation`` on the SEG's own grid.

    Raises:
        OnfhError: one line naming the file: not DICOM, damaged or truncated, another kind
            of DICOM object, frames that are no 3D grid, or no femoral head segment.
    """
    import highdicom as hd
    import pydicom

    from onfh.segfile import Segmentation, label_image_of

    p = Path(path)
    try:
        dataset = pydicom.dcmread(p)
    except Exception as error:  # pydicom raises many types for damaged files
        raise OnfhError(f"{p}: not a readable DICOM file ({short_error(error)})") from None
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class != SEGMENTATION_STORAGE:
        name = getattr(dataset.get("SOPClassUID"), "name", "") or "unknown SOP class"
        raise OnfhError(
            f"{p}: is a DICOM {name} ({sop_class or 'no SOP Class UID'}), not a DICOM Segmentation"
        )
    _require_complete_pixel_data(dataset, p)
    try:
        seg = hd.seg.Segmentation.from_dataset(dataset, copy=False)
        kinds = _segment_kinds(seg)
    except Exception as error:
        raise OnfhError(f"{p}: damaged DICOM Segmentation ({short_error(error)})") from None
    if not kinds["femoral_head"]:
        found = ", ".join(repr(n) for n in kinds["necrosis_names"] + kinds["other"]) or "none"
        raise OnfhError(f"{p}: no femoral head segment (segments found: {found})")
    numbers = kinds["femoral_head"] + kinds["necrosis"]
    # A FRACTIONAL SEG (another tool's) counts where a voxel is more than half inside.
    half = int(dataset.get("MaximumFractionalValue", 1)) / 2
    try:
        volume = seg.get_volume(
            segment_numbers=numbers, combine_segments=False, dtype=np.uint8, rescale_fractional=False
        )
        masks = np.asarray(volume.array) > half
    except Exception as error:
        raise OnfhError(
            f"{p}: its frames do not form a 3D image grid or are damaged ({short_error(error)})"
        ) from None
    head = masks[..., : len(kinds["femoral_head"])].any(axis=-1)
    necrosis = masks[..., len(kinds["femoral_head"]) :].any(axis=-1)
    head |= necrosis
    geometry = volume_image(np.zeros(head.shape, np.uint8), volume.affine)
    names = {
        "femoral_head": kinds["head_names"],
        "necrosis": kinds["necrosis_names"],
        "other": kinds["other"],
    }
    return Segmentation(head, necrosis, label_image_of(head, necrosis, geometry), "DICOM SEG", names)


def _require_complete_pixel_data(dataset, path: Path) -> None:
    """Refuse a SEG whose (uncompressed) pixel data end before the size its header gives.

    pydicom reads a cut file without complaint; the frames would fail later with a reshape
    error that says nothing about a truncated copy.
    """
    if "PixelData" not in dataset:
        raise OnfhError(f"{path}: DICOM Segmentation without pixel data")
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        return
    bits = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("NumberOfFrames", 1))
    expected_bytes = (bits * int(dataset.BitsAllocated) + 7) // 8
    actual_bytes = len(dataset.PixelData)
    if actual_bytes < expected_bytes:
        raise OnfhError(
            f"{path}: file is truncated or damaged (its pixel data hold {actual_bytes:,} of the "
            f"{expected_bytes:,} bytes its header gives); copy it again"
        )


def _segment_kinds(seg) -> dict[str, list]:
    """Segment numbers and labels of the femoral head and necrosis segments: type code first, then label."""
    kinds: dict[str, list] = {
        "femoral_head": [],
        "necrosis": [],
        "head_names": [],
        "necrosis_names": [],
        "other": [],
    }
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        code = description.segmented_property_type
        label = str(description.segment_label)
        kind = classify_type_code(code.scheme_designator, code.value) or classify_segment_name(label)
        if kind is None:
            kinds["other"].append(label)
            continue
        kinds[kind].append(number)
        kinds["head_names" if kind == "femoral_head" else "necrosis_names"].append(label)
    return kinds
