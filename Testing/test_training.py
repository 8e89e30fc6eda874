"""Training building blocks: folds, recipe, case preparation, augmentation, loop, log.

Everything runs for real (SimpleITK, MONAI transforms, torch) on sphere phantoms built
in code; networks are tiny so the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import SimpleITK as sitk
from training_data import sphere_case, sphere_dataset

from onfh.dataset import add_case, list_cases
from onfh.errors import OnfhError
from onfh.training.augment import AugmentationSettings, PatchAugmenter
from onfh.training.folds import read_crossval_json, split_folds, training_cases, write_crossval_json
from onfh.training.recipe import TrainingRecipe, model_config

TINY = TrainingRecipe(
    iterations=6,
    batch_size=1,
    localiser_batch_size=1,
    segmenter_spacing_mm=2.5,
    patch_size=24,
    filters=(4, 8, 16),
    localiser_spacing_mm=8.0,
    localiser_size=12,
    localiser_filters=(4, 8, 16),
    jitter_mm=4.0,
    validate_every=3,
    checkpoint_every=3,
)


# ---------------------------------------------------------------- folds


def test_split_folds_covers_every_case_once_with_balanced_sizes():
    ids = [f"c{i:02d}" for i in range(10)]
    split = split_folds(ids, 4, seed=3)
    assert sorted(c for fold in split for c in fold) == ids
    assert sorted(len(fold) for fold in split) == [2, 2, 3, 3]
    for k, fold in enumerate(split):
        assert set(training_cases(split, k)) == set(ids) - set(fold)


def test_split_folds_is_deterministic_and_order_independent():
    ids = [f"c{i:02d}" for i in range(12)]
    assert split_folds(ids, 4, seed=1) == split_folds(list(reversed(ids)), 4, seed=1)
    assert split_folds(ids, 4, seed=1) != split_folds(ids, 4, seed=2)


@pytest.mark.parametrize(("cases", "folds"), [(3, 4), (5, 1)])
def test_split_folds_rejects_impossible_requests(cases, folds):
    with pytest.raises(OnfhError, match="folds"):
        split_folds([f"c{i}" for i in range(cases)], folds, seed=0)


def test_crossval_json_round_trip(tmp_path):
    split = split_folds([f"c{i}" for i in range(6)], 3, seed=0)
    path = write_crossval_json(tmp_path / "m", tmp_path / "data", split)
    content = json.loads(path.read_text())
    assert content["dataset"] == str((tmp_path / "data").resolve())
    assert content["folds"] == {str(k): fold for k, fold in enumerate(split)}
    assert read_crossval_json(tmp_path / "m") == (str((tmp_path / "data").resolve()), split)


# ---------------------------------------------------------------- recipe


def test_default_recipe_is_a_valid_model_json_with_the_reference_segmenter():
    from onfh.modelfolder import validate_config
    from onfh.network import build_model

    config = model_config(TrainingRecipe().validated())
    validate_config({**config, "id": "x"}, "recipe", require_sha256=False)
    segmenter = config["segmenter"]["network"]
    assert segmenter["strides"] == [1, 2, 2, 2, 2] and segmenter["kernel_size"] == [3] * 5
    assert segmenter["out_channels"] == 3 and config["localiser"]["network"]["out_channels"] == 2
    model = build_model(config)
    assert {k.split(".")[0] for k in model.state_dict()} == {"localiser", "segmenter"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"patch_size": 20}, "multiple of 16"),
        ({"filters": (8, 16)}, "at least 3"),
        ({"iterations": 0}, "iterations"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"learning_rate": float("nan")}, "learning-rate"),
    ],
)
def test_recipe_rejects_bad_values(change, message):
    with pytest.raises(OnfhError, match=message):
        TrainingRecipe().replace(**change).validated()


# ---------------------------------------------------------------- data


@pytest.fixture
def a_dataset(tmp_path):
    return sphere_dataset(tmp_path / "data", cases=4, seed=1)


def test_prepared_case_feeds_exactly_what_inference_feeds(a_dataset):
    from onfh.preprocessing import label_centroid_mm, localiser_input, segmenter_crop
    from onfh.training.data import prepare_case, read_case

    config = model_config(TINY)
    files = list_cases(a_dataset)[0]
    case = prepare_case(files, config, region_voxels=40)
    image, label = read_case(files)
    expected_crop, _ = segmenter_crop(image, label_centroid_mm(label).tolist(), config)
    expected_localiser, _ = localiser_input(image, config)
    assert len(case.heads) == 1
    head = case.heads[0]
    np.testing.assert_array_equal(head.crop_image, expected_crop)
    np.testing.assert_array_equal(case.localiser_image, expected_localiser)
    assert head.image.shape == (1, 40, 40, 40) and head.label.shape == head.image.shape
    assert set(np.unique(head.crop_label)) == {0, 1, 2}
    assert case.localiser_label.any() and set(np.unique(case.localiser_label)) <= {0, 1}
    # The region is centred on the head: its label centroid sits at the array centre.
    centroid = np.argwhere(head.label[0] > 0).mean(axis=0)
    np.testing.assert_allclose(centroid, [19.5] * 3, atol=1.0)


def test_cases_prepared_in_processes_equal_those_prepared_one_by_one(a_dataset):
    from onfh.training.data import prepare_cases

    config = model_config(TINY)
    cases = list_cases(a_dataset)
    messages = []
    serial = prepare_cases(cases, config, 32)
    parallel = prepare_cases(cases, config, 32, report=messages.append, processes=2)
    assert list(parallel) == list(serial) == [c.case_id for c in cases]
    assert messages[-1].startswith(f"prepared {len(cases)}/{len(cases)} cases")
    for case_id, case in serial.items():
        other = parallel[case_id]
        np.testing.assert_array_equal(other.localiser_image, case.localiser_image)
        assert len(other.heads) == len(case.heads)
        for mine, theirs in zip(case.heads, other.heads):
            np.testing.assert_array_equal(theirs.image, mine.image)
            np.testing.assert_array_equal(theirs.label, mine.label)


def test_bilateral_case_gives_one_region_per_head(tmp_path):
    from onfh.training.data import prepare_case

    image, label = sphere_case(np.random.default_rng(0), bilateral=True)
    files = add_case(tmp_path / "d", "both", image, label)
    case = prepare_case(files, model_config(TINY), region_voxels=32)
    assert len(case.heads) == 2
    distance = np.linalg.norm(case.heads[0].centre_mm - case.heads[1].centre_mm)
    assert 55 < distance < 90  # the heads are ~72 mm apart


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("value_3", "label values must be 0, 1, 2"),
        ("empty", "no femoral head"),
        ("moved", "geometry"),
    ],
)
def test_read_case_refuses_bad_labels_naming_the_file(tmp_path, edit, message):
    from onfh.training.data import read_case

    image, label = sphere_case(np.random.default_rng(0))
    array = sitk.GetArrayFromImage(label)
    if edit == "value_3":
        array[array == 2] = 3
    elif edit == "empty":
        array[:] = 0
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    if edit == "moved":
        bad.SetOrigin((0.0, 0.0, 0.0))
    files = add_case(tmp_path / "d", "bad", image, bad)
    with pytest.raises(OnfhError, match=message) as error:
        read_case(files)
    assert str(files.label_path) in str(error.value)


# ---------------------------------------------------------------- augmentation


def _region(rng):
    image = rng.normal(100, 20, (1, 30, 30, 30)).astype(np.float32)
    label = np.zeros((1, 30, 30, 30), dtype=np.uint8)
    label[:, 10:20, 10:20, 10:20] = 1
    label[:, 10:14, 10:20, 10:20] = 2
    inside = np.ones_like(label)
    return image, label, inside


def _normalise(array):
    from onfh.preprocessing import normalise_intensity
    from onfh.training.recipe import DEFAULT_INTENSITY

    return normalise_intensity(array, DEFAULT_INTENSITY)


def test_augmenter_without_changes_returns_the_normalised_centre_crop():
    image, label, inside = _region(np.random.default_rng(0))
    augmenter = PatchAugmenter([20, 20, 20], [0, 0, 0], AugmentationSettings.none(), _normalise)
    patch, patch_label = augmenter(image, label, inside, seed=5)
    np.testing.assert_allclose(patch, _normalise(image[:, 5:25, 5:25, 5:25]), atol=1e-5)
    np.testing.assert_array_equal(patch_label, label[:, 5:25, 5:25, 5:25])


def test_augmenter_is_deterministic_per_seed_and_keeps_label_values():
    image, label, inside = _region(np.random.default_rng(0))
    augmenter = PatchAugmenter([16, 16, 16], [3, 3, 3], AugmentationSettings(), _normalise)
    first = augmenter(image, label, inside, seed=11)
    again = augmenter(image, label, inside, seed=11)
    other = augmenter(image, label, inside, seed=12)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    for seed in range(6):
        patch, patch_label = augmenter(image, label, inside, seed=seed)
        assert patch.shape == (1, 16, 16, 16) and patch.dtype == np.float32
        assert np.isfinite(patch).all()
        assert set(np.unique(patch_label)) <= {0, 1, 2}


def test_augmenter_marks_outside_the_scan_with_the_lowest_value():
    image, label, _ = _region(np.random.default_rng(0))
    inside = np.ones_like(label)
    inside[:, :, :, :15] = 0  # left half of the region lies outside the scan
    augmenter = PatchAugmenter([20, 20, 20], [0, 0, 0], AugmentationSettings.none(), _normalise)
    patch, _ = augmenter(image, label, inside, seed=0)
    masked = np.where(inside > 0, image, np.nan)[:, 5:25, 5:25, 5:25]
    np.testing.assert_allclose(patch, _normalise(masked), atol=1e-5)
    assert np.all(patch[..., :10] == patch.min())
    # Outside voxels do not enter the statistics: the inside is scaled as on its own.
    np.testing.assert_allclose(patch[..., 10:], _normalise(image[:, 5:25, 5:25, 15:25]), atol=1e-5)


# ---------------------------------------------------------------- loop and log


def test_poly_learning_rate_warms_up_then_decays_to_zero():
    from onfh.training.loop import poly_learning_rate

    rates = [poly_learning_rate(1.0, i, 100, warmup=10) for i in range(101)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[100] == 0.0


def _train(dataset, out_dir, recipe, resume=False, until=None, stream=0):
    import torch

    from onfh.network import build_model
    from onfh.training.data import prepare_cases
    from onfh.training.distributed import DistributedContext
    from onfh.training.loop import train

    config = model_config(recipe)
    prepared = list(prepare_cases(list_cases(dataset), config, 32).values())
    torch.manual_seed(0)
    model = build_model(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    return train(
        model,
        prepared[:3],
        prepared[3:],
        config,
        recipe,
        out_dir,
        device=torch.device("cpu"),
        context=DistributedContext(),
        stream=stream,
        resume=resume,
        say=lambda message: None,
        until=until,
    )


def test_resumed_training_equals_uninterrupted_training(a_dataset, tmp_path):
    import torch

    from onfh.training.history import read_log
    from onfh.training.loop import CHECKPOINT, load_checkpoint

    straight = _train(a_dataset, tmp_path / "straight", TINY)
    _train(a_dataset, tmp_path / "sliced", TINY, until=4)
    assert load_checkpoint(tmp_path / "sliced" / CHECKPOINT)["iteration"] == 4
    resumed = _train(a_dataset, tmp_path / "sliced", TINY, resume=True)
    assert straight.iterations == resumed.iterations == TINY.iterations
    expected = straight.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    rows = read_log(tmp_path / "sliced" / "training_log.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, TINY.iterations + 1))
    assert set(resumed.validation) == {"head", "necrosis", "localiser_error_mm"}
    assert 0.0 <= resumed.validation["head"] <= 1.0 and 0.0 <= resumed.validation["necrosis"] <= 1.0
    assert resumed.validation["localiser_error_mm"] >= 0.0
    assert (tmp_path / "sliced" / "learning_curve.png").stat().st_size > 10_000


def test_localisation_error_is_the_distance_to_the_nearest_true_head():
    from onfh.training.loop import localisation_error_mm

    truth = np.zeros((10, 20, 30), dtype=bool)
    truth[2:6, 2:6, 2:6] = True  # centre (3.5, 3.5, 3.5) voxels
    truth[2:6, 2:6, 20:24] = True  # centre (3.5, 3.5, 21.5): a second (bilateral) head
    predicted = np.zeros_like(truth)
    predicted[3:7, 2:6, 21:25] = True  # the second head moved by one voxel in z and x
    predicted[0, 0, 0] = True  # a speck: not the largest component, ignored
    spacing_zyx_mm = [5.0, 4.0, 2.0]
    expected = float(np.hypot(1 * 5.0, 1 * 2.0))
    assert localisation_error_mm(predicted, truth, spacing_zyx_mm) == pytest.approx(expected)
    assert localisation_error_mm(np.zeros_like(truth), truth, spacing_zyx_mm) == float("inf")


def test_resume_refuses_a_checkpoint_of_another_network(a_dataset, tmp_path):
    _train(a_dataset, tmp_path / "run", TINY, until=2)
    with pytest.raises(OnfhError, match="another model configuration"):
        _train(a_dataset, tmp_path / "run", TINY.replace(filters=(4, 8, 32)), resume=True)


def test_training_log_continues_after_resume_and_drops_rows_beyond_it(tmp_path):
    from onfh.training.history import TrainingLog, read_log

    log = TrainingLog(tmp_path / "log.csv")
    for iteration in range(1, 6):
        log.append(iteration=iteration, loss_segmenter=1.0 / iteration)
    TrainingLog(tmp_path / "log.csv", start_iteration=3).append(iteration=4, loss_segmenter=0.2)
    rows = read_log(tmp_path / "log.csv")
    assert [r["iteration"] for r in rows] == ["1", "2", "3", "4"]
    assert float(rows[-1]["loss_segmenter"]) == pytest.approx(0.2)
    assert rows[0]["val_dice_head"] == ""
    with pytest.raises(ValueError, match="unknown log columns"):
        log.append(iteration=9, dice=1.0)


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    import torch

    from onfh.network import build_network
    from onfh.training.loop import make_loss, make_optimiser, train_step
    from onfh.training.recipe import dynunet_config

    torch.manual_seed(0)
    network = build_network(dynunet_config((4, 8, 16), out_channels=3))
    optimiser = make_optimiser(network.parameters(), TINY.replace(learning_rate=1e-2))
    labels = torch.zeros((1, 1, 16, 16, 16), dtype=torch.int64)
    labels[..., 4:12, 4:12, 4:12] = 1
    labels[..., 4:7, 4:12, 4:12] = 2
    images = labels.float() + 0.1 * torch.randn(labels.shape)
    losses = [train_step(network, optimiser, make_loss(), images, labels) for _ in range(15)]
    assert losses[-1] < 0.7 * losses[0]


def test_model_config_keeps_the_parent_for_fine_tuning(tmp_path):
    from onfh.modelfolder import save_model_folder
    from onfh.network import build_model
    from onfh.training.trainer import TrainingPlan, _base_config

    uncertainty = {"sd_scale": 8.0, "calibration": "pooled over 66 phantoms"}
    parent_config = {
        **model_config(TINY),
        "id": "parent",
        "training": {"seed": 1},
        "uncertainty": uncertainty,
    }
    parent = save_model_folder(tmp_path / "parent", build_model(parent_config), parent_config)
    plan = TrainingPlan(
        dataset="unused",
        model_dir="unused",
        recipe=TINY.replace(filters=(8, 16, 32)),
        init_from=str(parent.path),
    )
    config, state, info = _base_config(plan)
    assert config["segmenter"]["network"]["filters"] == [4, 8, 16]  # the parent's network wins
    assert "id" not in config and "sha256" not in config and "training" not in config
    assert info["sha256"] == parent.sha256
    assert config["uncertainty"]["sd_scale"] == 8.0
    assert config["uncertainty"]["calibration"].startswith(
        "inherited from parent, not measured for this model"
    )
    assert config["uncertainty"]["calibration"].endswith("pooled over 66 phantoms")
    expected = copy.deepcopy(build_model(config).state_dict())
    assert set(state) == set(expected)
