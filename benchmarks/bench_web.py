"""``onfh web`` in headless chromium: Segment-to-first-grade and stroke-to-updated-grade latency.

Starts the real server on a free loopback port, opens the page in Debian's chromium
(Playwright, nothing downloaded), loads the sample hip, clicks Segment and times the
first grade; then paints ``--strokes`` short necrosis strokes inside the femoral head
with real mouse events and times, in the browser's own clock, from the ``mouseup`` to
the moment the grade panel's text changes (a MutationObserver). Goals (issue 13):
first grade under 10 s, median stroke-to-grade under 250 ms.

    python benchmarks/bench_web.py [--strokes 20] [--no-3d]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402
from web_driver import (  # noqa: E402
    browser_page,
    slice_view_box,
    text,
    wait_for_text,
    wait_until_quiet,
    web_server,
)

WATCH = """() => {
  window.__onfh = {up: [], change: []};
  document.addEventListener('mouseup', () => window.__onfh.up.push(performance.now()), true);
  const target = document.getElementById('onfh-grade-serial');
  new MutationObserver(() => window.__onfh.change.push(performance.now()))
    .observe(target, {childList: true, characterData: true, subtree: true});
}"""


def one_stroke(page, box, index: int) -> float:
    """Paint one short stroke at a hand's pace (each a little lower than the last); mouseup-to-grade in ms."""
    wait_until_quiet(page)
    page.evaluate("() => { window.__onfh.up = []; window.__onfh.change = []; }")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] * (0.5 + 0.004 * (index % 20 - 10))
    page.mouse.move(cx - 0.03 * box["width"], cy)
    page.mouse.down()
    for step in range(1, 9):  # about 0.25 s of dragging, as a hand paints
        page.mouse.move(cx + (-0.03 + 0.0075 * step) * box["width"], cy)
        time.sleep(0.03)
    page.mouse.up()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        marks = page.evaluate("() => window.__onfh")
        later = [t for t in marks["change"] if marks["up"] and t > marks["up"][-1]]
        if later:
            return later[0] - marks["up"][-1]
        time.sleep(0.02)
    raise TimeoutError("the grade did not change after the stroke")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument(
        "--no-3d",
        action="store_true",
        help="turn the 3D surfaces off first (Segment Editor > Rendering > Toggle 3D)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "data").mkdir()
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        with web_server(folder / "data", cache, folder / "server.log") as url, browser_page(url) as (page, _):
            wait_for_text(page, "onfh-volume", lambda s: s.startswith("SyntheticONFHHip"), 300)
            start = time.perf_counter()
            page.click("#onfh-segment")
            wait_for_text(page, "onfh-ratio", lambda s: s.endswith("%"), 300)
            first_grade_s = time.perf_counter() - start
            if args.no_3d:
                page.get_by_text("Rendering", exact=True).click()
                page.locator(".v-navigation-drawer--left .mdi-video-3d").first.click()
            page.locator("button:has(i.mdi-brush)").first.click()
            page.wait_for_timeout(500)
            page.evaluate(WATCH)
            box = slice_view_box(page)
            latencies = [one_stroke(page, box, i) for i in range(args.strokes)]
            ratio = text(page, "onfh-ratio")
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs")
    print(f"3D surfaces: {'off' if args.no_3d else 'on'}")
    print(f"Segment click to first grade in the page: {first_grade_s:.2f} s (goal < 10 s)")
    median = statistics.median(latencies)
    print(
        f"stroke (mouseup) to updated grade, {len(latencies)} strokes: median {median:.0f} ms, "
        f"min {min(latencies):.0f} ms, max {max(latencies):.0f} ms (goal < 250 ms); final ratio {ratio}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
