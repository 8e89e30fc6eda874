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
