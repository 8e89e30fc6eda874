"""The ONFH web application: one trame server, one MRML scene, the surgeon's loop.

Wiring only. Loading goes through ``onfh.imageio.read_image`` (the CLI's reader and
errors) and ``onfh.mrml.segmentation_import.add_volume_node``; Segment runs ``onfh
segment`` in a child process (``onfh.subprocess_runner.SegmentJob``, as the Slicer
module does) polled from the event loop, so the page stays responsive and Cancel kills
the process tree; the result enters the scene through ``import_segmentation`` (always a
new node: an earlier, possibly edited, segmentation is never touched); trame-slicer's
Segment Editor edits it; ``LiveGrader`` regrades after every stroke; Save and Add to
training set call ``onfh.mrml.case_save`` and ``onfh.mrml.training_export``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import slicer
from trame.app.file_upload import ClientFile
from trame_server.utils.asynchronous import create_task
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import SegmentEditorLogic
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from onfh.errors import OnfhError
from onfh.imageio import case_name, read_image
from onfh.mrml.case_save import save_case
from onfh.mrml.grade_table import panel_text
from onfh.mrml.grading import LiveGrader, find_grading_segments
from onfh.mrml.segmentation_import import (
    ImportChoice,
    add_volume_node,
    import_segmentation,
    plan_import,
    read_model_info,
    volume_to_image,
)
from onfh.mrml.training_export import export_training_case, plan_case_id
from onfh.sampledata import SAMPLE_NODE_NAME, synthetic_hip
from onfh.subprocess_runner import SegmentJob, quality_warning
from onfh.web.files import list_inputs, resolve_under, sample_cache_dir, upload_path
from onfh.web.ui import build_ui

ENGINE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``onfh`` package: the child process runs ``onfh/__main__.py`` from it."""
TARGET_FPS = 10.0
"""Frame rate of the hovered view while interacting. Each frame is rendered on the event loop
(CPU rendering on a server without GPU costs 30-120 ms a view), and the page sends the next
mouse event only when the previous one was answered, so fewer frames means the end of a
stroke, and its grade, reach the page sooner."""
POLL_INTERVAL_S = 0.2
LAYOUT_ID = "ONFH"
HEAD_DIAMETERS_IN_VIEW = 3.0
"""Slice views are zoomed so their shorter side spans this many femoral head diameters."""
TRAINING_FOLDER = "onfh-training-set"

logger = logging.getLogger(__name__)


def onfh_layout() -> Layout:
    """Coronal slice (where surgeons read the femoral head) beside 3D over axial."""
    return Layout(
        LayoutDirection.Horizontal,
        [
            ViewLayoutDefinition.coronal_view(),
            Layout(
                LayoutDirection.Vertical,
                [ViewLayoutDefinition.threed_view(), ViewLayoutDefinition.axial_view()],
            ),
        ],
    )


class OnfhWebApp:
    """The server side of the page: scene, editor, job, grader and the panel's state."""

    def __init__(self, server, data_dir: str | Path, cache_dir: str | Path | None = None):
        self.server = server
        self.state = server.state
        self.data_dir = Path(data_dir).resolve()
        self.cache_dir = Path(cache_dir) if cache_dir else sample_cache_dir()
        server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        register_rca_factories(
            self.slicer_app.view_manager, server, target_fps=TARGET_FPS, blur_fps=TARGET_FPS / 2
        )
        self.editor_logic = SegmentEditorLogic(server, self.slicer_app)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, server)
        self.layout_manager.register_layout(LAYOUT_ID, onfh_layout())
        self.layout_manager.set_layout(LAYOUT_ID)

        self.volume = None
        self.image_path: Path | None = None
        self.segmentation = None
        self.model: dict | None = None
        self.model_quality: str | None = None
        self.job: SegmentJob | None = None
        self.grader: LiveGrader | None = None
        self._confirming = False
        self.segment_started_s = 0.0

        self.state.update(
            {
                "trame__title": "ONFH",
                "onfh_inputs": list_inputs(self.data_dir),
                "onfh_input": None,
                "onfh_device": "auto",
                "onfh_volume": "",
                "onfh_running": False,
                "onfh_progress": 0,
                "onfh_status": "",
                "onfh_error": "",
                "onfh_quality": "",
                "onfh_has_segmentation": False,
                "onfh_grade_serial": 0,
                "onfh_segment_s": None,
                "onfh_upload": None,
                **{f"onfh_{key}": value for key, value in panel_text(None).items()},
            }
        )
        self.state.change("onfh_upload")(lambda onfh_upload, **_: self.upload(onfh_upload))
        self.ui = build_ui(server, self)
        self.editor_logic.set_ui(self.ui.editor)

    @property
    def scene(self):
        return self.slicer_app.scene

    @property
    def editor(self):
        return self.slicer_app.segmentation_editor

    # --- status -------------------------------------------------------------------------

    def _say(self, text: str, error: bool = False) -> None:
        with self.state:
            self.state.onfh_status = "" if error else text
            self.state.onfh_error = text if error else ""

    # --- load ---------------------------------------------------------------------------

    def start_with(self, relative: str | None) -> None:
        """Open ``relative`` (under ``--data``), else the sample hip, once the server is up."""

        def on_ready(**_):
            create_task(self.load_input(relative) if relative else self.load_sample())

        self.server.controller.on_server_ready.add(on_ready)

    async def load_sample(self) -> None:
        """Generate (first time, a few seconds, off the event loop) and show the synthetic hip."""
        self._say("Generating the synthetic sample hip...")
        try:
            files = await asyncio.to_thread(synthetic_hip, self.cache_dir)
            image = await asyncio.to_thread(read_image, files.image_path)
        except OnfhError as error:
            self._say(f"onfh: error: {error}", error=True)
            return
        self._show(image, files.image_path, SAMPLE_NODE_NAME)

    async def load_input(self, relative: str | None = None) -> bool:
        """Load an image file or DICOM folder picked from the ``--data`` list; False on a bad file."""
        relative = relative if relative is not None else self.state.onfh_input
        try:
            path = resolve_under(self.data_dir, relative or "")
            self._say(f"Reading {relative}...")
            image = await asyncio.to_thread(read_image, path)
        except OnfhError as error:
            self._say(f"onfh: error: {error}", error=True)
            return False
        self._show(image, path, case_name(path))
        return True

    def upload(self, file: dict | None) -> None:
        """Store an image sent from the browser under ``<data>/uploads`` (size-limited), then load it."""
        if isinstance(file, list):
            file = file[0] if file else None
        if not file:
            return
        upload = ClientFile(file)
        try:
            target = upload_path(
                self.data_dir, upload.name or "", max(upload.size or 0, len(upload.content or b""))
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(upload.content or b"")
        except OnfhError as error:
            self._say(f"onfh: error: {error}", error=True)
            return
        except OSError as error:
            self._say(
                f"onfh: error: {upload.name}: could not store the upload ({error.strerror})", error=True
            )
            return
        create_task(self._load_upload(target))

    async def _load_upload(self, target: Path) -> None:
        if not await self.load_input(target.relative_to(self.data_dir).as_posix()):
            target.unlink(missing_ok=True)  # keep nothing the page could not read
        self.refresh_inputs()

    def _show(self, image, path: Path, name: str) -> None:
        self.cancel()
        self._close_grader()
        self.scene.Clear()
        self.volume = add_volume_node(self.scene, image, name)
        self.image_path = path
        self.segmentation = None
        self.slicer_app.display_manager.show_volume_in_slice_background(self.volume)
        self.slicer_app.display_manager.reset_views()
        with self.state:
            self.state.onfh_volume = self.volume.GetName()
            self.state.onfh_has_segmentation = False
            self.state.onfh_quality = ""
            self.state.update({f"onfh_{key}": value for key, value in panel_text(None).items()})
        self._say(f"Loaded {name}. Click Segment.")

    # --- segment ------------------------------------------------------------------------

    def segment(self) -> None:
        """Start ``onfh segment`` on the loaded volume in a child process (returns at once)."""
        if self.volume is None or self.job is not None:
            return
        try:
            self.job = SegmentJob(
                volume_to_image(self.volume), sys.executable, ENGINE_ROOT, None, self.state.onfh_device
            )
        except (OnfhError, ValueError, OSError) as error:
            self._say(f"onfh: error: {error}", error=True)
            return
        self.job.volume = self.volume
        self.segment_started_s = time.perf_counter()
        with self.state:
            self.state.onfh_running = True
            self.state.onfh_progress = 0
        self._say(f"Segmenting {self.volume.GetName()}...")
        create_task(self._poll())

    async def _poll(self) -> None:
        while self.job is not None:
            await asyncio.sleep(POLL_INTERVAL_S)
            job = self.job
            if job is None:
                return
            events = job.process.poll()
            with self.state:
                for event in events:
                    if event.fraction is not None:
                        self.state.onfh_progress = round(100 * event.fraction)
                    self.state.onfh_status = event.text + "..."
            if job.process.finished:
                self.job = None
                with self.state:
                    self.state.onfh_running = False
                self._finish(job)

    def _finish(self, job: SegmentJob) -> None:
        try:
            if job.process.returncode != 0:
                self._say("Segmentation failed: " + job.process.error_message(), error=True)
                logger.error("onfh segment failed:\n%s", "\n".join(job.process.stderr_lines))
                return
            if job.volume is not self.volume:
                self._say("Another image was loaded meanwhile; the result was discarded.")
                return
            report = self._read_report(job.report_path)
            model = read_model_info(job.report_path) if report else None
            decision = plan_import(self.scene, self.volume)
            outcome = import_segmentation(
                self.scene, self.volume, job.seg_path, model, decision, ImportChoice.NEW_NODE
            )
        except OnfhError as error:
            self._say(f"onfh: error: {error}", error=True)
            return
        finally:
            job.cleanup()
        self.model = {"id": model.model_id, "sha256": model.sha256} if model else None
        self.model_quality = quality_warning(report)
        self._edit(outcome.segmentation_node)
        with self.state:
            self.state.onfh_progress = 100
            self.state.onfh_quality = self.model_quality or ""
            self.state.onfh_segment_s = round(time.perf_counter() - self.segment_started_s, 2)
        kept = " Your earlier segmentation is kept unchanged." if decision.needs_question else ""
        self._say(f"Done: '{outcome.segmentation_node.GetName()}'. Paint or erase to correct.{kept}")

    @staticmethod
    def _read_report(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def cancel(self) -> None:
        """Kill a running job's process tree; the scene is unchanged."""
        job, self.job = self.job, None
        if job is None:
            return
        job.process.cancel()
        job.cleanup()
        with self.state:
            self.state.onfh_running = False
            self.state.onfh_progress = 0
        self._say("Cancelled; the scene is unchanged.")

    # --- edit and grade -----------------------------------------------------------------

    def _edit(self, segmentation_node) -> None:
        """Hand the node to the Segment Editor (necrosis active), centre the views, grade live."""
        self._close_grader()
        self.segmentation = segmentation_node
        self.editor.set_active_segmentation(segmentation_node, self.volume)
        found = find_grading_segments(segmentation_node)
        if found.get("necrosis"):
            self.editor.set_active_segment_id(found["necrosis"])
        self.editor.set_surface_representation_enabled(True)
        # Regrade at once on every segmentation event (about 1 ms on a cropped labelmap):
        # a deferred regrade would wait behind the frames the stroke schedules.
        self.grader = LiveGrader(segmentation_node, self._show_grade, self._regrade)
        with self.state:
            self.state.onfh_has_segmentation = True
        update = self.grader.recompute()
        if found.get("femoral_head") and update.result is not None:
            self._frame_head(segmentation_node, found["femoral_head"], update.result.head_volume_ml)

    def _frame_head(self, segmentation_node, head_id: str, head_ml: float) -> None:
        """Centre every view on the femoral head; the slices show about three head diameters."""
        r, a, s = segmentation_node.GetSegmentCenterRAS(head_id)
        target_mm = HEAD_DIAMETERS_IN_VIEW * (6.0 * head_ml * 1000.0 / math.pi) ** (1.0 / 3.0)
        nodes = self.scene.GetNodesByClass("vtkMRMLSliceNode")
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            fov = node.GetFieldOfView()
            factor = target_mm / max(min(fov[0], fov[1]), 1e-6)
            node.SetFieldOfView(fov[0] * factor, fov[1] * factor, fov[2])
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        for view in self.slicer_app.view_manager.get_threed_views():
            view.render_window().Render()  # builds the surfaces' actors, so the fit sees them
            view.reset_view()

    def _regrade(self) -> None:
        if self.grader is not None:
            self.grader.recompute()

    def _show_grade(self, update) -> None:
        if update.result is None and not self._confirming:
            # Mid-operation states (undo removes a segment before restoring it) are not
            # shown: grade again once the burst of events is over, and show that.
            self._confirming = True
            asyncio.get_event_loop().call_soon(self._confirm_grade)
            return
        # The page shows the AI result's flag in its own banner (onfh_quality); the status
        # line, which also carries this page's messages, need not repeat it.
        shown = dataclasses.replace(update, model_quality=None)
        with self.state:
            self.state.update({f"onfh_{key}": value for key, value in panel_text(shown).items()})
            self.state.onfh_grade_serial += 1

    def _confirm_grade(self) -> None:
        self._regrade()
        self._confirming = False

    def _close_grader(self) -> None:
        if self.grader is not None:
            self.grader.close()
            self.grader = None

    # --- save ---------------------------------------------------------------------------

    def output_folder(self) -> Path:
        """Next to the image when it lies under ``--data``; the sample's results go to ``--data``."""
        folder = self.image_path.parent.resolve() if self.image_path else self.data_dir
        return folder if folder == self.data_dir or self.data_dir in folder.parents else self.data_dir

    def save(self) -> None:
        """Write ``<case>.seg.nrrd``, ``<case>.json`` and a CSV row; an existing case gets ``-<n>``."""
        if self.segmentation is None:
            return
        try:
            saved = save_case(
                self.scene,
                self.segmentation,
                self.volume,
                self.output_folder(),
                self.image_path,
                self.model,
                self.model_quality,
            )
        except OnfhError as error:
            self._say(f"onfh: error: {error}", error=True)
            return
        renamed = saved.case != case_name(self.image_path)
        note = f" ('{case_name(self.image_path)}' already existed and was kept)" if renamed else ""
        self._say(
            f"Saved {saved.segmentation_path.name}, {saved.report_path.name} and a row of "
            f"{saved.csv_path.name} in {saved.segmentation_path.parent}{note}."
        )

    def add_to_training_set(self) -> None:
        """Export volume + corrected labels as a new case of ``<data>/onfh-training-set``."""
        if self.segmentation is None:
            return
        folder = self.data_dir / TRAINING_FOLDER
        try:
            plan = plan_case_id(folder, self.volume)
            files = export_training_case(
                self.scene, self.segmentation, self.volume, folder, plan.free_alternative
            )
        except OnfhError as error:
            self._say(f"onfh: error: {error}", error=True)
            return
        note = f" (case '{plan.case_id}' already existed and was kept)" if plan.exists else ""
        self._say(f"Added case '{files.case_id}' to {folder}{note}.")

    def refresh_inputs(self) -> None:
        with self.state:
            self.state.onfh_inputs = list_inputs(self.data_dir)
