"""Both module panels are valid Qt Designer files: they load and render offscreen with PySide6.

Slicer's widgets are replaced by the Qt base classes each ``.ui`` declares in its
``<customwidgets>`` section, so a broken file, an undeclared custom widget or a missing
named widget fails here rather than only inside Slicer.
"""

from __future__ import annotations

import ast
import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 not installed")
pytest.importorskip("PySide6.QtUiTools", reason="PySide6 QtUiTools not installed")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Resources" / "Screenshots"))
import render_panels  # noqa: E402

MODULES = ("ONFHSegmentation", "ONFHGrading")
# What each panel must offer (issue 4 and issue 2): widget name -> Qt class after loading.
EXPECTED = {
    "ONFHSegmentation": {
        "inputVolumeSelector": "QWidget",
        "deviceComboBox": "QComboBox",
        "modelFolderPathLineEdit": "QWidget",
        "segmentButton": "QPushButton",
        "cancelButton": "QPushButton",
        "progressBar": "QProgressBar",
        "statusLabel": "QLabel",
        "trainingSegmentationSelector": "QWidget",
        "datasetFolderPathLineEdit": "QWidget",
        "addToTrainingSetButton": "QPushButton",
    },
    "ONFHGrading": {
        "segmentationSelector": "QWidget",
        "headSegmentSelector": "QWidget",
        "necrosisSegmentSelector": "QWidget",
        "gradeBadgeLabel": "QLabel",
        "headVolumeLabel": "QLabel",
        "necrosisVolumeLabel": "QLabel",
        "ratioLabel": "QLabel",
        "exportButton": "QPushButton",
    },
}


def _named_widgets(module: str) -> dict[str, str]:
    tree = ElementTree.parse(render_panels.ui_path(module))
    return {w.get("name"): w.get("class") for w in tree.iter("widget")}


def _device_choices() -> list[str]:
    """The ``Choice`` of the ``device`` parameter in ONFHSegmentation.py."""
    tree = ast.parse((ROOT / "ONFHSegmentation" / "ONFHSegmentation.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "device":
            for call in ast.walk(node.annotation):
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Choice":
                    return ast.literal_eval(call.args[0])
    raise AssertionError("ONFHSegmentation.py has no device: Annotated[str, Choice([...])] parameter")


@pytest.mark.parametrize("module", MODULES)
def test_panel_loads_with_declared_base_classes(module):
    panel = render_panels.load_panel(render_panels.ui_path(module), preview=False)
    declared = render_panels.declared_bases(ElementTree.parse(render_panels.ui_path(module)))
    for name, ui_class in _named_widgets(module).items():
        if name == module:  # the root widget is the panel itself
            assert type(panel).__name__ == declared.get(ui_class, ui_class)
            continue
        widget = panel.findChild(QtWidgets.QWidget, name)
        assert widget is not None, f"{module}.ui: widget {name!r} missing after loading"
        assert type(widget).__name__ == declared.get(ui_class, ui_class), name
    for name, qt_class in EXPECTED[module].items():
        widget = panel.findChild(QtWidgets.QWidget, name)
        assert widget is not None and type(widget).__name__ == qt_class, f"{module}: {name}"


@pytest.mark.parametrize("module", MODULES)
def test_parameter_bindings_survive_as_dynamic_properties(module):
    panel = render_panels.load_panel(render_panels.ui_path(module))
    tree = ElementTree.parse(render_panels.ui_path(module))
    bound = {
        w.get("name"): p.findtext("string")
        for w in tree.iter("widget")
        for p in w.findall("property")
        if p.get("name") == "SlicerParameterName"
    }
    assert bound
    for name, parameter in bound.items():
        assert panel.findChild(QtWidgets.QWidget, name).property("SlicerParameterName") == parameter


def test_device_combo_items_match_the_parameter_choices():
    panel = render_panels.load_panel(render_panels.ui_path("ONFHSegmentation"))
    combo = panel.findChild(QtWidgets.QComboBox, "deviceComboBox")
    assert [combo.itemText(i) for i in range(combo.count())] == _device_choices()


def test_a_custom_widget_without_qt_base_is_refused(tmp_path):
    bad = tmp_path / "Bad.ui"
    bad.write_text(
        '<ui version="4.0"><widget class="ctkThing" name="Bad"/>'
        "<customwidgets><customwidget><class>ctkThing</class><extends>ctkOther</extends>"
        "</customwidget></customwidgets></ui>"
    )
    with pytest.raises(ValueError, match="ctkThing"):
        render_panels.load_panel(bad)


def test_both_panel_pictures_render(tmp_path):
    written = render_panels.main(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{m}_panel.png" for m in MODULES)
    from PySide6.QtGui import QImage

    for path in written:
        image = QImage(str(path))
        assert image.width() == render_panels.PANEL_WIDTH_PX and image.height() > 200
        colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
        assert len(colours) > 10, f"{path.name} looks blank"
