"""Subgroup evaluation: ``onfh evaluate --by COLUMN`` with a dataset's ``cases.csv``."""

from __future__ import annotations

import csv
import json

import pytest
from test_evaluation import hip_labels, run_cli, write_labels

from onfh.case_table import attach_columns, read_case_table, require_columns
from onfh.errors import OnfhError

# Cap depths: 0.35 grades A, 0.65 B, 0.85 C (test_evaluation.hip_labels).
CASES = {
    "h0": ("left", "axial", 0.35),
    "h1": ("left", "oblique", 0.65),
    "h2": ("right", "axial", 0.85),
    "h3": ("right", "coronal", 0.65),
}


def write_case_table(path, rows, columns=("case_id", "laterality", "orientation")):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.fixture
def dataset_with_predictions(tmp_path):
    """Truth labels with a cases.csv; right hips are predicted one voxel off, left ones exactly."""
    dataset, pred = tmp_path / "data", tmp_path / "pred"
    for case, (side, _, depth) in CASES.items():
        write_labels(hip_labels(depth), dataset / "labelsTr" / f"{case}.nii.gz")
        shift = (0, 0, 2) if side == "right" else (0, 0, 0)
        write_labels(hip_labels(depth, shift_vox=shift), pred / f"{case}.nii.gz")
    write_case_table(dataset / "cases.csv", [(c, s, o) for c, (s, o, _) in CASES.items()])
    return dataset, pred


def test_evaluate_by_columns_summarises_each_subgroup(dataset_with_predictions, tmp_path, capsys):
    dataset, pred = dataset_with_predictions
    out = tmp_path / "report"
    by = ["--by", "laterality", "--by", "orientation"]
    assert run_cli("--pred", pred, "--truth", dataset, "-o", out, *by) == 0

    report = json.loads((out / "report.json").read_text())
    sides = report["summary"]["per_group"]["laterality"]
    assert list(sides) == ["left", "right"]
    assert sides["left"]["n_cases"] == 2 and sides["left"]["femoral_head_dice"]["median"] == 1.0
    assert sides["right"]["n_cases"] == 2 and sides["right"]["femoral_head_dice"]["median"] < 0.99
    orientations = report["summary"]["per_group"]["orientation"]
    assert {k: v["n_cases"] for k, v in orientations.items()} == {"axial": 2, "coronal": 1, "oblique": 1}

    with (out / "cases.csv").open(newline="") as handle:
        side_of = {row["case"]: row["laterality"] for row in csv.DictReader(handle)}
    assert side_of == {case: side for case, (side, _, _) in CASES.items()}
    printed = capsys.readouterr().out
    assert "By laterality:" in printed and "By orientation:" in printed
    assert "## By orientation" in (out / "report.md").read_text()


def test_unknown_column_is_refused_before_measuring(dataset_with_predictions, tmp_path, capsys):
    dataset, pred = dataset_with_predictions
    out = tmp_path / "report"
    assert run_cli("--pred", pred, "--truth", dataset, "-o", out, "--by", "scanner") == 2
    error = capsys.readouterr().err
    assert "cases.csv" in error and "'scanner'" in error and "laterality" in error
    assert not out.exists()


def test_by_without_a_case_table_says_where_it_looked(tmp_path, capsys):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    write_labels(hip_labels(0.65), truth / "h0.nii.gz")
    write_labels(hip_labels(0.65), pred / "h0.nii.gz")
    assert run_cli("--pred", pred, "--truth", truth, "--by", "laterality") == 2
    assert "--case-table" in capsys.readouterr().err


def test_explicit_case_table_and_unlisted_cases_warn(dataset_with_predictions, tmp_path, capsys):
    dataset, pred = dataset_with_predictions
    table = write_case_table(tmp_path / "mine.csv", [("h0", "3T"), ("h1", "1.5T")], ("case", "field"))
    out = tmp_path / "report"
    assert run_cli("--pred", pred, "--truth", dataset, "-o", out, "--by", "field", "--case-table", table) == 0
    groups = json.loads((out / "report.json").read_text())["summary"]["per_group"]["field"]
    assert {k: v["n_cases"] for k, v in groups.items()} == {"1.5T": 1, "3T": 1}
    assert "2 case(s) not listed in" in capsys.readouterr().err


def test_read_case_table_refuses_tables_it_cannot_trust(tmp_path):
    no_case = write_case_table(tmp_path / "a.csv", [("x", "left")], ("subject", "laterality"))
    with pytest.raises(OnfhError, match=r"a\.csv: no case column"):
        read_case_table(no_case)
    twice = write_case_table(tmp_path / "b.csv", [("h0", "left"), ("h0", "right")], ("case_id", "side"))
    with pytest.raises(OnfhError, match="'h0' is listed twice"):
        read_case_table(twice)
    with pytest.raises(OnfhError, match="cannot read"):
        read_case_table(tmp_path / "missing.csv")


def test_require_columns_refuses_shadowing_an_evaluation_field(tmp_path):
    table = read_case_table(write_case_table(tmp_path / "t.csv", [("h0", "1")], ("case_id", "fold")))
    with pytest.raises(OnfhError, match="--by fold: clashes"):
        require_columns(table, ["fold"], "t.csv", reserved=("case", "fold"))
    require_columns(table, ["fold"], "t.csv")  # fine where nothing is reserved


def test_attach_columns_leaves_unlisted_and_empty_cells_out():
    rows = [{"case": "a"}, {"case": "b"}, {"case": "c"}]
    warnings = attach_columns(rows, {"a": {"side": "left"}, "b": {"side": ""}}, ["side"], "t.csv")
    assert [r["side"] for r in rows] == ["left", None, None]
    assert warnings == ["1 case(s) not listed in t.csv, left out of the subgroups (c)"]
