"""One synthetic case (onfh.synthetic.generate_case): labels, metadata, geometry, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from onfh.grading import grade_label_map
from onfh.synthetic import generate_case

SMALL = {"spacing_mm": (1.5, 1.5, 1.5), "size": (96, 96, 72)}


def _arrays(case):
    return sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)


@pytest.fixture(scope="module")
def a_case():
    return generate_case(3, **SMALL)


def test_label_is_on_the_image_grid_with_values_0_1_2(a_case):
    image, label = a_case.image, a_case.label
    assert label.GetSize() == image.GetSize()
    assert label.GetOrigin() == image.GetOrigin()
    assert label.GetSpacing() == image.GetSpacing()
    assert label.GetDirection() == image.GetDirection()
    assert label.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(label))) == {0, 1, 2}


def test_metadata_matches_label_voxels_exactly(a_case):
    _, label = _arrays(a_case)
    voxel_mm3 = float(np.prod(a_case.image.GetSpacing()))
    head_voxels = int(np.count_nonzero(label))
    necrosis_voxels = int(np.count_nonzero(label == 2))
    info = a_case.info
    assert info["head_volume_ml"] == pytest.approx(head_voxels * voxel_mm3 / 1000.0, rel=1e-12)
    assert info["necrosis_volume_ml"] == pytest.approx(necrosis_voxels * voxel_mm3 / 1000.0, rel=1e-12)
    result = grade_label_map(label, a_case.image.GetSpacing())
    assert info["ratio"] == result.ratio == necrosis_voxels / head_voxels
    assert info["grade"] == result.grade
    assert info["spacing_mm"] == list(a_case.image.GetSpacing())
    assert info["laterality"] in ("left", "right")
    assert {"tr_ms", "te_ms", "flip_deg", "field_strength_t"} <= set(info["protocol"])
    assert json.loads(json.dumps(info)) == info  # plain JSON types only


def test_head_volume_is_a_42_to_50_mm_head_and_ratio_hits_the_target():
    case = generate_case(
        8, ratio=0.22, head_diameter_mm=46.0, spacing_mm=(1.0, 1.0, 1.0), size=(120, 120, 100)
    )
    sphere_ml = 4.0 / 3.0 * np.pi * 23.0**3 / 1000.0
    # Head label = head bone proximal to the head-neck junction: most of the sphere.
    assert 0.8 * sphere_ml < case.info["head_volume_ml"] < 1.02 * sphere_ml
    head_voxels = case.info["head_volume_ml"] * 1000.0
    assert case.info["ratio"] == pytest.approx(0.22, abs=1.0 / head_voxels + 1e-9)
    assert case.info["grade"] == "B"


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_lesion_is_superior_within_the_head(seed):
    case = generate_case(seed, ratio=0.2, **SMALL)
    label = sitk.GetArrayFromImage(case.label)
    points = {}
    for name, mask in (("head", label > 0), ("necrosis", label == 2)):
        zyx = np.argwhere(mask).mean(axis=0)
        points[name] = np.asarray(
            case.label.TransformContinuousIndexToPhysicalPoint(tuple(zyx[::-1].tolist()))
        )
    # World z is superior (LPS); anterosuperior lesions sit above the head's centroid.
    assert points["necrosis"][2] > points["head"][2] + 3.0
    # Every necrosis voxel is part of the head label by construction of the file (2 within {1, 2}),
    # and the lesion touches normal head bone (it is not the whole head).
    assert np.count_nonzero(label == 1) > np.count_nonzero(label == 2)


def test_same_seed_same_bytes_other_seed_other_case():
    first, second = generate_case(21, **SMALL), generate_case(21, **SMALL)
    for a, b in zip(_arrays(first), _arrays(second)):
        assert a.tobytes() == b.tobytes()
    assert first.info == second.info
    assert first.image.GetDirection() == second.image.GetDirection()
    other = generate_case(22, **SMALL)
    assert _arrays(other)[0].tobytes() != _arrays(first)[0].tobytes()


def test_override_changes_only_its_choice():
    base = generate_case(30, **SMALL)
    moved = generate_case(30, snr=45.0, **SMALL)
    assert moved.info["snr"] == 45.0
    assert moved.info["protocol"] == base.info["protocol"]
    assert moved.info["head_diameter_mm"] == base.info["head_diameter_mm"]
    assert np.array_equal(_arrays(moved)[1], _arrays(base)[1])


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal", "oblique"])
def test_direction_matrix_round_trips_through_nifti(orientation, tmp_path):
    determinants = set()
    for seed in (40, 41, 42, 43):
        case = generate_case(seed, orientation=orientation, **SMALL)
        direction = np.asarray(case.image.GetDirection()).reshape(3, 3)
        assert np.allclose(direction @ direction.T, np.eye(3), atol=1e-9)
        determinants.add(round(float(np.linalg.det(direction))))
        if orientation == "axial":
            assert np.allclose(np.abs(direction), np.eye(3))
        elif orientation == "coronal":
            # The slice axis (third column) runs anterior-posterior.
            assert abs(direction[1, 2]) == pytest.approx(1.0)
        elif orientation == "sagittal":
            # Slices run left-right, rows anterior-posterior, columns superior-inferior.
            assert np.allclose(np.abs(direction), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
        else:
            assert not np.allclose(np.abs(direction), np.round(np.abs(direction)), atol=1e-3)
        for image, name in ((case.image, f"{seed}.nii.gz"), (case.label, f"{seed}_label.nii.gz")):
            sitk.WriteImage(image, str(tmp_path / name))
            back = sitk.ReadImage(str(tmp_path / name))
            assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-5)
            assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-3)
            assert np.allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-6)
            assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
        # The head sits at the same physical place once read back.
        back = sitk.ReadImage(str(tmp_path / f"{seed}_label.nii.gz"))
        zyx = tuple(np.argwhere(sitk.GetArrayFromImage(back) > 0).mean(axis=0)[::-1].tolist())
        centre_back = back.TransformContinuousIndexToPhysicalPoint(zyx)
        assert np.allclose(centre_back, case.label.TransformContinuousIndexToPhysicalPoint(zyx), atol=1e-3)
    # Both handednesses (an axis flipped or not) are exercised and survive the NIfTI header.
    assert determinants == {-1, 1}


def test_both_sides_and_bilateral_field_of_view():
    left = generate_case(50, side="left", **SMALL)
    right = generate_case(50, side="right", **SMALL)
    assert (left.info["laterality"], right.info["laterality"]) == ("left", "right")
    both = generate_case(50, bilateral=True, spacing_mm=(3.0, 3.0, 2.0), size=(128, 128, 64))
    heads = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.Cast(both.label > 0, sitk.sitkUInt8)))
    assert heads.max() == 2
    hips = both.info["hips"]
    assert {hip["side"] for hip in hips} == {"left", "right"}
    assert sum(hip["head_volume_ml"] for hip in hips) == pytest.approx(both.info["head_volume_ml"], rel=1e-9)


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown generate_case option"):
        generate_case(1, colour="red", **SMALL)
    with pytest.raises(ValueError, match="spacing"):
        generate_case(1, spacing_mm=(0.7, -1.0, 1.0), size=(96, 96, 72))
    with pytest.raises(ValueError, match="too small"):
        generate_case(1, spacing_mm=(0.5, 0.5, 0.5), size=(64, 64, 64))


def test_a_tilted_bilateral_slab_too_thin_for_both_heads_is_planned_on_the_body_axes():
    """Case 3 of cohort seed 3100 draws an oblique 120 mm slab that cannot hold two heads
    ~200 mm apart; it used to stop the whole `onfh synth --bilateral` run."""
    from onfh.synthetic.cohort import case_seed
    from onfh.synthetic.phantom import untilted

    tilted = np.array([[0.94, -0.2, 0.27], [0.25, 0.96, -0.1], [-0.24, 0.16, 0.96]])
    assert np.array_equal(untilted(tilted), np.eye(3))
    case = generate_case(case_seed(3100, 3), (1.4, 1.4, 1.0), (256, 256, 120), True)
    direction = np.asarray(case.info["direction"]).reshape(3, 3)
    assert np.array_equal(np.abs(direction), np.abs(np.round(direction)))  # axis-aligned
    assert case.info["orientation"] in ("axial", "coronal")
    heads = sitk.GetArrayFromImage(sitk.ConnectedComponent(case.label > 0))
    assert heads.max() == 2  # both heads inside the field of view


@pytest.mark.parametrize("shape", ["ellipsoid", "lobed"])
def test_probe_lesions_hit_the_ratio_and_lie_under_the_articular_surface(shape):
    case = generate_case(5, ratio=0.25, lesion_shape=shape, **SMALL)
    assert case.info["lesion_shape"] == shape
    label = sitk.GetArrayFromImage(case.label)
    head, necrosis = label > 0, label == 2
    assert case.info["ratio"] == pytest.approx(0.25, abs=1.0 / np.count_nonzero(head) + 1e-9)
    # The lesion reaches the head's edge: some necrosis voxel has a non-head face neighbour.
    outside = np.zeros_like(head)
    for axis in range(3):
        for step in (1, -1):
            outside |= np.roll(~head, step, axis=axis)
    assert np.count_nonzero(necrosis & outside) > 0.05 * np.count_nonzero(necrosis)


def test_a_lobed_lesion_changes_only_the_lesion_of_its_seed():
    single = generate_case(5, ratio=0.25, lesion_shape="ellipsoid", **SMALL)
    lobed = generate_case(5, ratio=0.25, lesion_shape="lobed", **SMALL)
    single_label, lobed_label = (sitk.GetArrayFromImage(c.label) for c in (single, lobed))
    assert np.array_equal(single_label > 0, lobed_label > 0)  # the same head
    assert not np.array_equal(single_label == 2, lobed_label == 2)
    shared = np.count_nonzero((single_label == 2) & (lobed_label == 2))
    assert shared > 0.3 * np.count_nonzero(single_label == 2)  # the first lobe is the ellipsoid's place


def test_drawn_lesions_are_never_probe_shapes():
    assert {generate_case(seed, **SMALL).info["lesion_shape"] for seed in range(40, 46)} <= {"cap", "wedge"}


def test_a_collapsed_head_is_flattened_over_its_lesion_only():
    flat = generate_case(5, ratio=0.25, collapse_mm=5.0, **SMALL)
    round_head = generate_case(5, ratio=0.25, **SMALL)
    flat_label, round_label = (sitk.GetArrayFromImage(c.label) for c in (flat, round_head))
    assert flat.info["collapse_mm"] == 5.0 and "collapse_mm" not in round_head.info
    assert np.count_nonzero(flat_label > 0) < 0.97 * np.count_nonzero(round_label > 0)
    assert np.all(round_label[flat_label > 0] > 0)  # only taken away, never added
    removed = (round_label > 0) & (flat_label == 0)
    assert np.count_nonzero(round_label[removed] == 2) > 0.5 * np.count_nonzero(removed)  # over the lesion
    head_voxels = np.count_nonzero(flat_label > 0)
    assert flat.info["ratio"] == pytest.approx(0.25, abs=1.0 / head_voxels + 1e-9)
    with pytest.raises(ValueError, match="collapse_mm must be in"):
        generate_case(5, collapse_mm=9.0, **SMALL)
