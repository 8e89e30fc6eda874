"""Drive ``onfh web`` in Debian's chromium through Playwright: shared by the browser test and the benchmark.

Nothing here downloads a browser: Playwright is pointed at ``/usr/bin/chromium`` (or
``$ONFH_CHROMIUM``) and started with the flags of a locked-down headless run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1600, "height": 900}


def chromium_path() -> str | None:
    """The system chromium, or ``None`` when it is not installed."""
    path = os.environ.get("ONFH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).is_file() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def web_server(data_dir: Path, cache_dir: Path, log_path: Path, timeout_s: float = 180.0):
    """``onfh web`` on a free loopback port; yields its URL, stops it (process group) on exit."""
    port = free_port()
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_dir), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    command = [
        sys.executable,
        "-m",
        "onfh",
        "web",
        "--data",
        str(data_dir),
        "--port",
        str(port),
        "--no-browser",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"onfh web exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"onfh web did not listen within {timeout_s} s")
        yield f"http://127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@contextlib.contextmanager
def browser_page(url: str):
    """A headless chromium page at ``url``; yields ``(page, requests)``: every URL the page asked for."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url)
            yield page, requests
        finally:
            browser.close()


def text(page, element_id: str) -> str:
    return page.locator(f"#{element_id}").inner_text().strip()


def wait_for_text(page, element_id: str, predicate, timeout_s: float = 120.0) -> str:
    """Poll an element's text until ``predicate(text)`` holds; return the text."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = text(page, element_id)
            if predicate(last):
                return last
        time.sleep(0.05)
    raise TimeoutError(f"#{element_id} still reads {last!r} after {timeout_s} s")


def wait_until_quiet(page, quiet_s: float = 0.6, timeout_s: float = 30.0) -> None:
    """Wait until the grade panel has not changed for ``quiet_s`` (a stroke updates it more than once)."""
    deadline = time.monotonic() + timeout_s
    serial, since = text(page, "onfh-grade-serial"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = text(page, "onfh-grade-serial")
        if now != serial:
            serial, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise TimeoutError("the grade kept changing")


def percent(value: str) -> float:
    """``"20.3 %"`` -> 20.3."""
    return float(value.replace("%", "").strip())


def slice_view_box(page) -> dict:
    """Bounding box of the largest RCA view on the page: the coronal slice view of the layout."""
    boxes = [b for b in (el.bounding_box() for el in page.locator("img").all()) if b]
    if not boxes:
        raise RuntimeError("no rendered view found on the page")
    return max(boxes, key=lambda b: b["width"] * b["height"])


def stroke(page, box: dict, offsets: list[tuple[float, float]]) -> None:
    """Press, drag through ``offsets`` (fractions of the view from its centre), release: one stroke."""
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    points = [(cx + dx * box["width"], cy + dy * box["height"]) for dx, dy in offsets]
    page.mouse.move(*points[0])
    time.sleep(0.1)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=4)
        time.sleep(0.02)
    page.mouse.up()
