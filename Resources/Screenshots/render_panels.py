"""Render the modules' Qt Designer panels offscreen: README pictures without Slicer.

Slicer cannot run here, but its panels are plain Qt Designer files. Slicer's own widgets
(``qMRML*``, ``ctk*``) are swapped for Qt classes before loading:

- ``declared`` mode uses the base class each ``.ui`` declares in ``<customwidgets>``
  (what a test checks: the file is a valid Designer file and every named widget exists);
- ``preview`` mode draws look-alikes (a collapsible section as a group box, a node
  selector as a combo box, a path field as a line edit) and fills example values, so
  the picture reads like the panel in Slicer.

Run from the repository root::

    QT_QPA_PLATFORM=offscreen python Resources/Screenshots/render_panels.py

It writes ``Resources/Screenshots/<Module>_panel.png`` for every ``ONFH*`` module.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtWidgets
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtUiTools import QUiLoader

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "Resources" / "Screenshots"
PANEL_WIDTH_PX = 380

# Look-alikes for the preview pictures; anything else falls back to its declared base.
PREVIEW_CLASSES = {
    "ctkCollapsibleButton": "QGroupBox",
    "ctkCollapsibleGroupBox": "QGroupBox",
    "qMRMLNodeComboBox": "QComboBox",
    "qMRMLSegmentSelectorWidget": "QComboBox",
    "ctkPathLineEdit": "QLineEdit",
    "ctkDirectoryButton": "QPushButton",
}
# Example content for the preview (widget name -> text); purely illustrative values.
PREVIEW_TEXT = {
    "inputVolumeSelector": "SyntheticONFHHip",
    "modelFolderPathLineEdit": "(the shipped model)",
    "statusLabel": "Done: 'SyntheticONFHHip segmentation'.",
    "trainingSegmentationSelector": "SyntheticONFHHip segmentation",
    "datasetFolderPathLineEdit": "~/ONFH-training-set",
    "segmentationSelector": "SyntheticONFHHip segmentation",
    "headSegmentSelector": "Femoral head",
    "necrosisSegmentSelector": "Necrosis",
    "tableSelector": "ONFH grades",
    "csvPathLineEdit": "~/onfh-grades.csv",
}


def ui_path(module: str) -> Path:
    """The Designer file of an ``ONFH*`` module."""
    return ROOT / module / "Resources" / "UI" / f"{module}.ui"


def modules() -> list[str]:
    """Every module folder with a panel, sorted."""
    return sorted(p.parent.parent.parent.name for p in ROOT.glob("ONFH*/Resources/UI/ONFH*.ui"))


def declared_bases(tree: ElementTree.ElementTree) -> dict[str, str]:
    """Custom class -> the Qt class it finally extends, following ``<extends>`` chains."""
    extends = {c.findtext("class"): c.findtext("extends") for c in tree.iter("customwidget")}
    resolved = {}
    for name in extends:
        base, seen = name, set()
        while base in extends and base not in seen:
            seen.add(base)
            base = extends[base]
        if not base or not base.startswith("Q"):
            raise ValueError(f"custom widget {name} does not extend a Qt class (got {base!r})")
        resolved[name] = base
    return resolved


def _qt_class(name: str):
    return getattr(QtWidgets, name, None)


def plain_qt_ui(path: Path, preview: bool = False) -> bytes:
    """The ``.ui`` XML with every custom widget replaced by a Qt class.

    Properties the replacement class does not have are dropped (dynamic properties such
    as ``SlicerParameterName`` are kept); custom-widget declarations and signal/slot
    connections to Slicer-only slots are removed.
    """
    tree = ElementTree.parse(path)
    bases = declared_bases(tree)
    root = tree.getroot()
    for widget in root.iter("widget"):
        original = widget.get("class")
        if original not in bases:
            continue
        replacement = PREVIEW_CLASSES.get(original, bases[original]) if preview else bases[original]
        widget.set("class", replacement)
        meta = _qt_class(replacement).staticMetaObject
        for prop in list(widget.findall("property")):
            name = prop.get("name")
            if preview and replacement == "QGroupBox" and name == "text":
                prop.set("name", "title")
            elif prop.get("stdset") != "0" and meta.indexOfProperty(name) < 0:
                widget.remove(prop)
    for section in ("customwidgets", "connections"):
        for element in root.findall(section):
            root.remove(element)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def application() -> QtWidgets.QApplication:
    """The process's QApplication (created once)."""
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def load_panel(path: Path, preview: bool = False) -> QtWidgets.QWidget:
    """Load a module panel as plain Qt widgets.

    Raises:
        RuntimeError: Qt could not build the panel (the loader's own message).
    """
    application()
    data = QByteArray(plain_qt_ui(path, preview))
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(buffer)
    if widget is None:
        raise RuntimeError(f"{path}: {loader.errorString()}")
    return widget


def fill_preview(panel: QtWidgets.QWidget) -> None:
    """Put example values in the panel so the picture shows a panel in use."""
    for name, text in PREVIEW_TEXT.items():
        widget = panel.findChild(QtWidgets.QWidget, name)
        if isinstance(widget, QtWidgets.QComboBox):
            widget.addItem(text)
        elif isinstance(widget, (QtWidgets.QLineEdit, QtWidgets.QLabel)):
            widget.setText(text)
    for button in panel.findChildren(QtWidgets.QPushButton):
        button.setEnabled(button.objectName() != "cancelButton")
    progress = panel.findChild(QtWidgets.QProgressBar, "progressBar")
    if progress is not None:
        progress.setValue(100)
    _fill_grade(panel)


def _fill_grade(panel: QtWidgets.QWidget) -> None:
    """Grading labels from the real panel text of an example lesion (sphere phantom)."""
    badge = panel.findChild(QtWidgets.QLabel, "gradeBadgeLabel")
    if badge is None:
        return
    try:
        import numpy as np

        from onfh.grading import grade_masks
        from onfh.mrml.grade_table import panel_text
        from onfh.mrml.grading import GradeUpdate
    except ImportError:  # no slicer-core: leave the placeholders
        return
    z, y, x = np.ogrid[:60, :64, :64]
    head = (x - 32) ** 2 + (y - 32) ** 2 + ((z - 30) * 1.4) ** 2 <= 24**2
    lesion = head & ((x - 32) ** 2 + (y - 14) ** 2 + ((z - 30) * 1.4) ** 2 <= 17**2)
    text = panel_text(GradeUpdate(grade_masks(head, lesion, (0.7, 0.7, 1.0)), None, "head", "necrosis"))
    badge.setText(text["grade"])
    badge.setStyleSheet(
        f"background-color: {text['colour']}; color: white; font-size: 20pt; font-weight: bold;"
        " border-radius: 6px;"
    )
    for name, key in (
        ("headVolumeLabel", "head"),
        ("necrosisVolumeLabel", "necrosis"),
        ("ratioLabel", "ratio"),
    ):
        panel.findChild(QtWidgets.QLabel, name).setText(text[key])
    panel.findChild(QtWidgets.QLabel, "statusLabel").setText(text["status"] or "Follows every edit.")
    panel.findChild(QtWidgets.QLabel, "borderlineLabel").setVisible(bool(text["borderline"]))


def render(module: str, png_path: Path, width_px: int = PANEL_WIDTH_PX) -> Path:
    """Render a module's panel (preview mode) to a PNG; returns the path."""
    panel = load_panel(ui_path(module), preview=True)
    fill_preview(panel)
    panel.setWindowTitle(module)
    panel.resize(width_px, panel.sizeHint().height())
    panel.show()
    application().processEvents()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(png_path)):
        raise RuntimeError(f"{png_path}: could not write the picture")
    panel.close()
    return png_path


def main(out_dir: Path = SCREENSHOTS) -> list[Path]:
    """Render every module panel into ``out_dir``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return [render(module, Path(out_dir) / f"{module}_panel.png") for module in modules()]


if __name__ == "__main__":
    for written in main():
        print(written)
