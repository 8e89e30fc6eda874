"""The "Synthetic ONFH hip" sample: a phantom MRI generated locally, cached on disk.

No public hip MRI with femoral head and necrosis labels exists (DOMAIN.md), so the
Sample Data entry of the Slicer extension is made by ``onfh.synthetic`` on the user's
machine instead of being downloaded. The files go into a folder the caller chooses
(Slicer's download cache), named after the generator version and seed, so a later
``onfh`` with a different generator never serves a stale phantom under the same name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from onfh import __version__
from onfh.imageio import write_image_atomic, write_text_atomic

SAMPLE_NAME = "Synthetic ONFH hip"
SAMPLE_NODE_NAME = "SyntheticONFHHip"
SAMPLE_CATEGORY = "ONFH"
SAMPLE_SEED = 2
"""Fixed seed: everyone gets the same phantom (a right hip, grade B, ratio about 0.20)."""


@dataclass(frozen=True)
class SampleFiles:
    """Where one generated sample lives: the MRI, its exact labels, its true measures."""

    image_path: Path
    truth_path: Path
    info_path: Path

    def complete(self) -> bool:
        """True when all three files exist (each is written atomically)."""
        return all(p.is_file() for p in (self.image_path, self.truth_path, self.info_path))


def sample_files(
    cache_dir: str | os.PathLike,
    seed: int = SAMPLE_SEED,
    size: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
) -> SampleFiles:
    """The file names of a sample in ``cache_dir`` (nothing is generated).

    Names carry the ``onfh`` version and seed, plus size and spacing when not default.
    """
    stem = f"{SAMPLE_NODE_NAME}-v{__version__}-seed{seed}"
    if size is not None:
        stem += "-" + "x".join(str(int(n)) for n in size)
    if spacing_mm is not None:
        stem += "-" + "x".join(f"{s:g}" for s in spacing_mm) + "mm"
    root = Path(cache_dir)
    return SampleFiles(root / f"{stem}.nrrd", root / f"{stem}-truth.seg.nrrd", root / f"{stem}-truth.json")


def synthetic_hip(
    cache_dir: str | os.PathLike,
    seed: int = SAMPLE_SEED,
    size: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
) -> SampleFiles:
    """Generate the sample hip MRI into ``cache_dir`` unless it is already there.

    Args:
        cache_dir: folder for the files (created if missing).
        seed: phantom seed; the default gives the published sample.
        size: voxels (x, y, z); ``None`` uses the generator's default (a full-size scan).
        spacing_mm: voxel spacing; ``None`` uses the generator's default.

    Returns:
        The paths of the MRI (``.nrrd``), the exact labels (``-truth.seg.nrrd``, with
        "Femoral head" and "Necrosis" segments) and the true volumes, ratio and grade
        (``-truth.json``).
    """
    files = sample_files(cache_dir, seed, size, spacing_mm)
    if files.complete():
        return files
    from onfh.segfile import write_seg_nrrd
    from onfh.synthetic import generate_case

    options = {}
    if size is not None:
        options["size"] = tuple(int(n) for n in size)
    if spacing_mm is not None:
        options["spacing_mm"] = tuple(float(s) for s in spacing_mm)
    case = generate_case(seed, **options)
    info = {"sample": SAMPLE_NAME, "seed": seed, "onfh_version": __version__, **dict(case.info)}
    # Image last: a crash mid-way leaves an incomplete set, which is regenerated next time.
    write_seg_nrrd(case.label, files.truth_path)
    write_text_atomic(files.info_path, json.dumps(info, indent=2, default=str) + "\n")
    write_image_atomic(case.image, files.image_path)
    return files
