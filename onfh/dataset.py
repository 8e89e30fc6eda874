"""The training-set layout shared by ``onfh synth``, ``onfh train`` and Slicer's export.

``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz`` and ``dataset.json``, as
nnU-Net and MONAI users know it. Cases are never overwritten: adding a case whose files
exist raises, so corrected labels from Slicer can't silently replace earlier ones.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from onfh.errors import OnfhError
from onfh.imageio import write_image_atomic, write_text_atomic
from onfh.labels import LABEL_NAMES

DATASET_JSON = "dataset.json"
IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"
TISSUES_DIR = "tissuesTr"  # optional anatomy label maps (``onfh synth --tissue-maps``)
CASES_CSV = "cases.csv"  # optional per-case attributes (onfh synth writes one; evaluate --by reads it)
FILE_ENDING = ".nii.gz"
CHANNEL_NAMES = {"0": "SPGR"}
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class CaseFiles:
    """One training case: its id and the image and label paths."""

    case_id: str
    image_path: Path
    label_path: Path


def case_paths(root: str | os.PathLike, case_id: str) -> CaseFiles:
    """Where the files of ``case_id`` live under dataset folder ``root``."""
    if not _CASE_ID.match(case_id):
        raise OnfhError(f"invalid case id {case_id!r}: use letters, digits, '_', '-', '.'")
    root = Path(root)
    return CaseFiles(
        case_id,
        root / IMAGES_DIR / f"{case_id}_0000{FILE_ENDING}",
        root / LABELS_DIR / f"{case_id}{FILE_ENDING}",
    )


def tissue_map_path(files: CaseFiles) -> Path:
    """Where a case's optional tissue label map lives (next to ``labelsTr``, same file name).

    Training draws contrast-randomised images from it when it exists; nothing else reads it.
    """
    return files.label_path.parent.parent / TISSUES_DIR / files.label_path.name


def list_cases(root: str | os.PathLike) -> list[CaseFiles]:
    """The cases of a dataset folder, sorted by id; every label must have its image.

    Raises:
        OnfhError: the folder or ``labelsTr`` is missing, it holds no case, or a label has
            no image.
    """
    root = Path(root)
    labels_dir = root / LABELS_DIR
    if not labels_dir.is_dir():
        raise OnfhError(f"{root}: not a dataset folder (no {LABELS_DIR}/ inside)")
    cases = []
    for label in sorted(labels_dir.glob(f"*{FILE_ENDING}")):
        if label.name.startswith("."):
            continue
        files = case_paths(root, label.name[: -len(FILE_ENDING)])
        if not files.image_path.is_file():
            raise OnfhError(f"{label}: label has no image (expected {files.image_path})")
        cases.append(files)
    if not cases:
        raise OnfhError(f"{labels_dir}: no {FILE_ENDING} label files")
    return cases


def next_case_id(root: str | os.PathLike, prefix: str = "onfh") -> str:
    """The first unused ``<prefix>_NNN`` id in ``root`` (images or labels)."""
    root = Path(root)
    used = {p.name.split("_0000")[0] for p in (root / IMAGES_DIR).glob(f"*{FILE_ENDING}")}
    used |= {p.name[: -len(FILE_ENDING)] for p in (root / LABELS_DIR).glob(f"*{FILE_ENDING}")}
    number = 0
    while f"{prefix}_{number:03d}" in used:
        number += 1
    return f"{prefix}_{number:03d}"


def add_case(
    root: str | os.PathLike, case_id: str, image: sitk.Image, label: sitk.Image, description: str = ""
) -> CaseFiles:
    """Write one case and refresh ``dataset.json``; refuse to overwrite an existing case.

    Raises:
        OnfhError: the case's image or label already exists, or label and image grids differ.
    """
    files = case_paths(root, case_id)
    for existing in (files.image_path, files.label_path):
        if existing.exists():
            raise OnfhError(f"{existing}: case {case_id!r} already exists; not overwriting it")
    if label.GetSize() != image.GetSize():
        raise OnfhError(f"case {case_id}: label size {label.GetSize()} != image size {image.GetSize()}")
    write_image_atomic(image, files.image_path)
    write_image_atomic(sitk.Cast(label, sitk.sitkUInt8), files.label_path)
    write_dataset_json(root, description=description)
    return files


def write_dataset_json(
    root: str | os.PathLike, description: str = "", extra: dict | None = None, name: str | None = None
) -> Path:
    """(Re)write ``dataset.json`` from the cases on disk, keeping an existing description.

    ``name`` defaults to the existing name, else the folder's; a dataset written in a
    staging folder passes its final folder's name, so the temporary name never leaks.

    Holds both the nnU-Net v2 keys (``channel_names``, ``labels``, ``numTraining``,
    ``file_ending``) and a MONAI-style ``training`` list of relative paths.
    """
    root = Path(root)
    path = root / DATASET_JSON
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    cases = list_cases(root)
    content = {
        "name": name or previous.get("name", root.name),
        "description": description or previous.get("description", ""),
        "channel_names": CHANNEL_NAMES,
        "labels": LABEL_NAMES,
        "numTraining": len(cases),
        "file_ending": FILE_ENDING,
        "training": [
            {
                "image": f"{IMAGES_DIR}/{c.image_path.name}",
                "label": f"{LABELS_DIR}/{c.label_path.name}",
            }
            for c in cases
        ],
    }
    for key, value in {**previous, **(extra or {})}.items():
        content.setdefault(key, value)
    write_text_atomic(path, json.dumps(content, indent=2) + "\n")
    return path
