"""Synthetic data sets on disk (onfh.synthetic.write_cohort) and the ``onfh synth`` command."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.cli import main
from onfh.dataset import list_cases
from onfh.errors import OnfhError
from onfh.grading import steinberg_grade
from onfh.synthetic import write_cohort
from onfh.synthetic.cohort import case_seed, ratio_plan

TINY = {"spacing_mm": (1.8, 1.8, 1.8), "size": (80, 80, 56)}


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def a_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "synth"
    rows = write_cohort(root, cases=8, seed=1, **TINY)
    return root, rows


def test_cohort_layout_and_truth_table_match_the_label_files(a_cohort):
    root, rows = a_cohort
    cases = list_cases(root)
    assert [c.case_id for c in cases] == [row["case_id"] for row in rows]
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["numTraining"] == 8
    assert dataset["labels"] == {"background": 0, "femoral_head": 1, "necrosis": 2}
    assert dataset["seed"] == 1
    table = _read_csv(root / "cases.csv")
    assert [r["case_id"] for r in table] == [row["case_id"] for row in rows]
    for files, record in zip(cases, table):
        label = sitk.ReadImage(str(files.label_path))
        image = sitk.ReadImage(str(files.image_path))
        assert label.GetSize() == image.GetSize() and label.GetDirection() == image.GetDirection()
        array = sitk.GetArrayFromImage(label)
        # NIfTI stores spacing as float32, so compare voxel counts (exact) and volumes to 1e-6.
        voxel_ml = (
            float(record["spacing_x_mm"])
            * float(record["spacing_y_mm"])
            * float(record["spacing_z_mm"])
            / 1e3
        )
        assert round(float(record["head_volume_ml"]) / voxel_ml) == np.count_nonzero(array)
        assert round(float(record["necrosis_volume_ml"]) / voxel_ml) == np.count_nonzero(array == 2)
        file_voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
        assert float(record["head_volume_ml"]) == pytest.approx(
            np.count_nonzero(array) * file_voxel_ml, rel=1e-6
        )
        assert record["grade"] == steinberg_grade(float(record["ratio"]))
        assert record["laterality"] in ("left", "right")
        assert float(record["spacing_x_mm"]) == pytest.approx(1.8)


def test_eight_cases_cover_all_grades_and_both_cut_offs(a_cohort):
    _, rows = a_cohort
    assert {row["grade"] for row in rows} == {"A", "B", "C"}
    assert any(abs(row["ratio"] - 0.15) <= 0.03 for row in rows)
    assert any(abs(row["ratio"] - 0.30) <= 0.03 for row in rows)


def test_ratio_plan_spreads_and_balances_grades():
    plan = ratio_plan(seed=7, cases=64)
    ratios = np.array([ratio for _, ratio in plan])
    assert ratios.min() < 0.05 and ratios.max() > 0.5
    assert np.all((ratios >= 0.02) & (ratios <= 0.55))
    assert np.sum(np.abs(ratios - 0.15) <= 0.03) >= 8
    assert np.sum(np.abs(ratios - 0.30) <= 0.03) >= 8
    grades = Counter(steinberg_grade(r) for r in ratios)
    assert min(grades.values()) >= 0.2 * len(plan), grades
    assert ratio_plan(seed=7, cases=64) == plan
    assert ratio_plan(seed=8, cases=64) != plan


def test_case_seeds_are_distinct_and_stable():
    seeds = [case_seed(1, i) for i in range(100)]
    assert len(set(seeds)) == 100
    assert seeds == [case_seed(1, i) for i in range(100)]


def test_same_seed_gives_the_same_bytes(tmp_path):
    first = tmp_path / "a"
    second = tmp_path / "b"
    write_cohort(first, cases=2, seed=5, **TINY)
    write_cohort(second, cases=2, seed=5, **TINY)
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in names:
        if name.name == "dataset.json":  # holds the folder's own name
            continue
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cases": 0}, "--cases"),
        ({"cases": 2, "seed": -3}, "--seed"),
        ({"cases": 2, "spacing_mm": (0.7, 0.0, 1.0)}, "spacing"),
        ({"cases": 2, "size": (8, 80, 56)}, "size"),
        ({"cases": 2, "orientation": "transverse"}, "axial, coronal, oblique, sagittal, got 'transverse'"),
        ({"cases": 2, "orientation": "sagittal", "bilateral": True}, "one hip"),
        ({"cases": 2, "head_diameter_mm": (30.0, 45.0)}, "<= 58 .adult femoral heads., got 30 45"),
        ({"cases": 2, "head_diameter_mm": (50.0, 44.0)}, "got 50 44"),
        ({"cases": 2, "lesion_shape": "sphere"}, "cap, wedge, ellipsoid, lobed, got 'sphere'"),
        ({"cases": 2, "collapse_mm": 12.0}, "--collapse-mm must be within 0-8 mm, got 12"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path, kwargs, message):
    target = tmp_path / "out"
    arguments = {"seed": 1, **TINY, **kwargs}
    with pytest.raises(OnfhError, match=message):
        write_cohort(target, **arguments)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_taken_output_folders_are_refused(tmp_path, a_cohort):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OnfhError, match="cannot write"):
        write_cohort(blocker / "out", cases=1, seed=1, **TINY)
    with pytest.raises(OnfhError, match="not a folder"):
        write_cohort(blocker, cases=1, seed=1, **TINY)
    root, _ = a_cohort
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(OnfhError, match="already holds a data set"):
        write_cohort(root, cases=1, seed=2, **TINY)
    assert sorted(p.name for p in root.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_failure_mid_way_leaves_no_partial_output(tmp_path):
    target = tmp_path / "out"

    def stop(done, total, row):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_cohort(target, cases=3, seed=1, progress=stop, **TINY)
    assert list(tmp_path.iterdir()) == []


def test_existing_empty_folder_is_filled(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    write_cohort(target, cases=1, seed=3, **TINY)
    assert sorted(p.name for p in target.iterdir()) == ["cases.csv", "dataset.json", "imagesTr", "labelsTr"]


def test_command_line_writes_previews_and_reports_bad_arguments(tmp_path, capsys):
    target = tmp_path / "cli"
    code = main(
        [
            "synth",
            str(target),
            "--cases",
            "1",
            "--seed",
            "4",
            "--spacing",
            "1.8",
            "1.8",
            "1.8",
            "--size",
            "80",
            "80",
            "56",
            "--preview",
        ]
    )
    assert code == 0
    assert (target / "previews" / "synth_000.png").stat().st_size > 10_000
    assert "wrote 1 synthetic cases" in capsys.readouterr().out
    for arguments, message in (
        (["--cases", "0"], "--cases"),
        (["--cases", "1", "--spacing", "0.7", "-0.7", "1"], "spacing"),
        (["--cases", "1", "--orientation", "sideways"], "--orientation must be one of"),
    ):
        code = main(["synth", str(tmp_path / "bad"), *arguments])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert err.startswith("onfh: error:") and message in err and "\n" not in err
    assert not (tmp_path / "bad").exists()
    code = main(["synth", str(target), "--cases", "1"])
    assert code == 2 and "already holds a data set" in capsys.readouterr().err


def test_orientation_is_asked_for_and_recorded(tmp_path, a_cohort):
    """Every case of an ``orientation`` cohort is acquired that way; the drawn mix is untouched."""
    root = tmp_path / "sagittal"
    rows = write_cohort(root, cases=2, seed=1, orientation="sagittal", **TINY)
    assert [row["orientation"] for row in rows] == ["sagittal", "sagittal"]
    assert json.loads((root / "dataset.json").read_text())["orientation"] == "sagittal"
    for case in list_cases(root):
        direction = np.abs(np.reshape(sitk.ReadImage(str(case.image_path)).GetDirection(), (3, 3)))
        assert direction[0, 2] == pytest.approx(1.0)  # slices run left-right
    drawn_root, drawn_rows = a_cohort
    assert {row["orientation"] for row in drawn_rows} <= {"axial", "coronal", "oblique"}
    assert json.loads((drawn_root / "dataset.json").read_text())["orientation"] == "drawn per case"


def test_head_diameters_are_drawn_from_the_asked_range_and_nothing_else_changes(tmp_path):
    root, wide = tmp_path / "large", {"spacing_mm": (2.4, 2.4, 2.4), "size": (80, 80, 64)}
    rows = write_cohort(root, cases=3, seed=1, head_diameter_mm=(55.0, 58.0), **wide)
    drawn_rows = write_cohort(tmp_path / "drawn", cases=3, seed=1, **wide)
    for row, drawn in zip(rows, drawn_rows):
        assert 55.0 <= float(row["head_diameter_mm"]) <= 58.0
        assert not 55.0 <= float(drawn["head_diameter_mm"]) <= 58.0
        assert (row["orientation"], row["laterality"], row["snr"]) == (
            drawn["orientation"],
            drawn["laterality"],
            drawn["snr"],
        )
    assert json.loads((root / "dataset.json").read_text())["head_diameter_mm"] == [55.0, 58.0]


def test_lesion_shape_is_asked_for_and_recorded(tmp_path, a_cohort):
    root = tmp_path / "lobed"
    rows = write_cohort(root, cases=2, seed=1, lesion_shape="lobed", **TINY)
    assert [row["lesion_shape"] for row in rows] == ["lobed", "lobed"]
    assert json.loads((root / "dataset.json").read_text())["lesion_shape"] == "lobed"
    assert json.loads((root / "dataset.json").read_text())["collapse_mm"] == 0.0
    drawn_root, _ = a_cohort
    assert json.loads((drawn_root / "dataset.json").read_text())["lesion_shape"] == "cap or wedge (drawn)"
