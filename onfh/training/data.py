"""Training cases, read and preprocessed once, kept in memory as network-ready arrays.

Each case is passed through the same ``onfh.preprocessing`` functions inference uses:
``localiser_input`` for the coarse grid and ``segmenter_crop`` (enlarged by the room the
augmentation needs) around the true head centre. Labels are moved onto those grids with
``resample_label_like``. A mask of where the grid lies inside the scan's field of view is
kept as well, so an augmented patch can be re-normalised exactly as inference normalises
a crop (voxels outside the scan excluded, then set to the lowest value).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

from onfh.dataset import CaseFiles, tissue_map_path
from onfh.errors import OnfhError
from onfh.imageio import read_image, require_usable_intensities
from onfh.labels import LABEL_NAMES

MAX_LABEL = max(LABEL_NAMES.values())


@dataclass
class HeadRegion:
    """One femoral head's segmenter data; arrays are ``[1, z, y, x]``.

    Attributes:
        image: normalised segmenter crop around the head, enlarged for augmentation.
        label: labels 0/1/2 on the region grid (uint8).
        inside: 1 where the region lies inside the scan (uint8).
        crop_image: the exact inference input at the true head centre (float32).
        crop_label: labels 0/1/2 on the crop grid (uint8); validation compares with it.
        centre_mm: physical (LPS) centroid of the head (labels 1 and 2).
        tissues: tissue label map on the region grid (uint8), when the dataset has one
            (``tissuesTr``): contrast-randomised training renders new images from it.
    """

    image: np.ndarray
    label: np.ndarray
    inside: np.ndarray
    crop_image: np.ndarray
    crop_label: np.ndarray
    centre_mm: np.ndarray
    tissues: np.ndarray | None = None


@dataclass
class PreparedCase:
    """One case on the networks' grids; arrays are ``[1, z, y, x]``.

    Attributes:
        case_id: the dataset's case id.
        localiser_image: normalised localiser input (float32).
        localiser_label: head mask on the localiser grid (uint8 0/1).
        localiser_inside: 1 where the localiser grid lies inside the scan (uint8).
        heads: one region per femoral head (two in a bilateral scan).
        localiser_tissues: tissue label map on the localiser grid (uint8), or ``None``.
    """

    case_id: str
    localiser_image: np.ndarray
    localiser_label: np.ndarray
    localiser_inside: np.ndarray
    heads: list[HeadRegion]
    localiser_tissues: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Memory the cached arrays take."""
        arrays = [self.localiser_image, self.localiser_label, self.localiser_inside, self.localiser_tissues]
        for head in self.heads:
            arrays += [head.image, head.label, head.inside, head.crop_image, head.crop_label, head.tissues]
        return sum(a.nbytes for a in arrays if a is not None)


def region_size(patch_size: int, jitter_voxels: float, rotate_deg: float, scale: float) -> int:
    """Edge of the cached region: room for a typical jittered, rotated, zoomed-out patch.

    A patch rotated by an angle ``a`` about one axis needs ``cos a + sin a`` times its
    edge, zooming out by ``s`` needs ``1 + s``; sized for half the maximum rotation and
    zoom (the rare extreme patch gets a few outside-the-scan corner voxels, which the
    network also meets at the edge of real scans). The result has the parity of
    ``patch_size`` so the patch grid is a sub-grid of the region.
    """
    angle = math.radians(min(max(rotate_deg, 0.0), 90.0) / 2.0)
    room = patch_size * (math.cos(angle) + math.sin(angle)) * (1.0 + max(scale, 0.0) / 2.0)
    size = math.ceil(room + 2.0 * jitter_voxels)
    return size + (size - patch_size) % 2


def read_case(files: CaseFiles) -> tuple[sitk.Image, sitk.Image]:
    """Read a case's image and label and check they belong together.

    Raises:
        OnfhError: unreadable files, unusable intensities, label values outside 0..2, a
            label on another grid than its image, or a label without femoral head.
    """
    image = read_image(files.image_path)
    label = read_image(files.label_path)
    require_usable_intensities(sitk.GetArrayViewFromImage(image), files.image_path)
    if label.GetSize() != image.GetSize():
        raise OnfhError(f"{files.label_path}: label size {label.GetSize()} != image size {image.GetSize()}")
    tolerance = 1e-3 * max(image.GetSpacing())
    if not (
        np.allclose(label.GetSpacing(), image.GetSpacing(), atol=tolerance)
        and np.allclose(label.GetOrigin(), image.GetOrigin(), atol=max(tolerance, 1e-3))
        and np.allclose(label.GetDirection(), image.GetDirection(), atol=1e-4)
    ):
        raise OnfhError(
            f"{files.label_path}: label geometry (origin/spacing/direction) differs from its image"
        )
    values = sitk.GetArrayViewFromImage(label)
    if not np.issubdtype(values.dtype, np.integer) and not np.array_equal(values, np.rint(values)):
        raise OnfhError(f"{files.label_path}: label values must be whole numbers 0, 1, 2")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > MAX_LABEL:
        raise OnfhError(f"{files.label_path}: label values must be 0, 1, 2 (found {low:g}..{high:g})")
    if high == 0:
        raise OnfhError(f"{files.label_path}: label has no femoral head (all voxels are 0)")
    label = sitk.Cast(label, sitk.sitkUInt8)
    label.CopyInformation(image)
    return image, label


def read_tissue_map(files: CaseFiles, label: sitk.Image) -> sitk.Image | None:
    """The case's tissue label map (``tissuesTr``), or ``None`` when the dataset has none.

    Raises:
        OnfhError: the map exists but is not on the label's grid or not a label map.
    """
    path = tissue_map_path(files)
    if not path.is_file():
        return None
    tissues = read_image(path)
    if tissues.GetSize() != label.GetSize() or not np.allclose(
        tissues.GetSpacing(), label.GetSpacing(), atol=1e-3 * max(label.GetSpacing())
    ):
        raise OnfhError(
            f"{path}: tissue map grid {tissues.GetSize()} differs from its label's {label.GetSize()}"
        )
    values = sitk.GetArrayViewFromImage(tissues)
    if not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() > 255:
        raise OnfhError(f"{path}: a tissue map must hold whole numbers 0..255, got {values.dtype}")
    tissues = sitk.Cast(tissues, sitk.sitkUInt8)
    tissues.CopyInformation(label)
    return tissues


def _inside_mask(image: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """1 where ``grid`` voxel centres fall inside ``image``'s field of view, as ``[1, z, y, x]``."""
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    inside = sitk.Resample(ones, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(inside)[np.newaxis]


def _label_on(label: sitk.Image, grid: sitk.Image) -> np.ndarray:
    from onfh.preprocessing import resample_label_like

    return sitk.GetArrayFromImage(resample_label_like(label, grid)).astype(np.uint8)[np.newaxis]


def head_centres_mm(label: sitk.Image, min_fraction: float = 0.2) -> list[np.ndarray]:
    """Physical centroids of the femoral heads in a label image (two in a bilateral scan).

    Heads are connected components of labels 1 and 2; fragments smaller than
    ``min_fraction`` of the largest head are ignored.
    """
    from onfh.preprocessing import mask_centroid_mm

    components = sitk.RelabelComponent(
        sitk.ConnectedComponent(sitk.Cast(label > 0, sitk.sitkUInt8)), sortByObjectSize=True
    )
    array = sitk.GetArrayViewFromImage(components)
    counts = np.bincount(array.ravel())
    centres = []
    for value in range(1, len(counts)):
        if counts[value] >= min_fraction * counts[1]:
            centres.append(mask_centroid_mm(array == value, label))
    return centres


def prepare_case(files: CaseFiles, config: dict[str, Any], region_voxels: int) -> PreparedCase:
    """Read one case and cut its localiser input and, per head, the enlarged segmenter region.

    Args:
        files: the case's image and label paths.
        config: the ``model.json`` configuration being trained.
        region_voxels: edge of the cached segmenter region (see :func:`region_size`).
    """
    from onfh.preprocessing import localiser_input, segmenter_crop

    image, label = read_case(files)
    tissues = read_tissue_map(files, label)
    localiser_image, localiser_grid = localiser_input(image, config)
    localiser_label = (_label_on(label, localiser_grid) > 0).astype(np.uint8)
    enlarged = copy.deepcopy(config)
    enlarged["segmenter"]["patch_size"] = [int(region_voxels)] * 3
    heads = []
    for centre_mm in head_centres_mm(label):
        region_image, region_grid = segmenter_crop(image, centre_mm.tolist(), enlarged)
        crop_image, crop_grid = segmenter_crop(image, centre_mm.tolist(), config)
        heads.append(
            HeadRegion(
                image=np.ascontiguousarray(region_image, dtype=np.float32),
                label=_label_on(label, region_grid),
                inside=_inside_mask(image, region_grid),
                crop_image=np.ascontiguousarray(crop_image, dtype=np.float32),
                crop_label=_label_on(label, crop_grid),
                centre_mm=np.asarray(centre_mm, dtype=float),
                tissues=None if tissues is None else _label_on(tissues, region_grid),
            )
        )
    return PreparedCase(
        case_id=files.case_id,
        localiser_image=np.ascontiguousarray(localiser_image, dtype=np.float32),
        localiser_label=localiser_label,
        localiser_inside=_inside_mask(image, localiser_grid),
        heads=heads,
        localiser_tissues=None if tissues is None else _label_on(tissues, localiser_grid),
    )


def prepare_cases(
    cases: list[CaseFiles],
    config: dict[str, Any],
    region_voxels: int,
    report: Callable[[str], None] | None = None,
    processes: int = 0,
) -> dict[str, PreparedCase]:
    """Prepare every case once (the slow part of start-up); keyed by case id.

    Reading and resampling take one to two seconds a case, so on a GPU machine a cohort of
    a hundred scans would keep the GPU idle for minutes: with ``processes`` > 1 the cases
    are prepared in that many worker processes (each single-threaded), in the same order
    and with the same result as one by one.
    """
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import nullcontext

    parallel = processes > 1 and len(cases) > 1
    pool = ProcessPoolExecutor(min(processes, len(cases)), initializer=_single_threaded) if parallel else None
    prepared = {}
    with pool or nullcontext():
        count = len(cases)
        done = (
            pool.map(prepare_case, cases, [config] * count, [region_voxels] * count)
            if pool
            else (prepare_case(files, config, region_voxels) for files in cases)
        )
        for number, (files, case) in enumerate(zip(cases, done), start=1):
            prepared[files.case_id] = case
            if report is not None:
                report(f"prepared {number}/{count} cases ({files.case_id})")
    return prepared


def _single_threaded() -> None:
    """A preparing process uses one ITK thread: the processes themselves share the cores."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
