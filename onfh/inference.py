"""Two-stage inference: find the femoral head coarsely, segment a crop finely, map back.

1. Localise: the whole field of view on a coarse axis-aligned grid through the small
   localiser; each head component's centroid is a crop centre (two heads in a bilateral
   scan, the second only if it is about as large as the first).
2. Segment: a crop at the model's spacing around that centre through the segmenter.
   When the head reaches the crop's margin (localisation was off) the crop is re-centred
   on the segmented head once.
3. Map back: class probabilities are linearly interpolated onto the input's own grid
   (only the part the crop covers), then arg-maxed; the largest connected head component
   of each crop is kept, so necrosis exists only inside a head.

The result overlays the input exactly in physical space, whatever its direction matrix.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from onfh.errors import OnfhError
from onfh.head_check import HeadCheck, check_head
from onfh.head_search import (
    MIN_CANDIDATE_VOLUME_MM3,
    candidate_centres,
    contralateral_centres,
    distinct,
    search_lattice,
)
from onfh.preprocessing import localiser_input, mask_centroid_mm, physical_bounds, segmenter_crop

# progress(stage, fraction of this image done in [0, 1])
ProgressCallback = Callable[[str, float], None]

MIN_HEAD_VOLUME_MM3 = 1000.0  # a 12 mm ball: anything smaller is not a femoral head
MIN_FIELD_OF_VIEW_MM = 32.0  # adult femoral heads are 42-50 mm across
RECENTRE_SHIFT_MM = 3.0
SEARCH_STAGE = "search whole image (slower: the localised head failed its check)"
OTHER_HIP_STAGE = "look for the other hip"
MAX_HEADS = 2  # a bilateral scan shows both hips
SECOND_HEAD_FRACTION = 0.4
MIN_HEAD_SEPARATION_MM = 100.0  # adult femoral head centres lie about 150-200 mm apart


@dataclass
class HeadResult:
    """One segmented femoral head (two in a bilateral scan)."""

    centre_mm: tuple[float, float, float]  # localiser's estimate (LPS, mm)
    crop_centre_mm: tuple[float, float, float]  # centre of the crop finally segmented
    head_voxels: int  # labels 1 and 2 on the input grid
    necrosis_voxels: int  # label 2 on the input grid
    check: HeadCheck | None = None  # the sphere check of this head's crop
    side: str | None = None  # "left"/"right" when two heads tell the sides apart


@dataclass
class InferenceResult:
    """A label image on the input grid plus what happened on the way."""

    label: sitk.Image  # uint8, 0/1/2, same geometry as the input
    head_centre_mm: tuple[float, float, float]  # first (largest) head, localiser's estimate
    crop_centre_mm: tuple[float, float, float]  # its crop's centre as finally segmented
    timings_s: dict[str, float] = field(default_factory=dict)
    heads: list[HeadResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a reader must check, grades kept

    @property
    def quality(self) -> dict[str, Any]:
        """The sphere checks of every head: ``passed``, a ``summary`` line and one entry per head,
        plus ``notes`` (a hip the field of view shows but no head was found in) when there are any.

        A failed check means the result is returned with low confidence, never as a plain grade.
        A note does not withhold the grades of the heads that were found and passed.
        """
        checks = [h.check for h in self.heads if h.check is not None]
        failed = [c for c in checks if not c.passed]
        summary = (
            "passed" if not failed else "low confidence: " + "; ".join(r for c in failed for r in c.reasons)
        )
        if self.notes:
            summary += "; check: " + "; ".join(self.notes)
        quality = {"passed": not failed, "summary": summary, "heads": [c.to_dict() for c in checks]}
        if self.notes:
            quality["notes"] = list(self.notes)
        return quality


def run_network(network: Any, array: np.ndarray, device: Any) -> np.ndarray:
    """Softmax class probabilities ``[C, z, y, x]`` (float32) for one ``[1, z, y, x]`` input.

    An ONNX Runtime network (:mod:`onfh.runtime_onnx`) computes them itself; anything else
    is a torch module, run by :mod:`onfh.runtime_torch` (imported only then).
    """
    if hasattr(network, "probabilities"):
        return network.probabilities(array)
    from onfh.runtime_torch import torch_probabilities

    return torch_probabilities(network, array, device)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean ``[z, y, x]`` mask (empty stays empty)."""
    if not mask.any():
        return mask.copy()
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)))
    relabelled = sitk.RelabelComponent(components, sortByObjectSize=True)
    return sitk.GetArrayViewFromImage(relabelled) == 1


def require_field_of_view(image: sitk.Image, min_extent_mm: float = MIN_FIELD_OF_VIEW_MM) -> None:
    """Refuse images too small, along any axis, to hold a femoral head.

    Raises:
        OnfhError: naming the field of view that arrived.
    """
    lower, upper = physical_bounds(image)
    extent = upper - lower
    if float(extent.min()) < min_extent_mm:
        shown = " x ".join(f"{e:.0f}" for e in extent)
        raise OnfhError(
            f"field of view {shown} mm is too small to hold a femoral head "
            f"(needs at least {min_extent_mm:.0f} mm along every axis)"
        )


def localise_heads(
    probabilities: np.ndarray,
    grid: sitk.Image,
    min_volume_mm3: float = MIN_HEAD_VOLUME_MM3,
    max_heads: int = MAX_HEADS,
) -> list[np.ndarray]:
    """Centroids (x, y, z mm) of the femoral heads in the localiser's output, largest first.

    A further component counts as a head only if it is at least ``SECOND_HEAD_FRACTION``
    of the largest one's volume and at least ``MIN_HEAD_SEPARATION_MM`` from every head
    already found (the contralateral head of a bilateral scan is about the same size and
    on the other side of the pelvis; fragments and false positives are neither).

    Raises:
        OnfhError: no femoral head (or only a fragment smaller than ``min_volume_mm3``).
    """
    mask = np.argmax(probabilities, axis=0) > 0
    voxel_mm3 = float(np.prod(grid.GetSpacing()))
    components = sitk.RelabelComponent(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))), sortByObjectSize=True
    )
    labels = sitk.GetArrayViewFromImage(components)
    sizes = np.bincount(labels.ravel())[1:] if mask.any() else np.zeros(0, dtype=int)
    largest_mm3 = float(sizes[0]) * voxel_mm3 if sizes.size else 0.0
    if largest_mm3 < min_volume_mm3:
        raise OnfhError(
            f"no femoral head found in the field of view (largest candidate {largest_mm3:.0f} mm3); "
            "is this a hip MRI?"
        )
    centres: list[np.ndarray] = []
    for index, size in enumerate(sizes):
        if len(centres) >= max_heads:
            break
        volume_mm3 = float(size) * voxel_mm3
        if volume_mm3 < max(min_volume_mm3, SECOND_HEAD_FRACTION * largest_mm3):
            break
        centre = mask_centroid_mm(labels == index + 1, grid)
        if all(np.linalg.norm(centre - other) >= MIN_HEAD_SEPARATION_MM for other in centres):
            centres.append(centre)
    return centres


def localise_head(
    probabilities: np.ndarray, grid: sitk.Image, min_volume_mm3: float = MIN_HEAD_VOLUME_MM3
) -> np.ndarray:
    """Centroid (x, y, z mm) of the largest head component of the localiser's output."""
    return localise_heads(probabilities, grid, min_volume_mm3, max_heads=1)[0]


def _crop_label(probabilities: np.ndarray) -> np.ndarray:
    """Arg-max of crop probabilities restricted to the largest head component."""
    label = np.argmax(probabilities, axis=0).astype(np.uint8)
    label[~largest_component(label > 0)] = 0
    return label


def _needs_recentre(head: np.ndarray, margin_vox: Sequence[int]) -> bool:
    """Whether the head mask reaches into the crop's outer margin (it may be cut off)."""
    if not head.any():
        return False
    indices = np.argwhere(head)
    low, high = indices.min(axis=0), indices.max(axis=0)
    shape = np.asarray(head.shape)
    margin = np.asarray(margin_vox)
    return bool(np.any(low < margin) or np.any(high >= shape - margin))


def overlap_region(reference: sitk.Image, grid: sitk.Image) -> tuple[list[int], list[int]] | None:
    """Index and size of the part of ``reference`` inside ``grid``'s bounding box (or ``None``)."""
    lower, upper = physical_bounds(grid)
    corners = [
        reference.TransformPhysicalPointToContinuousIndex(np.where(np.asarray(c) == 1, upper, lower).tolist())
        for c in np.ndindex(2, 2, 2)
    ]
    corners_index = np.asarray(corners)
    size = np.asarray(reference.GetSize())
    start = np.clip(np.floor(corners_index.min(axis=0)).astype(int), 0, size)
    stop = np.clip(np.ceil(corners_index.max(axis=0)).astype(int) + 1, 0, size)
    if np.any(stop <= start):
        return None
    return start.tolist(), (stop - start).tolist()


FOREGROUND_SUPPORT = 0.3
"""A voxel can only be arg-maxed to a foreground class k if its interpolated ``p_k`` is at
least 1/3, so at least one of its crop neighbours has ``p_k >= 1/3``: crop voxels below
this (a little under 1/3, for rounding) cannot make any label, and are not mapped back."""


def foreground_box(probabilities: np.ndarray, grid: sitk.Image) -> sitk.Image | None:
    """The part of the crop grid that can yield a foreground label, one voxel wider (or ``None``).

    Returned as an empty image with the crop's geometry over that box, for
    :func:`overlap_region`; on a 64^3 crop around a head it is about a quarter of the crop.
    """
    support = np.max(probabilities[1:], axis=0) >= FOREGROUND_SUPPORT
    if not support.any():
        return None
    indices = np.argwhere(support)
    low = np.maximum(indices.min(axis=0) - 1, 0)[::-1]  # (z, y, x) -> (x, y, z)
    high = np.minimum(indices.max(axis=0) + 1, np.asarray(support.shape) - 1)[::-1]
    box = sitk.Image([int(v) for v in high - low + 1], sitk.sitkUInt8)
    box.SetSpacing(grid.GetSpacing())
    box.SetDirection(grid.GetDirection())
    box.SetOrigin(grid.TransformIndexToPhysicalPoint([int(v) for v in low]))
    return box


def map_back(
    probabilities: np.ndarray, grid: sitk.Image, reference: sitk.Image
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Arg-max label of crop probabilities on the part of ``reference``'s grid they can label.

    Foreground class probabilities are linearly interpolated (0 outside the crop);
    background is one minus their sum, which equals its own linear interpolation. Only
    the reference voxels near crop voxels with some foreground probability are
    resampled (:func:`foreground_box`); every other voxel's arg-max is background.

    Returns:
        ``(slices, label)``: the ``[z, y, x]`` slices of the reference array and the uint8
        label there; ``None`` when no voxel can be foreground.
    """
    box = foreground_box(probabilities, grid)
    region = None if box is None else overlap_region(reference, box)
    if region is None:
        return None
    start, size = region
    sub_grid = sitk.Image(size, sitk.sitkUInt8)
    sub_grid.SetSpacing(reference.GetSpacing())
    sub_grid.SetDirection(reference.GetDirection())
    sub_grid.SetOrigin(reference.TransformIndexToPhysicalPoint([int(i) for i in start]))
    resampled = []
    for channel in probabilities[1:]:
        channel_image = sitk.GetImageFromArray(np.ascontiguousarray(channel, dtype=np.float32))
        channel_image.CopyInformation(grid)
        mapped = sitk.Resample(
            channel_image, sub_grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
        )
        resampled.append(sitk.GetArrayFromImage(mapped))
    stacked = np.stack([1.0 - np.sum(resampled, axis=0), *resampled])
    z, y, x = start[::-1]
    dz, dy, dx = size[::-1]
    slices = (slice(z, z + dz), slice(y, y + dy), slice(x, x + dx))
    return slices, np.argmax(stacked, axis=0).astype(np.uint8)


def probabilities_to_label(probabilities: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Map crop probabilities ``[C, z, y, x]`` on ``grid`` to an arg-max label on ``reference``'s grid.

    :func:`map_back` written into a zero array of the reference's shape.

    Returns:
        uint8 ``[z, y, x]`` array of ``reference``'s shape.
    """
    out = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)
    mapped = map_back(probabilities, grid, reference)
    if mapped is not None:
        slices, label = mapped
        out[slices] = label
    return out


def keep_largest_head(label: np.ndarray) -> np.ndarray:
    """Keep the largest connected head component (labels 1 and 2); zero everything else.

    Necrosis outside that component disappears with it, so necrosis lies inside the head.
    """
    result = label.copy()
    result[~largest_component(label > 0)] = 0
    return result


class Segmenter:
    """A loaded two-stage model with its configuration, ready to segment images.

    Args:
        model: an object with ``.localiser`` and ``.segmenter`` networks: a torch
            ``TwoStageModel`` or an :class:`onfh.runtime_onnx.OnnxModel`.
        config: the model's ``model.json`` content.
        device: torch device the model lives on (unused by the ONNX backend).
    """

    def __init__(self, model: Any, config: dict[str, Any], device: Any = "cpu") -> None:
        self.model = model
        self.config = config
        self.device = device

    def segment(self, image: sitk.Image, progress: Optional[ProgressCallback] = None) -> InferenceResult:
        """Segment the femoral head(s) and necrosis of ``image``; the label shares its grid.

        Each head the localiser finds (two in a bilateral scan) gets its own crop; the
        largest connected component of each crop's result is kept.

        Raises:
            OnfhError: no femoral head in the field of view.
        """
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round(timings.get(name, 0.0) + now - clock, 4)
            clock = now

        localiser = self.config["localiser"]
        report("localise", 0.0)
        require_field_of_view(image, float(localiser.get("min_field_of_view_mm", MIN_FIELD_OF_VIEW_MM)))
        coarse, coarse_grid = localiser_input(image, self.config, cover_field_of_view=True)
        lap("localiser_preprocess_s")
        coarse_probabilities = run_network(self.model.localiser, coarse, self.device)
        lap("localiser_network_s")
        min_volume_mm3 = float(localiser.get("min_head_volume_mm3", MIN_HEAD_VOLUME_MM3))
        max_heads = int(localiser.get("max_heads", MAX_HEADS))
        try:
            centres = localise_heads(
                coarse_probabilities, coarse_grid, min_volume_mm3=min_volume_mm3, max_heads=max_heads
            )
        except OnfhError:
            centres = []  # nothing head-like: the whole-image search below still looks
        alternatives = HeadAlternatives(
            self, image, candidate_centres(coarse_probabilities, coarse_grid, min_volume_mm3), report, lap
        )
        lap("localise_s")

        label_array = np.zeros(image.GetSize()[::-1], dtype=np.uint8)
        heads: list[HeadResult] = []
        for number, head_centre in enumerate(centres or [None]):
            share = 0.1 + 0.8 * number / max(len(centres), 1)
            report("segment", share)
            alternatives.progress_window = (share, share + 0.6 / max(len(centres), 1))
            attempt = alternatives.first_passing(head_centre, [h.crop_centre_mm for h in heads])
            if attempt is not None:
                report("resample", share + 0.6 / max(len(centres), 1))
                self._add_head(attempt, head_centre, image, label_array, heads, lap)
        notes = []
        if len(heads) == 1 and max_heads >= 2:
            notes = self._look_for_other_hip(alternatives, image, label_array, heads, report, lap)
        if not heads:
            raise OnfhError(
                "no femoral head found: neither the localiser nor a search of the whole image "
                "found a head-shaped structure; is this a hip MRI?"
            )
        if len(heads) == 2:
            # LPS: +x points to the patient's left, so the head with the larger x is the left one.
            by_x = sorted(heads, key=lambda h: h.centre_mm[0])
            by_x[0].side, by_x[1].side = "right", "left"
        label = sitk.GetImageFromArray(label_array)
        label.CopyInformation(image)
        report("segment_done", 1.0)
        return InferenceResult(
            label=label,
            head_centre_mm=heads[0].centre_mm,
            crop_centre_mm=heads[0].crop_centre_mm,
            timings_s=timings,
            heads=heads,
            notes=notes,
        )

    @staticmethod
    def _add_head(attempt, head_centre, image, label_array, heads, lap, min_voxels: int = 1) -> bool:
        """Map an attempt's crop back onto ``label_array`` and record its head, unless the
        head has fewer than ``min_voxels`` voxels on the input grid; ``True`` if added."""
        probabilities, crop_grid, crop_centre, check = attempt
        mapped = map_back(probabilities, crop_grid, image)
        # Label is zero outside the mapped box, so its largest component lies inside it.
        head_label = None if mapped is None else keep_largest_head(mapped[1])
        lap("map_back_s")
        if head_label is None or np.count_nonzero(head_label) < max(min_voxels, 1):
            return False
        target = label_array[mapped[0]]
        np.maximum(target, head_label, out=target)
        heads.append(
            HeadResult(
                centre_mm=tuple(float(v) for v in (crop_centre if head_centre is None else head_centre)),
                crop_centre_mm=tuple(float(v) for v in crop_centre),
                head_voxels=int(np.count_nonzero(head_label)),
                necrosis_voxels=int(np.count_nonzero(head_label == 2)),
                check=check,
            )
        )
        return True

    def _look_for_other_hip(self, alternatives, image, label_array, heads, report, lap) -> list[str]:
        """One head found, but the field of view reaches where the other would be: look there.

        A localiser can miss the second head of a bilateral scan without any sign (a
        contrast it never saw). The segmenter looks at the mirror places across the
        pelvis; a head that passes the sphere check, is about as large as the first and
        lies far enough from it is added. Otherwise the result carries a note: the hip
        may be replaced (a prosthesis is no head) or missed, and a reader should look.
        """
        first = heads[0]
        places = contralateral_centres(image, first.crop_centre_mm)
        for number, place in enumerate(places):
            report(OTHER_HIP_STAGE, 0.9 + 0.05 * number / len(places))
            attempt = alternatives.attempt(place, "other-hip look")
            crop_centre, check = attempt[2], attempt[3]
            apart_mm = float(np.linalg.norm(np.asarray(crop_centre) - np.asarray(first.crop_centre_mm)))
            if not check.passed or apart_mm < MIN_HEAD_SEPARATION_MM:
                continue
            min_voxels = int(np.ceil(SECOND_HEAD_FRACTION * first.head_voxels))
            if self._add_head(attempt, None, image, label_array, heads, lap, min_voxels):
                return []
        if not places:
            return []
        return [
            "one femoral head found, but the field of view also shows the other hip: "
            "no head there (replaced, or missed); look at it"
        ]

    def _segment_crop(self, image: sitk.Image, centre_mm: np.ndarray, lap: Callable[[str], None]):
        """Segmenter probabilities on a crop around ``centre_mm``, re-centred once if the head is cut.

        Returns:
            ``(probabilities [C, z, y, x], crop grid, crop centre mm)``.
        """
        section = self.config["segmenter"]
        margin_mm = float(section.get("crop_margin_mm", 0.0))
        margin_vox = [int(np.ceil(margin_mm / s)) for s in section["spacing_mm"]]
        centre = np.asarray(centre_mm, dtype=float)
        for attempt in range(2):
            crop, crop_grid = segmenter_crop(image, centre, self.config)
            lap("segmenter_preprocess_s")
            probabilities = run_network(self.model.segmenter, crop, self.device)
            lap("segmenter_network_s")
            if attempt == 1:
                break
            crop_head = _crop_label(probabilities) > 0
            if not _needs_recentre(crop_head, margin_vox):
                break
            new_centre = mask_centroid_mm(crop_head, crop_grid)
            lap("segmenter_postprocess_s")
            if np.linalg.norm(new_centre - centre) < RECENTRE_SHIFT_MM:
                break
            centre = new_centre
        return probabilities, crop_grid, centre


def _closeness(check) -> tuple[int, float]:
    """Sort key of a failed check: fewer failed criteria first, then more surface on a sphere."""
    return (len(check.reasons), -(check.surface_fraction or 0.0))


class HeadAlternatives:
    """Segments a crop and checks it; on failure tries other centres until one passes.

    Order: the given centre; the localiser's other candidates; a whole-image search with
    the segmenter (slow: it says so in its progress). Centres near a head already found
    are skipped, so a bilateral scan's second hip is not segmented twice.
    """

    def __init__(self, segmenter: Segmenter, image: sitk.Image, candidates, report, lap) -> None:
        self.segmenter = segmenter
        self.image = image
        self.candidates = list(candidates)
        self.report = report
        self.lap = lap
        # The search reports inside this head's share of the image's progress, so the
        # fraction a caller sees never goes back.
        self.progress_window = (0.0, 1.0)
        self._searched: list[np.ndarray] | None = None

    def attempt(self, centre_mm: np.ndarray, source: str):
        """Segment around ``centre_mm`` and check the head: ``(probabilities, grid, centre, check)``."""
        probabilities, crop_grid, crop_centre = self.segmenter._segment_crop(self.image, centre_mm, self.lap)
        check = check_head(_crop_label(probabilities), crop_grid.GetSpacing()[::-1])
        check.source = source
        self.lap("head_check_s")
        return probabilities, crop_grid, crop_centre, check

    def first_passing(self, centre_mm: np.ndarray | None, found: list) -> tuple | None:
        """The first attempt whose head passes the check, else the attempt closest to passing
        (fewest failed checks, then most surface on a sphere), flagged; ``None`` without any."""
        taken = [np.asarray(c, dtype=float) for c in found]
        best = None
        for centre, source in self._centres(centre_mm, taken):
            tried = self.attempt(centre, source)
            if tried[3].passed:
                return tried
            if best is None or _closeness(tried[3]) < _closeness(best[3]):
                best = tried
            taken.append(centre)
        return best

    def _centres(self, centre_mm: np.ndarray | None, taken: list[np.ndarray]):
        """``(centre, source)`` in the order to try, skipping centres near one in ``taken``
        (which the caller extends as it goes); the whole-image search runs only if reached."""
        if centre_mm is not None:
            yield np.asarray(centre_mm, dtype=float), "localiser"
        for number, candidate in enumerate(distinct(self.candidates, taken), start=2):
            yield candidate, f"localiser candidate {number}"
        for candidate in distinct(self._search(), taken):
            yield candidate, "whole-image search"

    def _search(self) -> list[np.ndarray]:
        """Head centres found by the segmenter on crops tiling the whole image (computed once)."""
        if self._searched is not None:
            return self._searched
        section = self.segmenter.config["segmenter"]
        extent_mm = np.asarray(section["spacing_mm"], dtype=float) * np.asarray(section["patch_size"])
        lattice = search_lattice(self.image, extent_mm)
        found: list[tuple[int, np.ndarray]] = []
        low, high = self.progress_window
        for number, centre in enumerate(lattice):
            self.report(SEARCH_STAGE, low + (high - low) * number / len(lattice))
            crop, crop_grid = segmenter_crop(self.image, centre, self.segmenter.config)
            probabilities = run_network(self.segmenter.model.segmenter, crop, self.segmenter.device)
            head = _crop_label(probabilities) > 0
            voxel_mm3 = float(np.prod(crop_grid.GetSpacing()))
            if np.count_nonzero(head) * voxel_mm3 >= MIN_CANDIDATE_VOLUME_MM3:
                found.append((int(np.count_nonzero(head)), mask_centroid_mm(head, crop_grid)))
        self.lap("search_s")
        found.sort(key=lambda item: -item[0])
        self._searched = distinct([centre for _, centre in found], [])
        return self._searched
