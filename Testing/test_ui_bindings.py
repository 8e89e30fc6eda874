"""Every Slicer module's ``.ui`` matches its Python: widget names and parameter bindings.

A typo in ``self.ui.someWidget`` or in a ``SlicerParameterName`` only fails inside the
Slicer application, which CI cannot start; parsing both files catches it here.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.parent.name for p in ROOT.glob("ONFH*/ONFH*.py"))


def ui_file(module: str) -> Path:
    return ROOT / module / "Resources" / "UI" / f"{module}.ui"


def ui_widget_names(module: str) -> set[str]:
    tree = ElementTree.parse(ui_file(module))
    return {w.get("name") for w in tree.iter("widget")}


def ui_parameter_bindings(module: str) -> dict[str, str]:
    """Widget name -> SlicerParameterName for every bound widget."""
    bindings = {}
    for widget in ElementTree.parse(ui_file(module)).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[widget.get("name")] = prop.findtext("string")
    return bindings


def module_tree(module: str) -> ast.Module:
    path = ROOT / module / f"{module}.py"
    return ast.parse(path.read_text(), filename=str(path))


def ui_attributes_used(tree: ast.Module) -> set[str]:
    """Names ``X`` in every ``self.ui.X`` of the module."""
    used = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            used.add(node.attr)
    return used


def parameter_node_fields(tree: ast.Module) -> set[str]:
    """Annotated fields of classes decorated with ``parameterNodeWrapper``."""
    fields = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper")
            or (isinstance(d, ast.Attribute) and d.attr == "parameterNodeWrapper")
            for d in node.decorator_list
        ):
            fields |= {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    return fields


def test_modules_found():
    assert {"ONFHGrading", "ONFHSegmentation"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_attribute_exists_in_the_ui_file(module):
    missing = ui_attributes_used(module_tree(module)) - ui_widget_names(module)
    assert not missing, f"{module}.py uses self.ui.{sorted(missing)} not defined in {module}.ui"


@pytest.mark.parametrize("module", MODULES)
def test_every_parameter_binding_maps_to_a_parameter_node_field(module):
    fields = parameter_node_fields(module_tree(module))
    assert fields, f"{module}.py has no parameterNodeWrapper class"
    bindings = ui_parameter_bindings(module)
    assert bindings, f"{module}.ui binds no widget to the parameter node"
    unknown = {widget: name for widget, name in bindings.items() if name not in fields}
    assert not unknown, (
        f"{module}.ui binds {unknown} to fields missing from the parameter node ({sorted(fields)})"
    )


@pytest.mark.parametrize("module", MODULES)
def test_ui_declares_every_custom_widget_it_uses(module):
    tree = ElementTree.parse(ui_file(module))
    declared = {c.findtext("class") for c in tree.iter("customwidget")}
    used = {w.get("class") for w in tree.iter("widget")}
    custom = {c for c in used if c.startswith(("qMRML", "ctk", "qSlicer"))}
    assert custom <= declared, f"{module}.ui uses undeclared custom widgets {sorted(custom - declared)}"


# --- Parameter types each widget class can be bound to ----------------------------------
# Facts from the ``canRepresent`` methods in Slicer's
# Base/Python/slicer/parameterNodeWrapper/guiConnectors.py, read at tag v5.8.1 (the oldest
# Slicer we support) and at main (2026-08). ``connectGui`` raises "Unable to create GUI
# connector" for any other pairing, inside ``setup()``: the module panel never opens.
# Widget classes are compared exactly (``type(widget) ==``), so a subclass is not accepted.
# "+Choice": QComboBoxToStringableConnector also requires a ``Choice`` annotation.
_FLOAT_WIDGETS = (
    "QDoubleSpinBox",
    "ctkSliderWidget",
    "qMRMLSliderWidget",
    "ctkDoubleSlider",
    "ctkDoubleSpinBox",
    "qMRMLSpinBox",
)
_V5_8_1 = {
    "QCheckBox": {"bool"},
    "ctkCheckBox": {"bool"},
    "QPushButton": {"bool"},
    "QSlider": {"int"},
    "QSpinBox": {"int"},
    **{name: {"float"} for name in _FLOAT_WIDGETS},
    "QComboBox": {"int+Choice", "float+Choice", "str+Choice", "bool+Choice", "enum"},
    "ctkComboBox": {"int+Choice", "float+Choice", "str+Choice", "bool+Choice", "enum"},
    "QLineEdit": {"str"},
    "QLabel": {"str"},
    "QTextEdit": {"str"},
    "ctkRangeWidget": {"FloatRange"},
    "ctkDoubleRangeSlider": {"FloatRange"},
    "qMRMLRangeWidget": {"FloatRange"},
    "ctkPathLineEdit": {"path"},
    "ctkDirectoryButton": {"path"},
    "qMRMLNodeComboBox": {"node"},
}
_MAIN = {
    **_V5_8_1,
    **{name: {"float", "int"} for name in _FLOAT_WIDGETS},
    "ctkCheckablePushButton": {"bool"},
    "ctkColorPickerButton": {"QColor"},
}
ACCEPTED_TYPES = {"v5.8.1": _V5_8_1, "main": _MAIN}
_PATH_TYPES = {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}


def annotation_kind(annotation: ast.expr) -> str:
    """What a field's annotation is, in the words of the table above ("path", "str+Choice")."""
    if isinstance(annotation, ast.Subscript) and _name(annotation.value) == "Annotated":
        parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        kind = annotation_kind(parts[0])
        has_choice = any(isinstance(p, ast.Call) and _name(p.func) == "Choice" for p in parts[1:])
        return kind + "+Choice" if has_choice and kind in ("int", "float", "str", "bool") else kind
    if isinstance(annotation, ast.Subscript) and _name(annotation.value) in ("Union", "Optional"):
        parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        kinds = {annotation_kind(p) for p in parts}
        return "node" if kinds == {"node"} else "union"
    name = _name(annotation)
    if name in ("bool", "int", "float", "str", "FloatRange", "QColor"):
        return name
    if name in _PATH_TYPES:
        return "path"
    if name.startswith("vtkMRML"):
        return "node"
    return f"unknown ({ast.unparse(annotation)})"


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def parameter_node_annotations(tree: ast.Module) -> dict[str, ast.expr]:
    """Field name -> annotation of every ``parameterNodeWrapper`` class of a module."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            _name(d) == "parameterNodeWrapper" for d in node.decorator_list
        ):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    found[statement.target.id] = statement.annotation
    return found


def ui_bound_widgets(module: str) -> list[tuple[str, str, str]]:
    """(widget name, widget class, parameter name) of every bound widget."""
    bound = []
    for widget in ElementTree.parse(ui_file(module)).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound.append((widget.get("name"), widget.get("class"), prop.findtext("string")))
    return bound


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("slicer_version", sorted(ACCEPTED_TYPES))
def test_every_binding_has_a_gui_connector_in_slicer(module, slicer_version):
    """Issue 11 item 1: ``csvPath: str`` on a ctkPathLineEdit killed the ONFH Grading panel."""
    annotations = parameter_node_annotations(module_tree(module))
    table = ACCEPTED_TYPES[slicer_version]
    wrong = []
    for widget, widget_class, parameter in ui_bound_widgets(module):
        kind = annotation_kind(annotations[parameter])
        if kind not in table.get(widget_class, set()):
            accepted = sorted(table.get(widget_class, set())) or "nothing (no connector)"
            wrong.append(f"{widget} ({widget_class}) <- {parameter}: {kind}; accepts {accepted}")
    assert not wrong, f"{module}: no GUI connector in Slicer {slicer_version}: " + "; ".join(wrong)


@pytest.mark.parametrize("module", MODULES)
def test_each_parameter_is_bound_to_one_widget(module):
    """``connectGui`` maps parameter name -> widget: a second widget silently replaces the first
    (``_connectGui`` in Base/Python/slicer/parameterNodeWrapper/wrapper.py)."""
    names = [parameter for _, _, parameter in ui_bound_widgets(module)]
    assert len(names) == len(set(names)), f"{module}.ui binds a parameter twice: {names}"


def test_annotation_kinds_of_known_faults():
    """The classifier sees the fault of issue 11 item 1 and the fix."""

    def kind(source: str) -> str:
        return annotation_kind(ast.parse(source, mode="eval").body)

    assert kind("str") not in ACCEPTED_TYPES["v5.8.1"]["ctkPathLineEdit"]
    assert kind("pathlib.Path") in ACCEPTED_TYPES["v5.8.1"]["ctkPathLineEdit"]
    assert kind('Annotated[str, Choice(["Auto", "CPU"])]') == "str+Choice"
    assert kind("Annotated[str, Default('x')]") == "str"
    assert kind("vtkMRMLSegmentationNode") == "node"
    assert kind("Union[vtkMRMLScalarVolumeNode, vtkMRMLLabelMapVolumeNode]") == "node"
    assert kind("int") not in ACCEPTED_TYPES["v5.8.1"]["ctkSliderWidget"]
    assert kind("int") in ACCEPTED_TYPES["main"]["ctkSliderWidget"]
