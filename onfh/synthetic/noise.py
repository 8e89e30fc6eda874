"""Scanner imperfections: receive-coil bias field, Rician noise, intensity scaling.

A model trained on phantoms must not rely on absolute intensities or a flat field, so every
case gets a smooth multiplicative bias (a log-quadratic field of +-20-40 %), magnitude
noise with the Rician floor of real magnitude images, and a random scale and offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BiasField:
    """log(bias) = c . q(x, y, z) with q the 9 monomials of degree 1-2 of normalised indices."""

    coefficients: np.ndarray  # 9 values: x, y, z, xx, yy, zz, xy, xz, yz
    log_offset: float

    def to_dict(self) -> dict:
        """Plain values for ``info``."""
        return {
            "coefficients": [round(float(c), 5) for c in self.coefficients],
            "log_offset": self.log_offset,
        }


def _normalised_axis(n: int) -> np.ndarray:
    half = max((n - 1) / 2.0, 1.0)
    return ((np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2.0)) / np.float32(half)).astype(
        np.float32
    )


def _log_bias(coefficients: np.ndarray, x, y, z):
    c = coefficients
    return (
        c[0] * x
        + c[1] * y
        + c[2] * z
        + c[3] * x * x
        + c[4] * y * y
        + c[5] * z * z
        + c[6] * x * y
        + c[7] * x * z
        + c[8] * y * z
    )


def sample_bias(rng: np.random.Generator) -> BiasField:
    """A random smooth field varying by +-A about its mid value, A in [0.2, 0.4].

    Max/min across the volume is (1 + A) / (1 - A) (log-symmetric), like the surface-coil
    shading of a hip field of view. The field lives on normalised image coordinates, so it
    spans any grid.
    """
    coefficients = rng.normal(size=9)
    coefficients[3:] *= 0.6
    grid = np.linspace(-1.0, 1.0, 9)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    values = _log_bias(coefficients, x, y, z)
    span = float(values.max() - values.min())
    amplitude = rng.uniform(0.2, 0.4)
    target_span = np.log((1.0 + amplitude) / (1.0 - amplitude))
    coefficients = coefficients * (target_span / max(span, 1e-6))
    values = _log_bias(coefficients, x, y, z)
    return BiasField(coefficients, float(-0.5 * (values.max() + values.min())))


def apply_bias(signal: np.ndarray, bias: BiasField) -> None:
    """Multiply a (z, y, x) array by the bias field, in place (separable evaluation)."""
    nz, ny, nx = signal.shape
    x = _normalised_axis(nx)[None, :]
    y = _normalised_axis(ny)[:, None]
    z = _normalised_axis(nz)
    c = bias.coefficients.astype(np.float32)
    in_plane = (
        (c[0] * x + c[3] * x * x) + (c[1] * y + c[4] * y * y) + c[6] * x * y + np.float32(bias.log_offset)
    )
    slope = c[7] * x + c[8] * y  # multiplies z
    for k in range(nz):
        zk = z[k]
        field = in_plane + zk * slope + (c[2] * zk + c[5] * zk * zk)
        signal[k] *= np.exp(field)


def point_spread(signal: np.ndarray, weight: float) -> None:
    """Blur in place with the 3-tap kernel [w, 1 - 2w, w] along each axis (finite k-space).

    A scan's point-spread function is wider than a voxel; phantoms without it would teach a
    model edges sharper than any scanner delivers.
    """
    if weight <= 0:
        return
    w, centre = np.float32(weight), np.float32(1.0 - 2.0 * weight)
    for axis in range(signal.ndim):
        moved = np.moveaxis(signal, axis, 0)
        previous = moved[:-2].copy()
        following = moved[2:]
        interior = moved[1:-1]
        previous += following
        previous *= w
        interior *= centre
        interior += previous


def add_rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise: sqrt((S + n1)^2 + n2^2)."""
    real = rng.standard_normal(signal.shape, dtype=np.float32)
    real *= np.float32(sigma)
    real += signal
    np.square(real, out=real)
    imag = rng.standard_normal(signal.shape, dtype=np.float32)
    imag *= np.float32(sigma)
    np.square(imag, out=imag)
    real += imag
    return np.sqrt(real, out=real)


def to_scanner_units(signal: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Scale and offset into int16 scanner units, as a DICOM or NIfTI export would store them."""
    out = signal * np.float32(scale)
    out += np.float32(offset)
    np.rint(out, out=out)
    np.clip(out, -32768, 32767, out=out)
    return out.astype(np.int16)
