"""What a training run tells its user: a progress bar, a CSV log and a learning-curve PNG.

The CSV is appended row by row (one per logged iteration) so an interrupted run keeps its
history and ``--resume`` continues the same file; the PNG is redrawn from the CSV.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import TextIO

LOG_CSV = "training_log.csv"
CURVE_PNG = "learning_curve.png"
COLUMNS = (
    "iteration",
    "seconds",
    "learning_rate",
    "loss_segmenter",
    "loss_localiser",
    "val_dice_head",
    "val_dice_necrosis",
    "val_localiser_error_mm",
)


class TrainingLog:
    """Append-only CSV of training and validation figures, keyed by iteration.

    Args:
        path: the CSV file; an existing file is continued (rows after ``start_iteration``
            are dropped, since a resumed run recomputes them).
        start_iteration: first iteration this run will log (0 for a fresh run).
    """

    def __init__(self, path: str | os.PathLike, start_iteration: int = 0) -> None:
        self.path = Path(path)
        rows = read_log(self.path) if self.path.is_file() else []
        rows = [r for r in rows if int(r["iteration"]) <= start_iteration]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in COLUMNS})

    def append(self, **values: float | int | None) -> None:
        """Add one row; unknown columns are an error, missing ones stay empty."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown log columns {sorted(unknown)}")
        row = {k: _format(values.get(k)) for k in COLUMNS}
        with open(self.path, "a", newline="", encoding="utf-8") as stream:
            csv.DictWriter(stream, fieldnames=COLUMNS).writerow(row)


def _format(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_log(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a training log CSV as dictionaries of strings."""
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _column(rows: list[dict[str, str]], name: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        if row.get(name):
            xs.append(int(row["iteration"]))
            ys.append(float(row[name]))
    return xs, ys


def plot_learning_curve(log_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "") -> Path:
    """Draw training losses (left) and validation Dice (right) from a training log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    figure, (loss_axes, dice_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label, colour in (("loss_segmenter", "segmenter", "C0"), ("loss_localiser", "localiser", "C3")):
        xs, ys = _column(rows, name)
        if xs:
            loss_axes.plot(xs, ys, lw=0.8, alpha=0.3, color=colour, label=f"{label} (per iteration)")
            loss_axes.plot(
                xs, _moving_average(ys, 25), lw=1.6, color=colour, label=f"{label} (moving average)"
            )
    loss_axes.set(xlabel="iteration", ylabel="Dice + cross-entropy loss", title="training loss")
    loss_axes.grid(alpha=0.3)
    loss_axes.legend(fontsize=8)
    for name, label in (("val_dice_head", "femoral head"), ("val_dice_necrosis", "necrosis")):
        xs, ys = _column(rows, name)
        if xs:
            dice_axes.plot(xs, ys, marker="o", ms=3, label=label)
    dice_axes.set(xlabel="iteration", ylabel="Dice", title="validation", ylim=(0, 1))
    dice_axes.grid(alpha=0.3)
    xs, ys = _column(rows, "val_localiser_error_mm")
    if xs:
        error_axes = dice_axes.twinx()
        finite = [y if math.isfinite(y) else float("nan") for y in ys]
        error_axes.plot(xs, finite, marker="s", ms=3, color="C2", ls="--", label="localiser centre error")
        error_axes.set_ylabel("localiser centre error (mm, median)")
        error_axes.set_ylim(bottom=0)
        error_axes.legend(fontsize=8, loc="upper right")
    if dice_axes.lines:
        dice_axes.legend(fontsize=8, loc="lower right")
    else:
        dice_axes.text(
            0.5, 0.5, "no validation cases", ha="center", va="center", transform=dice_axes.transAxes
        )
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.stem}.partial.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, png_path)
    return png_path


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class ProgressBar:
    """One self-updating line: ``fold 1/4 [#####.....] 120/500 loss 0.41 val Dice 0.88/0.71 eta 5m``.

    Writes carriage-return updates on a terminal and one line per update otherwise (logs
    stay readable); at most every ``min_interval_s`` seconds.
    """

    def __init__(
        self,
        total: int,
        prefix: str = "",
        stream: TextIO | None = None,
        start: int = 0,
        min_interval_s: float = 1.0,
    ) -> None:
        self.total = max(int(total), 1)
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.start = start
        self.started_at = time.monotonic()
        self.min_interval_s = min_interval_s
        self.last_draw = -math.inf
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(
        self, iteration: int, loss: float | None, dice: dict[str, float] | None, force: bool = False
    ) -> None:
        """Redraw for ``iteration`` (1-based count done) with the latest loss and Dice."""
        now = time.monotonic()
        if not force and now - self.last_draw < self.min_interval_s and iteration < self.total:
            return
        self.last_draw = now
        done = min(iteration, self.total)
        filled = int(20 * done / self.total)
        bar = "#" * filled + "." * (20 - filled)
        parts = [f"{self.prefix}[{bar}] {done}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        if dice:
            parts.append("val Dice " + " ".join(f"{k} {v:.3f}" for k, v in dice.items()))
        rate_done = done - self.start
        if rate_done > 0:
            per_iteration = (now - self.started_at) / rate_done
            parts.append(f"{per_iteration:.2f} s/it eta {_duration(per_iteration * (self.total - done))}")
        line = "  ".join(parts)
        if self.is_tty:
            self.stream.write("\r" + line + "\033[K" + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
