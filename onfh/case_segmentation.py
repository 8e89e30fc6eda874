"""One case through the model to its files: read, segment, grade, measure, write.

``onfh segment`` runs :func:`segment_case` for each input of a batch and ``onfh demo`` for
its sample; both load the model with :func:`load_segmenter`. Per case it writes
``<case>.seg.nrrd``, ``<case>.json``, for a DICOM series input ``<case>.seg.dcm`` and
``<case>.sr.dcm``, and optionally ``<case>_label.nii.gz``, all or none: a case that fails
half-way leaves no file behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onfh.errors import OnfhError

BACKENDS = ("onnx", "torch")


def load_segmenter(model_dir: str | None, device_name: str, backend: str = "onnx"):
    """Validate and load the model; return ``(Segmenter, ModelFolder, device description)``.

    The ``onnx`` backend imports neither torch nor MONAI; ``torch`` loads the same weights
    into MONAI's DynUNet.
    """
    from onfh.devices import configure_cpu_threads
    from onfh.inference import Segmenter
    from onfh.modelfolder import default_model_dir, load_model_folder

    folder = load_model_folder(model_dir if model_dir else default_model_dir())
    if backend == "onnx":
        from onfh.runtime_onnx import load_onnx_model

        threads = configure_cpu_threads(use_torch=False)
        model = load_onnx_model(folder, device_name, threads)
        return Segmenter(model, folder.config, "cpu"), folder, model.describe(threads)
    if backend != "torch":
        raise OnfhError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from onfh.devices import describe_device, resolve_device
    from onfh.modelfolder import load_model

    device = resolve_device(device_name)
    configure_cpu_threads()
    model = load_model(folder, device)
    return Segmenter(model, folder.config, device), folder, f"{describe_device(device)}, torch"


def read_input(path: str | Path, series_uid: str | None = None):
    """Read an input MRI as float32; refuse geometry outside the limits and unusable intensities.

    The reader has already refused damaged files and more voxels than ``MAX_VOXELS``;
    voxel size and field of view (``onfh.geometry_limits``) are checked here, before
    any grid is built from them.

    Args:
        path: image file or DICOM series folder.
        series_uid: which DICOM series a folder holding several should give.
    """
    import SimpleITK as sitk

    from onfh.geometry_limits import require_segmentable_geometry
    from onfh.imageio import read_image, require_usable_intensities

    image = read_image(path, series_uid=series_uid if Path(path).is_dir() else None)
    require_segmentable_geometry(image.GetSize(), image.GetSpacing(), path)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    require_usable_intensities(sitk.GetArrayViewFromImage(image), path)
    return image


def output_paths(outdir: Path, case: str, label_map: bool, dicom: bool = False) -> dict[str, Path]:
    """Where the outputs of ``case`` go (``dicom``: the DICOM SEG and SR of a DICOM input)."""
    paths = {"segmentation": outdir / f"{case}.seg.nrrd", "report": outdir / f"{case}.json"}
    if label_map:
        paths["label_map"] = outdir / f"{case}_label.nii.gz"
    if dicom:
        paths["dicom_seg"] = outdir / f"{case}.seg.dcm"
        paths["dicom_sr"] = outdir / f"{case}.sr.dcm"
    return paths


def segment_case(
    input_path: str | Path,
    outdir: Path,
    segmenter,
    folder,
    device_text: str,
    label_map: bool = False,
    progress: Callable[[str, float], None] | None = None,
    image=None,
    case: str | None = None,
    extra: dict[str, Any] | None = None,
    series_uid: str | None = None,
    ensemble=None,
    dicom: bool = True,
) -> dict[str, Any]:
    """Segment one input and write its outputs; return the per-case JSON report.

    Outputs appear only when everything succeeded: each file is written atomically and
    the files of a case that fails half-way are removed.

    Args:
        input_path: the image file or DICOM folder (recorded in the report).
        outdir: output folder.
        segmenter: a loaded :class:`onfh.inference.Segmenter`.
        folder: its :class:`onfh.modelfolder.ModelFolder`.
        device_text: device description for the report.
        label_map: also write ``<case>_label.nii.gz``.
        progress: ``progress(stage, fraction)`` callback.
        image: the image already in memory (else read from ``input_path``).
        case: case name (else derived from ``input_path``).
        extra: further top-level report fields (``onfh demo`` adds the truth).
        series_uid: DICOM series to read when ``input_path`` is a folder holding several.
        ensemble: an :class:`onfh.ensemble.Ensemble` for the ratio interval and grade
            probabilities (``None``: not measured).
        dicom: write the DICOM SEG and SR when ``input_path`` is a DICOM series folder.
    """
    import SimpleITK as sitk

    from onfh.dicom_source import DicomOutputsUnsupported, is_dicom_input, source_datasets
    from onfh.grading import grade_label_map
    from onfh.imageio import case_name, write_image_atomic, write_text_atomic
    from onfh.report import case_report, flag_low_confidence, input_info, kerboul_reports
    from onfh.segfile import write_seg_nrrd

    report = progress or (lambda stage, fraction: None)
    case = case or case_name(input_path)
    start = time.perf_counter()
    report("read", 0.0)
    if image is None:
        image = read_input(input_path, series_uid)
    sources = None
    dicom_skipped = None
    if dicom and is_dicom_input(input_path):
        # Before minutes of inference: a series that does not match its image is refused now;
        # one that no SEG can reference is segmented without the DICOM outputs.
        try:
            sources = source_datasets(input_path, image, series_uid)
        except DicomOutputsUnsupported as why:
            dicom_skipped = str(why)
    read_s = time.perf_counter() - start
    result = segmenter.segment(image, progress=lambda stage, f: report(stage, 0.05 + 0.8 * f))
    label_array = sitk.GetArrayViewFromImage(result.label)
    grade = grade_label_map(label_array, image.GetSpacing())
    interval_start = time.perf_counter()
    uncertainty = {}
    if ensemble is not None:
        report("interval", 0.88)
        uncertainty = ensemble.measure(image, result.heads, grade.ratio)
    interval_s = time.perf_counter() - interval_start
    kerboul_start = time.perf_counter()
    centres = [head.centre_mm for head in result.heads] if len(result.heads) > 1 else []
    kerboul, hip_kerboul = kerboul_reports(result.label, centres)
    kerboul_s = time.perf_counter() - kerboul_start
    hips = hip_reports(result.heads, image.GetSpacing(), hip_kerboul, uncertainty.pop("per_head", None))
    report("write", 0.9)
    write_start = time.perf_counter()
    paths = output_paths(outdir, case, label_map, dicom=sources is not None)
    tags = {"ONFHModelId": folder.id, "ONFHModelSHA256": folder.sha256}
    written: list[Path] = []
    try:
        write_seg_nrrd(result.label, paths["segmentation"], tags)
        written.append(paths["segmentation"])
        if label_map:
            write_image_atomic(result.label, paths["label_map"])
            written.append(paths["label_map"])
        timings = {"read_s": round(read_s, 4), **result.timings_s, "kerboul_s": round(kerboul_s, 4)}
        if ensemble is not None:
            timings["interval_s"] = round(interval_s, 4)
        timings["write_s"] = round(time.perf_counter() - write_start, 4)
        timings["total_s"] = round(time.perf_counter() - start, 4)
        case_json = case_report(
            grade,
            input_info(input_path, image),
            folder.info(),
            case=case,
            device=device_text,
            timings_s=timings,
            head_centre_mm=[round(v, 3) for v in result.head_centre_mm],
            kerboul=kerboul,
            **uncertainty,
            outputs={key: path.name for key, path in paths.items()},
            **({"hips": hips} if hips else {}),
            **({"dicom_outputs_skipped": dicom_skipped} if dicom_skipped else {}),
            **(extra or {}),
        )
        flag_low_confidence(case_json, whole_result_quality(result, image.GetSpacing()))
        if sources is not None:
            written += write_dicom_outputs(result.label, sources, case_json, folder.info(), paths)
            # The SR is made from the report, so the SEG's and SR's time is added to it afterwards.
            case_json["timings_s"]["write_s"] = round(time.perf_counter() - write_start, 4)
            case_json["timings_s"]["total_s"] = round(time.perf_counter() - start, 4)
        write_text_atomic(paths["report"], json.dumps(case_json, indent=2) + "\n")
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    report("done", 1.0)
    return case_json


def write_dicom_outputs(label, sources: list, case_json: dict, model: dict, paths: dict) -> list[Path]:
    """Write ``<case>.seg.dcm`` and ``<case>.sr.dcm`` (atomically); return the paths written.

    The SR is made from the finished JSON report, so both say the same numbers.
    """
    from onfh.dicom_seg import write_dicom_seg
    from onfh.dicom_sr import write_dicom_sr

    written = []
    seg = write_dicom_seg(label, sources, model, paths["dicom_seg"])
    written.append(paths["dicom_seg"])
    try:
        write_dicom_sr(case_json, seg, sources, model, paths["dicom_sr"])
    except BaseException:
        paths["dicom_seg"].unlink(missing_ok=True)
        raise
    written.append(paths["dicom_sr"])
    return written


def whole_result_quality(result, spacing_mm) -> dict[str, Any]:
    """The heads' sphere checks plus the checks across heads (a one-hip scan seen as two)."""
    from onfh.plausibility import head_pair_problems, with_problems

    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    problems = head_pair_problems(
        [head.centre_mm for head in result.heads], [head.head_voxels * voxel_ml for head in result.heads]
    )
    return with_problems(result.quality, problems)


def hip_reports(heads: list, spacing_mm, kerboul=None, intervals=None) -> list[dict[str, Any]] | None:
    """Per-side volumes, ratio, grade (Kerboul angles given ``kerboul``, one per head from
    ``onfh.report.kerboul_reports``; interval and grade probabilities given the ensemble's
    ``intervals``) when a bilateral scan showed two heads, else ``None``.

    The top-level report grades all head voxels together (as ``onfh grade`` does for the
    label file); a surgeon needs each hip on its own.
    """
    from onfh.grading import grade_from_voxel_counts
    from onfh.report import flag_low_confidence

    if len(heads) < 2:
        return None
    hips = []
    for number, head in enumerate(heads):
        hip = {
            "side": head.side,
            "centre_mm": [round(v, 3) for v in head.centre_mm],
            **grade_from_voxel_counts(head.head_voxels, head.necrosis_voxels, spacing_mm).to_dict(),
        }
        if kerboul:
            hip["kerboul"] = kerboul[number]
        if intervals and intervals[number] is not None:
            hip.update(intervals[number].to_report())
        if head.check is not None:
            flag_low_confidence(hip, {"passed": head.check.passed, "summary": head.check.summary()})
        hips.append(hip)
    return hips
