"""The surgeon's loop in a real browser: ``onfh web`` served on loopback, driven in headless chromium.

Marked ``browser`` (about a minute): the default suite skips it, ``.ci/run`` runs it.
Real everything: the server process, the child ``onfh segment``, the trame-slicer Segment
Editor, mouse events on the rendered slice view. The numbers the page shows are checked
against the voxels of the file it saves, which ``onfh grade`` reads back.
"""

from __future__ import annotations

import json
import os
import re

import pytest

pytest.importorskip("trame_slicer", reason="web extra not installed")
pytest.importorskip("playwright", reason="web extra not installed")

from web_driver import (
    browser_page,
    chromium_path,
    percent,
    slice_view_box,
    stroke,
    text,
    wait_for_text,
    wait_until_quiet,
    web_server,
)

from onfh.cli import main
from onfh.segfile import read_segmentation

pytestmark = pytest.mark.browser

if chromium_path() is None:
    if os.environ.get("ONFH_REQUIRE_BROWSER"):
        raise RuntimeError("ONFH_REQUIRE_BROWSER is set but chromium is not installed")
    pytest.skip("chromium not installed (apt-get install -y chromium)", allow_module_level=True)

STROKE = [(-0.03, 0.0), (0.0, 0.005), (0.03, 0.0)]
"""Fractions of the coronal view from its centre, where the app centres the femoral head."""


def _grade_changes(page, action, timeout_s: float = 90.0) -> None:
    serial = text(page, "onfh-grade-serial")
    action()
    wait_for_text(page, "onfh-grade-serial", lambda s: s != serial, timeout_s)
    wait_until_quiet(page)


def _file_counts(path) -> tuple[float, int, float]:
    """Ratio (percent), necrosis voxels and voxel volume (mL) of a saved segmentation."""
    seg = read_segmentation(path)
    head, necrosis = int(seg.head_mask.sum()), int(seg.necrosis_mask.sum())
    x, y, z = seg.spacing_mm
    return 100.0 * necrosis / head, necrosis, x * y * z / 1000.0


def test_load_segment_correct_regrade_undo_save_in_chromium(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.nrrd").write_text("not an image\n")
    shots = os.environ.get("ONFH_SCREENSHOTS")
    log = tmp_path / "server.log"
    with web_server(data, tmp_path / "cache", log) as url, browser_page(url) as (page, requests):
        # Opens with the sample hip.
        wait_for_text(page, "onfh-volume", lambda s: s.startswith("SyntheticONFHHip"), 180)

        # Segment, then Cancel: the child is stopped and nothing enters the scene.
        page.click("#onfh-segment")
        page.click("#onfh-cancel")
        wait_for_text(page, "onfh-status", lambda s: s.startswith("Cancelled"))
        assert text(page, "onfh-grade") == "-"

        # Segment for real: the grade appears.
        page.click("#onfh-segment")
        before = percent(wait_for_text(page, "onfh-ratio", lambda s: s.endswith("%"), 180))
        assert re.fullmatch(r"\d+° \(grade [1-4], \w+ risk\)", text(page, "onfh-kerboul"))
        grade_before = text(page, "onfh-grade")
        assert grade_before in ("Grade A", "Grade B", "Grade C")
        if shots:
            page.wait_for_timeout(1500)
            page.screenshot(path=os.path.join(shots, "web-before-correction.png"))

        # One Paint stroke of necrosis inside the head, with real mouse events.
        page.locator("button:has(i.mdi-brush)").first.click()
        page.wait_for_timeout(500)
        _grade_changes(page, lambda: stroke(page, slice_view_box(page), STROKE))
        after = percent(text(page, "onfh-ratio"))
        assert after > before + 0.5, (before, after)
        if shots:
            page.wait_for_timeout(1500)
            page.screenshot(path=os.path.join(shots, "web-after-correction.png"))

        # Save: the file holds exactly what the page showed, and onfh grade agrees.
        page.click("#onfh-save")
        status = wait_for_text(page, "onfh-status", lambda s: s.startswith("Saved"))
        saved = sorted(data.glob("*.seg.nrrd"))
        assert len(saved) == 1, status
        ratio, necrosis, voxel_ml = _file_counts(saved[0])
        assert after == pytest.approx(ratio, abs=0.05)
        assert float(text(page, "onfh-necrosis").split()[0]) == pytest.approx(necrosis * voxel_ml, abs=0.006)
        assert main(["grade", str(saved[0]), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert f"Grade {report['steinberg_grade']}" == text(page, "onfh-grade")
        assert json.loads(saved[0].with_suffix("").with_suffix(".json").read_text())["necrosis_ratio"] == (
            pytest.approx(ratio / 100)
        )
        first_bytes = saved[0].read_bytes()

        # Undo restores the grade; saving again never overwrites the first case.
        _grade_changes(page, lambda: page.locator("button:has(i.mdi-undo)").first.click())
        assert percent(text(page, "onfh-ratio")) == before
        page.click("#onfh-save")
        wait_for_text(page, "onfh-status", lambda s: "already existed" in s)
        second = sorted(set(data.glob("*.seg.nrrd")) - set(saved))
        assert len(second) == 1 and second[0].name.endswith("-2.seg.nrrd")
        assert saved[0].read_bytes() == first_bytes
        assert _file_counts(second[0])[0] == pytest.approx(before, abs=0.05)
        assert len((data / "onfh-reviewed.csv").read_text().splitlines()) == 3

        # Add to training set: a case in the dataset layout under --data.
        page.click("#onfh-train")
        wait_for_text(page, "onfh-status", lambda s: s.startswith("Added case"))
        assert (data / "onfh-training-set" / "dataset.json").is_file()

        # A bad file under --data: the CLI's one-line error, the loaded hip stays.
        page.locator("#onfh-input").click(force=True)
        page.locator(".v-list-item", has_text="broken.nrrd").click()
        page.click("#onfh-load")
        error = wait_for_text(page, "onfh-error", lambda s: "broken.nrrd" in s)
        assert error.startswith("onfh: error:") and "\n" not in error
        assert text(page, "onfh-volume").startswith("SyntheticONFHHip")

        # A bad upload: the same one-line error, and nothing of it is kept.
        bad_upload = tmp_path / "upload.nrrd"
        bad_upload.write_text("not an image either\n")
        page.locator("input[type=file]").set_input_files(str(bad_upload))
        wait_for_text(page, "onfh-error", lambda s: "upload.nrrd" in s and s.startswith("onfh: error:"))
        assert not list((data / "uploads").glob("*"))

        # Loading again starts afresh: no segmentation, no grade, nothing to save.
        page.click("#onfh-load-sample")
        wait_for_text(page, "onfh-status", lambda s: s.startswith("Loaded"))
        assert text(page, "onfh-grade") == "-" and page.locator("#onfh-save").is_disabled()

        # Nothing left this machine.
        assert all(r.startswith((url, "blob:" + url.rstrip("/"), "data:")) for r in requests), requests
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
