"""PNG previews: mid-coronal and mid-sagittal slices through the femoral head with contours.

Slices are cut in the patient's physical frame, not the voxel grid: the image is resampled
onto an axis-aligned (LPS) plane through the head centre, so "coronal" is coronal whatever
the scan's direction matrix (axial, coronal or oblique acquisition). Display follows the
radiological convention: patient's right on the viewer's left, anterior on the left of the
sagittal view, superior up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HALF_WIDTH_MM = 65.0
TRUTH_STYLE = {"head": ("#ffd400", "solid"), "necrosis": ("#ff2a2a", "solid")}
PREDICTION_STYLE = {"head": ("#00e5ff", "dashed"), "necrosis": ("#ff66ff", "dashed")}


@dataclass(frozen=True)
class PreviewSlices:
    """Resampled 2D physical slices; row 0 is the inferior end (draw with ``origin="lower"``)."""

    coronal: np.ndarray
    sagittal: np.ndarray
    coronal_labels: np.ndarray
    sagittal_labels: np.ndarray
    coronal_prediction: np.ndarray | None
    sagittal_prediction: np.ndarray | None
    centre_mm: np.ndarray
    pixel_mm: float


def head_centre_mm(label: sitk.Image) -> np.ndarray:
    """World (LPS) centroid of the femoral head holding most necrosis (or the largest head).

    Raises:
        ValueError: the label map has no femoral head voxel.
    """
    array = sitk.GetArrayViewFromImage(label)
    head = array > 0
    if not head.any():
        raise ValueError("label map has no femoral head voxels (values 1 or 2)")
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.Cast(label > 0, sitk.sitkUInt8)))
    count = int(components.max())
    if count > 1:
        necrosis = np.bincount(components[array == 2], minlength=count + 1)[1:]
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        best = 1 + int(np.lexsort((sizes, necrosis))[-1])
        head = components == best
    zyx = np.argwhere(head).mean(axis=0)
    return np.asarray(label.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1])))


def _plane(centre: np.ndarray, pixel_mm: float, axis_columns: int) -> sitk.Image:
    """An axis-aligned one-voxel-thick reference slab through ``centre``.

    ``axis_columns`` is the world axis along the slice's columns (0 = x for coronal,
    1 = y for sagittal); rows run along z.
    """
    n = round(2 * HALF_WIDTH_MM / pixel_mm) + 1
    size = [1, 1, n]
    size[axis_columns] = n
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing((pixel_mm, pixel_mm, pixel_mm))
    origin = centre.astype(float).copy()
    origin[axis_columns] -= HALF_WIDTH_MM
    origin[2] -= HALF_WIDTH_MM
    reference.SetOrigin(tuple(origin))
    reference.SetDirection((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return reference


def _cut(image: sitk.Image, reference: sitk.Image, nearest: bool, axis_columns: int) -> np.ndarray:
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    resampled = sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())
    array = sitk.GetArrayFromImage(resampled)  # (z, y, x)
    return array[:, 0, :] if axis_columns == 0 else array[:, :, 0]


def preview_slices(
    image: sitk.Image, label: sitk.Image, prediction: sitk.Image | None = None
) -> PreviewSlices:
    """Mid-coronal and mid-sagittal physical slices through the femoral head centre."""
    centre = head_centre_mm(label)
    pixel = float(min(image.GetSpacing()))
    slices = {}
    for name, axis in (("coronal", 0), ("sagittal", 1)):
        reference = _plane(centre, pixel, axis)
        slices[name] = _cut(sitk.Cast(image, sitk.sitkFloat32), reference, False, axis)
        slices[f"{name}_labels"] = _cut(label, reference, True, axis)
        slices[f"{name}_prediction"] = (
            _cut(prediction, reference, True, axis) if prediction is not None else None
        )
    return PreviewSlices(centre_mm=centre, pixel_mm=pixel, **slices)


def write_preview(
    image: sitk.Image,
    label: sitk.Image,
    path: str | os.PathLike,
    title: str = "",
    prediction: sitk.Image | None = None,
) -> Path:
    """Write a PNG of the mid-coronal and mid-sagittal slices, plain and with label contours.

    Args:
        image: the MRI.
        label: truth label map (1 femoral head, 2 necrosis) on any grid overlapping the image.
        path: the PNG to write (its folder is created).
        title: shown above the panels.
        prediction: optional predicted label map, drawn dashed in other colours.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    cuts = preview_slices(image, label, prediction)
    figure = Figure(figsize=(9.0, 9.6), dpi=100, facecolor="black")
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.06, top=0.9, wspace=0.04, hspace=0.1)
    panels = (
        ("coronal", cuts.coronal, cuts.coronal_labels, cuts.coronal_prediction, ("R", "L")),
        ("sagittal", cuts.sagittal, cuts.sagittal_labels, cuts.sagittal_prediction, ("A", "P")),
    )
    window = np.concatenate([cuts.coronal.ravel(), cuts.sagittal.ravel()])
    low, high = np.percentile(window, [0.5, 99.5]) if window.size else (0.0, 1.0)
    extent = (-HALF_WIDTH_MM, HALF_WIDTH_MM, -HALF_WIDTH_MM, HALF_WIDTH_MM)
    # Top row: the image alone (the thin reactive band is easy to hide under a contour);
    # bottom row: the same slices with the contours.
    for column, (name, pixels, labels, predicted, sides) in enumerate(panels):
        for row in range(2):
            axes = figure.add_subplot(2, 2, 2 * row + column + 1)
            axes.imshow(
                pixels, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), origin="lower", extent=extent
            )
            if row:
                _contours(axes, labels, extent, TRUTH_STYLE)
                if predicted is not None:
                    _contours(axes, predicted, extent, PREDICTION_STYLE)
            axes.set_title(f"mid-{name}" + (" with contours" if row else ""), color="white", fontsize=10)
            axes.set_axis_off()
            for x, text in ((0.03, sides[0]), (0.97, sides[1])):
                axes.text(x, 0.5, text, color="white", transform=axes.transAxes, ha="center", va="center")
            axes.text(0.5, 0.97, "S", color="white", transform=axes.transAxes, ha="center", va="top")
    handles = [Line2D([], [], color=c, linestyle=s, label=f"truth {k}") for k, (c, s) in TRUTH_STYLE.items()]
    if prediction is not None:
        handles += [
            Line2D([], [], color=c, linestyle=s, label=f"prediction {k}")
            for k, (c, s) in PREDICTION_STYLE.items()
        ]
    figure.legend(
        handles=handles, loc="lower center", ncol=len(handles), frameon=False, labelcolor="white", fontsize=8
    )
    if title:
        figure.suptitle(title, color="white", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    figure.savefig(tmp, facecolor="black")
    os.replace(tmp, path)
    return path


def _contours(axes, labels: np.ndarray, extent, style: dict) -> None:
    """Head (labels 1 and 2) and necrosis (label 2) outlines."""
    masks = {"head": labels > 0, "necrosis": labels == 2}
    n_rows, n_cols = labels.shape
    xs = np.linspace(extent[0], extent[1], n_cols)
    ys = np.linspace(extent[2], extent[3], n_rows)
    for key, mask in masks.items():
        if mask.any() and not mask.all():
            colour, line = style[key]
            axes.contour(
                xs,
                ys,
                mask.astype(np.float32),
                levels=[0.5],
                colors=[colour],
                linestyles=[line],
                linewidths=1.0,
            )
