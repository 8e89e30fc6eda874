"""The layer table of ARCHITECTURE.md section 2, enforced by parsing every file with ``ast``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE_THIRD_PARTY = {
    *("numpy", "SimpleITK", "torch", "monai", "onnx", "onnxruntime", "matplotlib", "onfh"),
    *("highdicom", "pydicom"),  # DICOM SEG and SR (onfh/dicom_*.py)
}
HEAVY = {"torch", "monai", "onnx"}
"""Training-side libraries: imported at module level only by TORCH_SIDE files, else inside functions."""
TORCH_SIDE = {"network.py", "runtime_torch.py", "onnx_export.py"}
LAYER1_EXTRA = {"slicer", "vtk", "vtkmodules"}
LAYER1_FORBIDDEN_ATTRIBUTES = {"util", "app", "mrmlScene", "modules", "ScriptedLoadableModule"}
WEB_SHELL_EXTRA = {"trame", "trame_slicer", "trame_server", "trame_client"}
"""The browser shell (``onfh/web/``, layer 2) may use trame on top of layer 1, never Qt."""
MODULE_FILE_MAX_LINES = 450


def python_files(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(tree: ast.AST):
    """(line, full dotted name) of every import in the file, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def is_layer1(path: Path) -> bool:
    return "mrml" in path.relative_to(ROOT / "onfh").parts[:1] or path.name == "mrml.py"


def is_web_shell(path: Path) -> bool:
    return path.relative_to(ROOT / "onfh").parts[:1] == ("web",)


WEB_LAUNCHER = Path("commands") / "web.py"
"""``onfh web`` starts the browser shell: it may import ``onfh.web`` (nothing of trame itself)."""


def engine_files():
    return [p for p in python_files(ROOT / "onfh")]


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_and_mrml_imports_follow_the_layer_table(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    allowed = set(sys.stdlib_module_names) | ENGINE_THIRD_PARTY
    if is_layer1(path):
        allowed |= LAYER1_EXTRA
    if is_web_shell(path):
        allowed |= LAYER1_EXTRA | WEB_SHELL_EXTRA
    problems = []
    for line, name in imported_modules(tree):
        top = name.split(".")[0]
        if top not in allowed:
            problems.append(f"line {line}: imports {name}")
        launcher = path.relative_to(ROOT / "onfh") == WEB_LAUNCHER
        if not is_web_shell(path) and not launcher and name.startswith("onfh.web"):
            problems.append(f"line {line}: imports the web shell {name} (layers below import nothing above)")
        if top == "slicer" and name.split(".")[1:2] and name.split(".")[1] in LAYER1_FORBIDDEN_ATTRIBUTES:
            problems.append(f"line {line}: imports {name} (needs the Slicer application)")
    if is_layer1(path):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "slicer"
                and node.attr in LAYER1_FORBIDDEN_ATTRIBUTES
            ):
                problems.append(f"line {node.lineno}: uses slicer.{node.attr} (application global)")
    assert not problems, f"{path.relative_to(ROOT)} breaks the layer table:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_torch_side_imports_torch_at_module_level(path):
    """Importing the rest (what ONNX inference reaches) must not pull in torch, MONAI or onnx."""
    relative = path.relative_to(ROOT / "onfh")
    if relative.parts[0] == "training" or path.name in TORCH_SIDE:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [name for node in top_level for _, name in imported_modules(node)]
    assert not [n for n in names if n.split(".")[0] in HEAVY], f"{relative}: module-level {names}"


def module_files():
    return sorted(ROOT.glob("ONFH*/ONFH*.py"))


def test_both_slicer_modules_exist():
    assert {p.stem for p in module_files()} >= {"ONFHSegmentation", "ONFHGrading"}


@pytest.mark.parametrize("path", module_files(), ids=lambda p: p.name)
def test_module_files_stay_thin(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MODULE_FILE_MAX_LINES, f"{path.name} has {lines} lines; move logic to onfh/ or onfh/mrml/"


@pytest.mark.parametrize("path", module_files(), ids=lambda p: p.name)
def test_module_files_parse_on_python39_syntax(path):
    source = path.read_text(encoding="utf-8")
    ast.parse(source, filename=str(path), feature_version=(3, 9))
    assert "from __future__ import annotations" in source


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_parses_on_python39_syntax(path):
    """Slicer 5.8 bundles Python 3.9: no ``match``, and ``X | None`` only as lazy annotations."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    has_code = any(not isinstance(node, ast.Expr) for node in tree.body)
    if has_code:
        assert "from __future__ import annotations" in source, f"{path.name} needs the __future__ import"
