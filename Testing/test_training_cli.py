"""``onfh train`` end to end: cross-validation folders, final model, resume, fine-tuning, DDP.

The fast tests train tiny networks for a few iterations on sphere phantoms; the slow ones
run the issue's "done when" command on ``onfh synth`` data and two gloo processes under
torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from training_data import TINY_FLAGS, sphere_dataset

from onfh.cli import main
from onfh.dataset import list_cases

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def a_dataset(tmp_path_factory):
    return sphere_dataset(tmp_path_factory.mktemp("train") / "data", cases=4, seed=2)


@pytest.fixture(scope="module")
def a_crossval(a_dataset, tmp_path_factory):
    """Two folds and the final model, 3 iterations each."""
    model_dir = tmp_path_factory.mktemp("model") / "m"
    code = main(
        ["train", str(a_dataset), "-o", str(model_dir), "--folds", "2", "--iterations", "3", *TINY_FLAGS]
    )
    assert code == 0
    return model_dir


def test_crossval_writes_fold_models_predictions_and_split(a_dataset, a_crossval):
    from onfh.modelfolder import load_model, load_model_folder

    content = json.loads((a_crossval / "crossval" / "crossval.json").read_text())
    assert content["dataset"] == str(a_dataset.resolve())
    folds = content["folds"]
    assert sorted(c for ids in folds.values() for c in ids) == [c.case_id for c in list_cases(a_dataset)]
    cases = {c.case_id: c for c in list_cases(a_dataset)}
    for k, val_ids in folds.items():
        fold_dir = a_crossval / "crossval" / f"fold_{k}"
        folder = load_model_folder(fold_dir)
        assert folder.id == f"m-fold{k}"
        training = folder.config["training"]
        assert training["fold"] == int(k) and training["validation_cases"] == val_ids
        assert set(training["cases"]).isdisjoint(val_ids) and training["iterations"] == 3
        assert load_model(folder, "cpu").segmenter is not None
        assert not (fold_dir / "checkpoint.pt").exists()
        assert (fold_dir / "learning_curve.png").is_file()
        assert len((fold_dir / "training_log.csv").read_text().splitlines()) == 1 + 3
        for case_id in val_ids:
            prediction = sitk.ReadImage(str(fold_dir / "predictions" / f"{case_id}.nii.gz"))
            image = sitk.ReadImage(str(cases[case_id].image_path))
            assert prediction.GetSize() == image.GetSize()
            np.testing.assert_allclose(prediction.GetOrigin(), image.GetOrigin(), atol=1e-4)
            np.testing.assert_allclose(prediction.GetSpacing(), image.GetSpacing(), atol=1e-6)
            assert set(np.unique(sitk.GetArrayViewFromImage(prediction))) <= {0, 1, 2}
    final = load_model_folder(a_crossval)
    assert final.id == "m" and final.config["training"]["fold"] == "all"
    assert final.config["training"]["cases"] == sorted(cases)


def test_evaluate_reads_the_crossval_folder(a_crossval, tmp_path, capsys):
    code = main(["evaluate", "--crossval", str(a_crossval), "-o", str(tmp_path / "report")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "report" / "report.json").is_file()


def test_existing_model_dir_is_never_overwritten_without_resume(a_dataset, a_crossval, capsys):
    weights = a_crossval / "model.pt"
    before = weights.stat().st_mtime_ns
    code = main(
        ["train", str(a_dataset), "-o", str(a_crossval), "--folds", "2", "--iterations", "3", *TINY_FLAGS]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "not empty" in err and len(err.strip().splitlines()) == 1
    assert weights.stat().st_mtime_ns == before


def test_resume_keeps_finished_models(a_dataset, a_crossval, capsys):
    weights = a_crossval / "crossval" / "fold_0" / "model.pt"
    before = weights.stat().st_mtime_ns
    args = ["train", str(a_dataset), "-o", str(a_crossval), "--folds", "2", "--iterations", "3", "--resume"]
    assert main([*args, "--fold", "0", *TINY_FLAGS]) == 0
    assert "already finished" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == before


def test_resume_refuses_a_changed_split(a_dataset, a_crossval, capsys):
    args = ["train", str(a_dataset), "-o", str(a_crossval), "--folds", "2", "--seed", "7", "--resume"]
    assert main([*args, "--iterations", "3", *TINY_FLAGS]) == 2
    assert "split differs" in capsys.readouterr().err


def test_init_from_fine_tunes_the_final_model_only(a_dataset, a_crossval, tmp_path):
    from onfh.modelfolder import load_model_folder

    parent = load_model_folder(a_crossval / "crossval" / "fold_0")
    out = tmp_path / "tuned"
    args = ["train", str(a_dataset), "-o", str(out), "--fold", "all", "--iterations", "2", *TINY_FLAGS]
    assert main([*args, "--init-from", str(parent.path), "--filters", "8,16,32"]) == 0
    tuned = load_model_folder(out)
    assert tuned.config["training"]["init_from"]["sha256"] == parent.sha256
    assert tuned.config["segmenter"]["network"] == parent.config["segmenter"]["network"]
    assert not (out / "crossval").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fold", "5"], "--fold 5 does not exist"),
        (["--patch-size", "22"], "multiple of 4"),
        (["--folds", "9"], "needs at least 9 cases"),
        (["--init-from", "no/such/model"], "model folder not found"),
    ],
)
def test_bad_requests_fail_in_one_line_and_write_nothing(a_dataset, tmp_path, capsys, extra, message):
    out = tmp_path / "m"
    code = main(["train", str(a_dataset), "-o", str(out), "--folds", "2", *TINY_FLAGS, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_dataset_is_reported(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nothing"), "-o", str(tmp_path / "m")]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


def _run(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, check=False)


# Synthetic hips have a 180 mm field of view: the localiser needs a wider grid than spheres.
SYNTH_FLAGS = [*TINY_FLAGS, "--localiser-size", "24", "--validate-every", "10", "--checkpoint-every", "10"]


@pytest.mark.slow
def test_issue_done_when_synth_train_evaluate(tmp_path):
    """`onfh synth d --cases 12 --seed 3 && onfh train d -o m --folds 4 --iterations 20` (tiny)."""
    data, model = tmp_path / "d", tmp_path / "m"
    synth = _run([sys.executable, "-m", "onfh", "synth", str(data), "--cases", "12", "--seed", "3"])
    assert synth.returncode == 0, synth.stderr
    command = [sys.executable, "-m", "onfh", "train", str(data), "-o", str(model), "--folds", "4"]
    train = _run([*command, "--iterations", "20", *SYNTH_FLAGS])
    assert train.returncode == 0, train.stderr[-3000:]
    split = json.loads((model / "crossval" / "crossval.json").read_text())["folds"]
    assert len(split) == 4 and sum(len(ids) for ids in split.values()) == 12
    for k, ids in split.items():
        predictions = model / "crossval" / f"fold_{k}" / "predictions"
        assert sorted(p.name for p in predictions.iterdir()) == sorted(f"{c}.nii.gz" for c in ids)
    assert (model / "model.pt").is_file() and (model / "model.json").is_file()
    evaluate = _run([sys.executable, "-m", "onfh", "evaluate", "--crossval", str(model)])
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun(a_dataset, tmp_path):
    out = tmp_path / "ddp"
    result = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "onfh",
            "train",
            str(a_dataset),
            "-o",
            str(out),
            "--folds",
            "2",
            "--fold",
            "0",
            "--iterations",
            "4",
            "--device",
            "cpu",
            *TINY_FLAGS,
            "--threads",
            "1",
        ],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from onfh.modelfolder import load_model, load_model_folder

    folder = load_model_folder(out / "crossval" / "fold_0")
    assert folder.config["training"]["processes"] == 2
    load_model(folder, "cpu")
    # Rank 0 alone wrote the log: one row per iteration, no duplicates.
    rows = (out / "crossval" / "fold_0" / "training_log.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
