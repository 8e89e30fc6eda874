"""PNG figures of an evaluation: Bland-Altman plot of the ratio and the grade confusion matrix.

matplotlib is imported inside the functions with the non-interactive Agg backend, so the
engine loads fast and plots render on headless machines and inside Slicer's Python alike.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from onfh.agreement import bland_altman


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure on an Agg canvas never touches pyplot's global state or a GUI toolkit.
    figure = Figure(figsize=(width_in, height_in), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_atomic(figure, path: str | os.PathLike) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    temporary = target.with_name(f".{target.name}.partial")
    try:
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def bland_altman_png(
    true_ratios: Sequence[float], predicted_ratios: Sequence[float], path: str | os.PathLike
) -> Path:
    """Bland-Altman plot of the necrotic ratio: difference (prediction - truth) vs mean.

    Axes in percentage points; dashed lines at the bias and the 95 % limits of agreement,
    dotted grey lines at the grade cut-offs (15 %, 30 %) on the mean axis.
    """
    truth = np.asarray(true_ratios, dtype=float)
    prediction = np.asarray(predicted_ratios, dtype=float)
    stats = bland_altman(truth, prediction)
    figure = _figure(5.5, 4.2)
    axes = figure.add_subplot()
    mean_pct = 50.0 * (truth + prediction)
    difference_pct = 100.0 * (prediction - truth)
    axes.scatter(mean_pct, difference_pct, s=22, color="#1f5fa8", alpha=0.8, edgecolors="none")
    for cut in (15.0, 30.0):
        axes.axvline(cut, color="0.75", linestyle=":", linewidth=1)
    if stats.n >= 1:
        axes.axhline(100 * stats.bias, color="#b22222", linestyle="--", linewidth=1.2)
        _line_label(axes, 100 * stats.bias, "bias", "#b22222")
        label = f"bias {100 * stats.bias:+.2f}"
        if stats.n >= 2:
            for limit, name in ((stats.lower_limit, "-1.96 SD"), (stats.upper_limit, "+1.96 SD")):
                axes.axhline(100 * limit, color="0.35", linestyle="--", linewidth=1)
                _line_label(axes, 100 * limit, name, "0.35")
            label += f"  limits {100 * stats.lower_limit:+.2f} / {100 * stats.upper_limit:+.2f}"
        axes.set_title(f"Necrotic ratio, n = {stats.n}\n{label} (percentage points)", fontsize=9)
    else:
        axes.set_title("Necrotic ratio: no case with both ratios", fontsize=9)
    axes.axhline(0.0, color="0.6", linewidth=0.8)
    axes.set_xlabel("mean of truth and prediction (%)")
    axes.set_ylabel("prediction - truth (percentage points)")
    return _save_atomic(figure, path)


def _line_label(axes, y: float, text: str, colour: str) -> None:
    """Name a horizontal line at the right edge of the plot."""
    axes.annotate(
        text, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 2), textcoords="offset points",
        ha="right", va="bottom", fontsize=7, color=colour,
    )  # fmt: skip


def confusion_matrix_png(confusion: np.ndarray, categories: Sequence[str], path: str | os.PathLike) -> Path:
    """Heat map of the grade confusion matrix (rows truth, columns prediction) with counts."""
    counts = np.asarray(confusion, dtype=int)
    figure = _figure(3.6, 3.4)
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    threshold = counts.max() / 2.0
    for (row, column), value in np.ndenumerate(counts):
        colour = "white" if value > threshold and value > 0 else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=colour, fontsize=12)
    ticks = range(len(categories))
    axes.set_xticks(ticks, [str(c) for c in categories])
    axes.set_yticks(ticks, [str(c) for c in categories])
    axes.set_xlabel("predicted Steinberg grade")
    axes.set_ylabel("true Steinberg grade")
    matched, total = int(np.trace(counts)), int(counts.sum())
    axes.set_title(f"Grade agreement {matched}/{total}", fontsize=10)
    return _save_atomic(figure, path)
