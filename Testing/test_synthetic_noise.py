"""Scanner imperfections of the phantoms (onfh.synthetic.noise): Rician noise, bias, units."""

from __future__ import annotations

import numpy as np
import pytest

from onfh.synthetic.noise import add_rician_noise, apply_bias, point_spread, sample_bias, to_scanner_units


def test_rician_noise_has_a_rayleigh_floor_and_unbiased_bright_signal():
    rng = np.random.default_rng(0)
    sigma = 2.0
    background = add_rician_noise(np.zeros((20, 50, 50), dtype=np.float32), sigma, rng)
    # Magnitude of pure complex noise is Rayleigh: mean sigma * sqrt(pi / 2), never negative.
    assert background.min() >= 0.0
    assert background.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)
    bright = add_rician_noise(np.full((20, 50, 50), 100.0, dtype=np.float32), sigma, rng)
    assert bright.mean() == pytest.approx(100.0 + sigma**2 / 200.0, rel=1e-3)
    assert bright.std() == pytest.approx(sigma, rel=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_bias_field_is_smooth_positive_and_within_20_to_40_percent(seed):
    bias = sample_bias(np.random.default_rng(seed))
    field = np.ones((40, 64, 64), dtype=np.float32)
    apply_bias(field, bias)
    assert field.min() > 0
    ratio = field.max() / field.min()
    # +-A about the middle with A in [0.2, 0.4]: max/min between 1.5 and 2.33 (sampled grid).
    assert 1.3 < ratio <= (1.4 / 0.6) * 1.001
    # Smooth: neighbouring voxels differ by well under a per cent.
    assert np.abs(np.diff(field, axis=2)).max() < 0.02 * field.mean()


def test_scanner_units_round_and_clip_to_int16():
    values = np.array([[[0.0, 0.5, 1.0, 1000.0]]], dtype=np.float32)
    out = to_scanner_units(values, scale=100.0, offset=3.0)
    assert out.dtype == np.int16
    assert out.ravel().tolist() == [3, 53, 103, 32767]


def test_point_spread_blurs_an_edge_and_keeps_flat_regions():
    step = np.zeros((8, 8, 16), dtype=np.float32)
    step[..., 8:] = 1.0
    blurred = step.copy()
    point_spread(blurred, 0.15)
    # Flat regions stay flat (the kernel sums to one); the edge spreads over its neighbours.
    assert np.allclose(blurred[2:-2, 2:-2, 2:6], 0.0) and np.allclose(blurred[2:-2, 2:-2, 10:14], 1.0)
    assert blurred[4, 4, 7] == pytest.approx(0.15) and blurred[4, 4, 8] == pytest.approx(0.85)
    untouched = step.copy()
    point_spread(untouched, 0.0)
    assert np.array_equal(untouched, step)
