"""The "Synthetic ONFH hip" Sample Data entry: generated locally, cached, exact truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.grading import grade_masks
from onfh.sampledata import SAMPLE_SEED, sample_files, synthetic_hip
from onfh.segfile import read_segmentation

# Half resolution of a real scan, same field of view: quick, still a whole hip.
SMALL = {"size": (128, 128, 60), "spacing_mm": (1.4, 1.4, 2.0)}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, synthetic_hip(cache, **SMALL)


def test_file_names_carry_version_seed_and_non_default_grid(tmp_path):
    default = sample_files(tmp_path)
    assert default.image_path.parent == tmp_path
    assert f"seed{SAMPLE_SEED}" in default.image_path.name and default.image_path.suffix == ".nrrd"
    assert default.truth_path.name.endswith("-truth.seg.nrrd")
    small = sample_files(tmp_path, **SMALL)
    assert "128x128x60" in small.image_path.name and "1.4x1.4x2mm" in small.image_path.name
    assert sample_files(tmp_path, seed=1).image_path != default.image_path
    assert not default.complete()


def test_sample_is_a_3d_mri_with_exact_truth(generated):
    _, files = generated
    assert files.complete()
    image = sitk.ReadImage(str(files.image_path))
    assert image.GetSize() == SMALL["size"]
    np.testing.assert_allclose(image.GetSpacing(), SMALL["spacing_mm"], rtol=1e-5)
    values = sitk.GetArrayFromImage(image)
    assert np.isfinite(values).all() and values.std() > 0
    truth = read_segmentation(files.truth_path, reference=image)
    assert truth.head_mask.any() and truth.necrosis_mask.any()
    assert not (truth.necrosis_mask & ~truth.head_mask).any()
    info = json.loads(files.info_path.read_text())
    assert info["seed"] == SAMPLE_SEED
    expected = grade_masks(truth.head_mask, truth.necrosis_mask, truth.spacing_mm)
    assert info["grade"] == expected.grade


def test_second_call_reuses_the_cache(generated):
    cache, files = generated
    stamps = [p.stat().st_mtime_ns for p in (files.image_path, files.truth_path, files.info_path)]
    again = synthetic_hip(cache, **SMALL)
    assert again == files
    assert [p.stat().st_mtime_ns for p in (again.image_path, again.truth_path, again.info_path)] == stamps


def test_an_incomplete_cache_is_regenerated_identically(generated, tmp_path):
    _, files = generated
    copy = sample_files(tmp_path, **SMALL)
    copy.truth_path.write_bytes(files.truth_path.read_bytes())  # image and info missing
    regenerated = synthetic_hip(tmp_path, **SMALL)
    assert regenerated.complete()
    same = sitk.GetArrayFromImage(sitk.ReadImage(str(regenerated.image_path)))
    np.testing.assert_array_equal(same, sitk.GetArrayFromImage(sitk.ReadImage(str(files.image_path))))
