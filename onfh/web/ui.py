"""The page: trame-slicer's Segment Editor on the left, the views, the ONFH panel on the right.

Only layout and bindings; every button calls one ``OnfhWebApp`` method. Elements the
browser test and the benchmark drive carry ``id="onfh-..."``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v
from trame_server.utils.asynchronous import create_task
from trame_slicer.app.ui import FlexContainer, SegmentEditorUI, SegmentEditorUndoRedoUI

from onfh.imageio import IMAGE_SUFFIXES

DEVICES = [
    {"title": "Auto", "value": "auto"},
    {"title": "CPU", "value": "cpu"},
    {"title": "GPU", "value": "gpu"},
]


@dataclass
class OnfhUI:
    layout: VAppLayout
    editor: SegmentEditorUI


def _row(label: str, key: str) -> None:
    with html.Div(classes="d-flex justify-space-between my-1"):
        html.Span(label, classes="text-medium-emphasis")
        html.Span(f"{{{{ onfh_{key} }}}}", id=f"onfh-{key}", classes="font-weight-bold")


def _load_card(app) -> None:
    with v.VCard(variant="flat", title="Image"), v.VCardText():
        html.Div("{{ onfh_volume || 'No image loaded' }}", id="onfh-volume", classes="mb-2")
        v.VSelect(
            v_model=("onfh_input",),
            items=("onfh_inputs",),
            label="Image or DICOM folder under --data",
            density="compact",
            hide_details=True,
            id="onfh-input",
            click=app.refresh_inputs,
        )
        with html.Div(classes="d-flex mt-2"):
            v.VBtn(
                "Load",
                id="onfh-load",
                disabled=("!onfh_input || onfh_running",),
                click=lambda: create_task(app.load_input()),
                variant="tonal",
                classes="mr-2",
            )
            v.VBtn(
                "Sample hip",
                id="onfh-load-sample",
                disabled=("onfh_running",),
                click=lambda: create_task(app.load_sample()),
                variant="tonal",
            )
        v.VFileInput(
            v_model=("onfh_upload", None),
            label="Upload an image (NIfTI, NRRD, MHA)",
            accept=",".join(IMAGE_SUFFIXES),
            density="compact",
            hide_details=True,
            classes="mt-2",
            id="onfh-upload",
        )


def _segment_card(app) -> None:
    with v.VCard(variant="flat", title="Segment"), v.VCardText():
        v.VSelect(
            v_model=("onfh_device",),
            items=("onfh_devices", DEVICES),
            label="Device",
            density="compact",
            hide_details=True,
            disabled=("onfh_running",),
        )
        with html.Div(classes="d-flex mt-2"):
            v.VBtn(
                "Segment",
                id="onfh-segment",
                color="primary",
                disabled=("!onfh_volume || onfh_running",),
                click=app.segment,
                classes="mr-2",
            )
            v.VBtn("Cancel", id="onfh-cancel", disabled=("!onfh_running",), click=app.cancel, variant="tonal")
        v.VProgressLinear(
            v_model=("onfh_progress",), id="onfh-progress", height=6, classes="mt-2", color="primary"
        )


def _grade_card() -> None:
    with v.VCard(variant="flat", title="Grade"), v.VCardText():
        v.VChip(
            "{{ onfh_grade }}",
            id="onfh-grade",
            color=("onfh_colour",),
            variant="flat",
            size="large",
            classes="mb-2",
        )
        _row("Femoral head", "head")
        _row("Necrosis", "necrosis")
        _row("Necrotic ratio", "ratio")
        _row("Kerboul angle", "kerboul")
        html.Div(
            "Borderline: within 2 points of a cut-off", v_if=("onfh_borderline",), classes="text-warning"
        )
        html.Div("{{ onfh_status }}", v_if=("onfh_grade === 'No grade'",), classes="text-warning")
        v.VAlert(
            "{{ onfh_quality }}",
            id="onfh-quality",
            v_if=("onfh_quality",),
            type="warning",
            density="compact",
            classes="mt-2",
        )
        html.Div("{{ onfh_grade_serial }}", id="onfh-grade-serial", style="display: none;")


def _save_card(app) -> None:
    with v.VCard(variant="flat", title="Results"), v.VCardText(), html.Div(classes="d-flex"):
        v.VBtn(
            "Save",
            id="onfh-save",
            disabled=("!onfh_has_segmentation || onfh_running",),
            click=app.save,
            classes="mr-2",
            variant="tonal",
        )
        v.VBtn(
            "Add to training set",
            id="onfh-train",
            disabled=("!onfh_has_segmentation || onfh_running",),
            click=app.add_to_training_set,
            variant="tonal",
        )


def build_ui(server, app) -> OnfhUI:
    """Build the page for ``app`` (an ``OnfhWebApp``) and return the parts the logic binds to."""
    with VAppLayout(server, fill_height=True) as layout:
        layout.root.theme = "dark"
        with v.VAppBar(density="compact"):
            v.VToolbarTitle("ONFH: femoral head osteonecrosis, Steinberg grade")
            html.Span("Research software: not for clinical decisions", classes="text-caption mr-4")
        with v.VNavigationDrawer(permanent=True, location="left", width=340):
            editor_ui = SegmentEditorUI()
        with v.VNavigationDrawer(permanent=True, location="right", width=330):
            _load_card(app)
            v.VDivider()
            _segment_card(app)
            v.VDivider()
            with html.Div(classes="d-flex align-center px-4", id="onfh-undo-redo"):
                html.Span("Edits", classes="text-medium-emphasis mr-2")
                SegmentEditorUndoRedoUI(editor_ui=editor_ui, row=True)
            _grade_card()
            v.VDivider()
            _save_card(app)
            v.VAlert(
                "{{ onfh_error }}", id="onfh-error", v_if=("onfh_error",), type="error", density="compact"
            )
            html.Div("{{ onfh_status }}", id="onfh-status", classes="text-caption pa-3")
        with v.VMain(), FlexContainer(row=True, fill_height=True):
            app.layout_manager.initialize_layout_grid(layout)
    return OnfhUI(layout, editor_ui)
