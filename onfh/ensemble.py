"""Ensemble members for the ratio interval: test-time augmentations and fold models.

After the two-stage inference has settled each head's crop, every member segments that
crop again with a small change the network was trained to ignore: a left-right flip (the
training's only flip; others would show it anatomy it never saw) and shifts of the crop
centre by a non-integer number of voxels (the localiser is never exact). Where the model
folder holds cross-validation fold models (``crossval/fold_<k>/``, as ``onfh train``
leaves them), the members cycle through the final model and the folds, so model
variance enters too. Each member's ratio is counted on its crop grid; their spread gives
``onfh.ratio_interval``.

The members use ``onfh.inference``'s own crop, network call and crop post-processing, so
a change of runtime backend there changes them too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

from onfh.modelfolder import MODEL_JSON, MODEL_WEIGHTS, ONNX_FILES
from onfh.ratio_interval import LEVEL, ratio_interval
from onfh.training.folds import CROSSVAL_DIR

SHIFT_MM = 2.0  # 1.6 voxels at the usual 1.25 mm: resampling changes, not only indices


@dataclass(frozen=True)
class Augmentation:
    """One member's change to the crop: a centre shift (LPS mm) and a left-right flip."""

    shift_mm: tuple[float, float, float]
    flip_left_right: bool


def _shift(axis: int, sign: float) -> tuple[float, float, float]:
    vector = [0.0, 0.0, 0.0]
    vector[axis] = sign * SHIFT_MM
    return (vector[0], vector[1], vector[2])


# The unchanged crop, its mirror, and each axis shifted both ways, flips crossed with shifts
# so that each axis sees one flipped and one plain member: 8 segmenter passes per head.
AUGMENTATIONS = (
    Augmentation((0.0, 0.0, 0.0), False),
    Augmentation((0.0, 0.0, 0.0), True),
    *(
        Augmentation(_shift(axis, sign), flip)
        for axis in range(3)
        for sign, flip in ((1.0, False), (-1.0, True))
    ),
)


def find_fold_folders(model_dir: str | Path) -> list[Path]:
    """Fold model folders under ``model_dir/crossval/`` that hold weights, in fold order.

    Weights are ``model.pt`` or the ONNX segmenter: a folder exported with
    ``onfh export --drop-torch-weights`` ships only the latter, and its folds still count.
    """
    root = Path(model_dir) / CROSSVAL_DIR
    if not root.is_dir():
        return []
    folders = [
        p
        for p in root.glob("fold_*")
        if (p / MODEL_JSON).is_file()
        and ((p / MODEL_WEIGHTS).is_file() or (p / ONNX_FILES["segmenter"]).is_file())
    ]
    return sorted(folders, key=lambda p: (len(p.name), p.name))


def crop_counts(probabilities: np.ndarray) -> tuple[int, int]:
    """Head (labels 1-2) and necrosis voxels of a crop's arg-max, largest head component only."""
    from onfh.inference import _crop_label

    label = _crop_label(probabilities)
    return int(np.count_nonzero(label)), int(np.count_nonzero(label == 2))


class Ensemble:
    """Segmenter networks (final model first, then folds) and the augmentations they run.

    Args:
        networks: segmenter networks, called through ``predict``.
        config: the final model's ``model.json`` (crop size, spacing, normalisation,
            ``uncertainty.sd_scale``).
        device: where the networks live.
        predict: ``predict(network, array [1, z, y, x], device) -> probabilities [C, z, y, x]``.
        augmentations: what each member changes.
    """

    def __init__(
        self,
        networks: list,
        config: dict[str, Any],
        device: Any = "cpu",
        predict: Callable | None = None,
        augmentations=AUGMENTATIONS,
    ) -> None:
        from onfh.inference import run_network

        if not networks:
            raise ValueError("an ensemble needs at least one network")
        self.networks = list(networks)
        self.config = config
        self.device = device
        self.predict = predict or run_network
        self.augmentations = tuple(augmentations)

    @property
    def sd_scale(self) -> float:
        """Calibration factor from ``model.json`` (``uncertainty.sd_scale``), 1 if absent."""
        return float((self.config.get("uncertainty") or {}).get("sd_scale", 1.0))

    def member_counts(self, image: sitk.Image, centre_mm) -> list[tuple[int, int]]:
        """``(head voxels, necrosis voxels)`` of each member on the crop around ``centre_mm``."""
        from onfh.preprocessing import segmenter_crop

        counts = []
        for number, augmentation in enumerate(self.augmentations):
            network = self.networks[number % len(self.networks)]
            centre = np.asarray(centre_mm, dtype=float) + np.asarray(augmentation.shift_mm)
            crop, _ = segmenter_crop(image, centre, self.config)
            if augmentation.flip_left_right:
                crop = np.ascontiguousarray(crop[..., ::-1])  # x is the last axis of [1, z, y, x]
            counts.append(crop_counts(self.predict(network, crop, self.device)))
        return counts

    def measure(self, image: sitk.Image, heads: list, ratio: float | None) -> dict[str, Any]:
        """Report fields for one image: the interval and grade probabilities of ``ratio``
        (all heads together, as the top-level grade) and of each head (``per_head``).

        Args:
            image: the input MRI.
            heads: ``onfh.inference.HeadResult`` of each segmented head.
            ratio: the reported top-level ratio (``None``: nothing to measure).
        """
        start = time.perf_counter()
        per_head = [self.member_counts(image, head.crop_centre_mm) for head in heads]
        out: dict[str, Any] = {"necrosis_ratio_interval": None, "grade_probabilities": None}
        totals = np.sum(np.asarray(per_head, dtype=float), axis=0)  # [members, 2]
        if ratio is not None and np.all(totals[:, 0] > 0):
            interval = ratio_interval(ratio, totals[:, 1] / totals[:, 0], self.sd_scale)
            out.update(interval.to_report())
            out["uncertainty"] = self._details(interval, totals[:, 1] / totals[:, 0])
        out["per_head"] = []
        for head, counts in zip(heads, per_head):
            array = np.asarray(counts, dtype=float)
            if head.head_voxels == 0 or not np.all(array[:, 0] > 0):
                out["per_head"].append(None)
                continue
            head_ratio = head.necrosis_voxels / head.head_voxels
            out["per_head"].append(ratio_interval(head_ratio, array[:, 1] / array[:, 0], self.sd_scale))
        if out.get("uncertainty"):
            out["uncertainty"]["seconds"] = round(time.perf_counter() - start, 3)
        return out

    def _details(self, interval, member_ratios: np.ndarray) -> dict[str, Any]:
        return {
            "method": "test-time augmentation"
            + (f" and {len(self.networks) - 1} fold model(s)" if len(self.networks) > 1 else ""),
            "members": len(self.augmentations),
            "models": len(self.networks),
            "level": LEVEL,
            "member_ratios": [round(float(r), 4) for r in member_ratios],
            "member_sd": round(interval.member_sd, 5),
            "sd_scale": self.sd_scale,
            # False: model.json states no factor measured on held-out data, so the members'
            # raw spread is used and the "90 %" interval is known to be too narrow.
            "calibrated": "sd_scale" in (self.config.get("uncertainty") or {}),
            "sd": round(interval.sd, 5),
        }


def load_ensemble(folder, model, device: Any = "cpu") -> Ensemble:
    """The final model's segmenter plus the segmenters of any fold models in its folder.

    Args:
        folder: the final model's :class:`onfh.modelfolder.ModelFolder`.
        model: the loaded final model (``.segmenter``).
        device: where to load the fold models.
    """
    from onfh.modelfolder import load_model, load_model_folder

    networks = [model.segmenter]
    onnx = hasattr(model.segmenter, "probabilities")  # fold models run where the final one runs
    for fold_dir in find_fold_folders(folder.path):
        fold = load_model_folder(fold_dir)
        if fold.config.get("segmenter") != folder.config.get("segmenter"):
            continue  # another crop or network: its ratios would not be comparable
        if onnx and fold.has_onnx:
            from onfh.runtime_onnx import load_onnx_model

            networks.append(load_onnx_model(fold, "cpu").segmenter)
        else:
            networks.append(load_model(fold, device).segmenter)
    return Ensemble(networks, folder.config, device)
