"""What a grading update shows: the panel's texts, one table row, the table's CSV file.

Shared by ONFH Grading (Qt) and ``onfh web`` (trame), so both show the same numbers the same
way; the MRML table and its CSV go through Slicer's own table and storage nodes.
"""

from __future__ import annotations

from pathlib import Path

import vtk

from onfh.mrml.grading import GradeUpdate


def csv_export_path(path) -> Path | None:
    """The CSV file to write, or ``None`` when the field holds no file.

    The panel's path field is a ``pathlib.Path`` parameter (the only type Slicer's
    ``ctkPathLineEdit`` connector accepts), whose empty default reads back as ``Path(".")``.
    """
    text = "" if path is None else str(path).strip()
    return None if text in ("", ".") else Path(text)


TABLE_COLUMNS = (
    ("Segmentation", "string"),
    ("Femoral head (mL)", "double"),
    ("Necrosis (mL)", "double"),
    ("Necrotic ratio (%)", "double"),
    ("Steinberg grade", "string"),
    ("Borderline", "string"),
    ("Kerboul angle (deg)", "double"),
    ("Kerboul grade", "string"),
    ("Note", "string"),
)


def grade_table_row(segmentation_name: str, update: GradeUpdate) -> list:
    """One table row (values in ``TABLE_COLUMNS`` order) for a grading update."""
    result = update.result
    if result is None:
        nan = float("nan")
        return [segmentation_name, nan, nan, nan, "", "", nan, "", update.error or ""]
    kerboul = update.kerboul or {}
    return [
        segmentation_name,
        result.head_volume_ml,
        result.necrosis_volume_ml,
        float("nan") if result.ratio is None else 100.0 * result.ratio,
        result.grade or "",
        "yes" if result.borderline else "no",
        kerboul.get("combined_angle_deg", float("nan")),
        str(kerboul.get("grade", "")),
        result.reason or "",
    ]


def append_grade_row(table_node, row: list) -> None:
    """Append one grading row to a ``vtkMRMLTableNode``, creating the columns if needed.

    Appending (not replacing) lets a surgeon export several hips or several correction
    rounds into one table.
    """
    table = table_node.GetTable()
    if table.GetNumberOfColumns() == 0:
        for name, kind in TABLE_COLUMNS:
            array = vtk.vtkStringArray() if kind == "string" else vtk.vtkDoubleArray()
            array.SetName(name)
            table.AddColumn(array)
    names = [table.GetColumn(i).GetName() for i in range(table.GetNumberOfColumns())]
    if names != [name for name, _ in TABLE_COLUMNS]:
        raise ValueError(
            f"table {table_node.GetName()!r} has other columns ({', '.join(names)}); choose another table"
        )
    index = table.InsertNextBlankRow()
    for column, ((_, kind), value) in enumerate(zip(TABLE_COLUMNS, row)):
        table.SetValue(index, column, vtk.vtkVariant(str(value) if kind == "string" else float(value)))
    table.Modified()
    table_node.Modified()


def panel_text(update: GradeUpdate | None) -> dict[str, str]:
    """What the grading panel shows for an update: label texts and the badge colour.

    Ratio in percent with one decimal; the badge is green (A), amber (B) or red (C). The
    status line carries the AI result's low-confidence flag or note, while there is one.
    """
    colours = {"A": "#2e7d32", "B": "#e69500", "C": "#c62828"}
    flag = f" {update.model_quality}." if update is not None and update.model_quality else ""
    if update is None or update.result is None:
        message = "Select a segmentation." if update is None else (update.error or "") + flag
        return {
            "grade": "-",
            "head": "-",
            "necrosis": "-",
            "ratio": "-",
            "colour": "#9e9e9e",
            "status": (message or "").strip(),
            "borderline": "",
            "kerboul": "-",
        }
    result = update.result
    return {
        "grade": f"Grade {result.grade}" if result.grade else "No grade",
        "head": f"{result.head_volume_ml:.2f} mL",
        "necrosis": f"{result.necrosis_volume_ml:.2f} mL",
        "ratio": "-" if result.ratio is None else f"{100.0 * result.ratio:.1f} %",
        "colour": colours.get(result.grade or "", "#9e9e9e"),
        "status": ((result.reason or "") + flag).strip(),
        "borderline": "yes" if result.borderline else "",
        "kerboul": kerboul_text(update.kerboul),
    }


def kerboul_text(kerboul: dict | None) -> str:
    """``"215° (grade 2, moderate risk)"``, or ``"-"`` without a head."""
    if not kerboul:
        return "-"
    return f"{kerboul['combined_angle_deg']:.0f}° (grade {kerboul['grade']}, {kerboul['risk']} risk)"


def save_table_csv(table_node, path: str) -> None:
    """Write a table node to CSV through Slicer's own table storage node.

    Raises:
        OSError: the file could not be written.
    """
    scene = table_node.GetScene()
    storage = scene.AddNewNodeByClass("vtkMRMLTableStorageNode")
    try:
        storage.SetFileName(str(path))
        if not storage.WriteData(table_node):
            raise OSError(f"{path}: could not write the grading table")
    finally:
        scene.RemoveNode(storage)
