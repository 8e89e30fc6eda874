"""Draw the extension icon and the ONFHSegmentation module icon (128x128 PNG).

Run from the repository root: ``python Resources/Icons/draw_icons.py``. The drawings are
simple vector shapes (matplotlib), so the icons can be regenerated or restyled anywhere.
Colours follow ``onfh.labels`` (femoral head beige, necrosis red).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Arc, Circle, FancyBboxPatch, Polygon

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from onfh.labels import FEMORAL_HEAD, NECROSIS_SEGMENT  # noqa: E402

SIZE_PX = 128
HEAD = FEMORAL_HEAD.color_rgb
NECROSIS = NECROSIS_SEGMENT.color_rgb


def _canvas():
    figure = plt.figure(figsize=(1, 1), dpi=SIZE_PX)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_aspect("equal")
    axes.axis("off")
    return figure, axes


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=SIZE_PX, transparent=True)
    plt.close(figure)


def _cap(centre, radius, start_deg, end_deg, **style) -> Polygon:
    """A circular cap: the arc from ``start_deg`` to ``end_deg`` closed by its chord."""
    angles = np.radians(np.linspace(start_deg, end_deg, 48))
    points = np.c_[centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)]
    return Polygon(points, closed=True, **style)


def draw_extension_icon(path: Path) -> None:
    """A proximal femur under the acetabulum, with a necrotic cap in the weight-bearing zone."""
    figure, axes = _canvas()
    axes.add_patch(
        FancyBboxPatch((0.03, 0.03), 0.94, 0.94, boxstyle="round,pad=0,rounding_size=0.16", color="#1f3a5f")
    )
    centre, radius = (0.44, 0.60), 0.20
    # Neck and shaft: one polygon from the head down-right to the shaft.
    axes.add_patch(
        Polygon(
            [
                (0.36, 0.50),
                (0.50, 0.44),
                (0.66, 0.34),
                (0.68, 0.10),
                (0.82, 0.10),
                (0.82, 0.40),
                (0.56, 0.62),
            ],
            closed=True,
            color=HEAD,
        )
    )
    axes.add_patch(Circle(centre, radius, color=HEAD))
    axes.add_patch(_cap(centre, radius, 35, 145, color=NECROSIS))
    axes.add_patch(
        Arc(centre, 2 * radius + 0.12, 2 * radius + 0.12, theta1=10, theta2=175, color="#cfd8dc", lw=5)
    )
    _save(figure, path)


def draw_segmentation_icon(path: Path) -> None:
    """The femoral head with its two segments outlined, as the module produces them."""
    figure, axes = _canvas()
    centre, radius = (0.5, 0.56), 0.30
    axes.add_patch(Polygon([(0.40, 0.06), (0.60, 0.06), (0.60, 0.30), (0.40, 0.30)], color=HEAD))
    axes.add_patch(Circle(centre, radius, color=HEAD))
    axes.add_patch(_cap(centre, radius, 25, 155, color=NECROSIS))
    outline = {"fill": False, "lw": 3}
    axes.add_patch(Circle(centre, radius + 0.05, color="#2e7d32", linestyle=(0, (3, 1.5)), **outline))
    axes.add_patch(_cap(centre, radius + 0.02, 25, 155, color="#ffd54f", **outline))
    _save(figure, path)


if __name__ == "__main__":
    draw_extension_icon(ROOT / "Resources" / "Icons" / "ONFH.png")
    draw_segmentation_icon(ROOT / "ONFHSegmentation" / "Resources" / "Icons" / "ONFHSegmentation.png")
