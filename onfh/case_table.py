"""Per-case attributes for subgroup results: which side, orientation, protocol each case has.

A model that scores well overall can still fail on right hips or oblique scans; the only
way to see it is to split the evaluation by what the cases are. ``onfh synth`` writes
``cases.csv`` beside ``dataset.json`` (laterality, orientation, spacing, field strength,
lesion shape, ...); a researcher's own cohort can bring any CSV with a case column.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from onfh.dataset import CASES_CSV
from onfh.errors import OnfhError

CASE_COLUMNS = ("case_id", "case")  # the first one present names the cases


def find_case_table(folders: Sequence[str | os.PathLike]) -> Path | None:
    """The first ``cases.csv`` in ``folders`` (a dataset folder, then its parent for ``labelsTr``)."""
    for folder in folders:
        candidate = Path(folder) / CASES_CSV
        if candidate.is_file():
            return candidate
    return None


def read_case_table(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``{case: {column: value}}`` from a CSV whose ``case_id`` (or ``case``) column names cases.

    Raises:
        OnfhError: unreadable file, no case column, or a case listed twice.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            key = next((c for c in CASE_COLUMNS if c in columns), None)
            if key is None:
                raise OnfhError(f"{path}: no case column ({' or '.join(CASE_COLUMNS)}); columns: {columns}")
            table: dict[str, dict[str, str]] = {}
            for row in reader:
                case = (row.get(key) or "").strip()
                if not case:
                    continue
                if case in table:
                    raise OnfhError(f"{path}: case {case!r} is listed twice")
                table[case] = {k: (v or "").strip() for k, v in row.items() if k is not None}
    except OSError as error:
        raise OnfhError(f"{path}: cannot read the case table ({error.strerror or error})") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise OnfhError(f"{path}: not a readable CSV ({error})") from None
    return table


def require_columns(
    table: dict[str, dict[str, str]],
    columns: Sequence[str],
    source: str | os.PathLike,
    reserved: Sequence[str] = (),
) -> None:
    """Refuse, before any work, a column the table lacks or one that would shadow ``reserved`` fields.

    Raises:
        OnfhError: naming the column and the columns the table has.
    """
    known = sorted({name for attributes in table.values() for name in attributes})
    for column in columns:
        if column in reserved:
            raise OnfhError(f"--by {column}: clashes with an evaluation field of the same name")
        if column not in known:
            raise OnfhError(f"{source}: no column {column!r} to group by; columns: {', '.join(known)}")


def attach_columns(
    rows: Sequence[dict], table: dict[str, dict[str, str]], columns: Sequence[str], source: str | os.PathLike
) -> list[str]:
    """Copy ``columns`` of ``table`` into each evaluation row (by ``row['case']``), in place.

    A case the table does not list gets ``None`` and is left out of that column's groups;
    an empty cell counts as not listed for that column.

    Returns:
        Warnings: one line naming the cases the table does not list, if any.
    """
    unlisted = [row["case"] for row in rows if row["case"] not in table]
    for row in rows:
        attributes = table.get(row["case"], {})
        for column in columns:
            row[column] = attributes.get(column) or None
    if not unlisted:
        return []
    shown = ", ".join(unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
    return [f"{len(unlisted)} case(s) not listed in {source}, left out of the subgroups ({shown})"]
