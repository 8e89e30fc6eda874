"""Tissue signal of a 3D spoiled gradient echo (SPGR) acquisition.

S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2*), E1 = exp(-TR / T1)
(DOMAIN.md). Tissue parameters are ranges, randomised per case, so the model sees many
contrasts; the default protocol and mid-range tissues give the textbook T1-weighted look:
fat > fatty marrow > necrotic core > muscle > reactive band > cortex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Protocol:
    """Acquisition parameters of one synthetic scan."""

    field_strength_t: float
    tr_ms: float
    te_ms: float
    flip_deg: float

    def to_dict(self) -> dict:
        """Plain values for ``info`` and ``cases.csv``."""
        return {
            "field_strength_t": self.field_strength_t,
            "tr_ms": round(self.tr_ms, 3),
            "te_ms": round(self.te_ms, 3),
            "flip_deg": round(self.flip_deg, 3),
        }


DEFAULT_PROTOCOL = Protocol(field_strength_t=3.0, tr_ms=20.0, te_ms=2.3, flip_deg=20.0)


@dataclass(frozen=True)
class TissueRange:
    """Ranges of proton density, T1 at 3 T, T2* at 3 T (ms); T1 scales down at 1.5 T."""

    pd: tuple[float, float]
    t1_ms: tuple[float, float]
    t2s_ms: tuple[float, float]
    t1_scale_15t: float  # T1(1.5 T) / T1(3 T)


# DOMAIN.md table; pelvic (mixed) marrow, labral fibrocartilage and blood added.
TISSUES: dict[str, TissueRange] = {
    "fat": TissueRange((0.95, 1.0), (350.0, 390.0), (50.0, 70.0), 0.75),
    "marrow": TissueRange((0.92, 0.97), (340.0, 390.0), (8.0, 15.0), 0.75),
    "pelvic_marrow": TissueRange((0.85, 0.92), (480.0, 650.0), (8.0, 14.0), 0.75),
    "muscle": TissueRange((0.75, 0.85), (1300.0, 1550.0), (25.0, 30.0), 0.75),
    "cartilage": TissueRange((0.7, 0.8), (1100.0, 1350.0), (18.0, 25.0), 0.8),
    "fluid": TissueRange((0.97, 1.0), (3200.0, 4000.0), (300.0, 500.0), 0.85),
    "cortex": TissueRange((0.1, 0.2), (220.0, 280.0), (0.4, 0.5), 0.85),
    "necrotic_core": TissueRange((0.85, 0.93), (420.0, 520.0), (9.0, 13.0), 0.75),
    "band": TissueRange((0.5, 0.6), (1250.0, 1600.0), (5.0, 8.0), 0.75),
    "oedema": TissueRange((0.82, 0.88), (1100.0, 1300.0), (18.0, 22.0), 0.75),
    "fibrocartilage": TissueRange((0.3, 0.4), (900.0, 1100.0), (3.0, 5.0), 0.8),
    "blood": TissueRange((0.85, 0.95), (1550.0, 1750.0), (30.0, 50.0), 0.8),
    "air": TissueRange((0.0, 0.0), (1000.0, 1000.0), (1.0, 1.0), 1.0),
}

TISSUE_IDS = {name: index for index, name in enumerate(TISSUES)}


@dataclass(frozen=True)
class TissueParams:
    """One tissue's parameters for one scan."""

    pd: float
    t1_ms: float
    t2s_ms: float


def spgr_signal(pd: float, t1_ms: float, t2s_ms: float, protocol: Protocol) -> float:
    """Steady-state SPGR signal of one tissue (arbitrary units, PD = 1 -> at most ~0.3)."""
    if pd <= 0:
        return 0.0
    alpha = np.deg2rad(protocol.flip_deg)
    e1 = np.exp(-protocol.tr_ms / t1_ms)
    steady = np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1)
    return float(pd * steady * np.exp(-protocol.te_ms / t2s_ms))


def sample_protocol(rng: np.random.Generator) -> Protocol:
    """A random hip SPGR protocol: 1.5 or 3 T, TR 15-30 ms, in-phase TE, flip 15-30 degrees."""
    field = 3.0 if rng.random() < 0.6 else 1.5
    te = 4.6 if field == 1.5 else (2.3 if rng.random() < 0.7 else 4.6)
    return Protocol(field, float(rng.uniform(15.0, 30.0)), te, float(rng.uniform(15.0, 30.0)))


def _field_params(
    tissue: TissueRange, pd: float, t1_3t: float, t2s_3t: float, field_t: float
) -> TissueParams:
    if field_t < 2.0:
        # Lower field: shorter T1, longer T2* (less susceptibility dephasing).
        return TissueParams(pd, t1_3t * tissue.t1_scale_15t, t2s_3t * 1.6)
    return TissueParams(pd, t1_3t, t2s_3t)


def sample_tissues(rng: np.random.Generator, field_t: float) -> dict[str, TissueParams]:
    """Random tissue parameters within the ranges, at the given field strength."""
    out = {}
    for name, tissue in TISSUES.items():
        pd, t1, t2s = (float(rng.uniform(*r)) for r in (tissue.pd, tissue.t1_ms, tissue.t2s_ms))
        out[name] = _field_params(tissue, pd, t1, t2s, field_t)
    return out


def mid_tissues(field_t: float) -> dict[str, TissueParams]:
    """Mid-range tissue parameters (the textbook contrast used by the physics test)."""
    return {
        name: _field_params(
            tissue,
            float(np.mean(tissue.pd)),
            float(np.mean(tissue.t1_ms)),
            float(np.mean(tissue.t2s_ms)),
            field_t,
        )
        for name, tissue in TISSUES.items()
    }


def tissue_signals(tissues: dict[str, TissueParams], protocol: Protocol) -> dict[str, float]:
    """SPGR signal of every tissue under ``protocol``."""
    return {name: spgr_signal(p.pd, p.t1_ms, p.t2s_ms, protocol) for name, p in tissues.items()}
