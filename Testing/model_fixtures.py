"""Reusable model fixtures: analytic hip-like phantoms, a threshold "model" and a tiny trained model.

Import the fixtures into a test module with ``from model_fixtures import ...``. They
build everything in code:

- :func:`phantom`: an ellipsoidal "femoral head" (value 100) holding a ball of
  "necrosis" (value 200), sampled on a grid of any direction and spacing, with its exact
  label. Distinct semi-axes and an off-centre lesion make axis swaps and flips visible.
- :class:`ThresholdModel`: a model-agnostic stand-in for the two networks. It returns
  smooth class probabilities by thresholding its (normalised) input, so the geometry of
  inference (crop, resampling, mapping back) is tested exactly, independent of training.
- :func:`tiny_model_dir`: a session-scoped model folder of the shared design with tiny
  DynUNets trained for a few dozen steps on phantoms, for command line and IO tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

HEAD_CENTRE_MM = (14.0, -9.0, 25.0)
HEAD_SEMI_AXES_MM = (19.0, 15.0, 12.0)
NECROSIS_OFFSET_MM = (5.0, -4.0, 5.0)
NECROSIS_RADIUS_MM = 6.0


def rotation(axis: int, degrees: float) -> np.ndarray:
    """Rotation matrix about coordinate ``axis`` (0 x, 1 y, 2 z)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


DIRECTIONS = {
    "axial": np.eye(3),
    "flipped": np.diag([-1.0, -1.0, 1.0]),
    "coronal": np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    "sagittal": np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]]),
    "oblique": rotation(0, 25) @ rotation(1, -15) @ rotation(2, 40),
}


def phantom(
    direction: np.ndarray,
    spacing_mm=(0.9, 0.8, 1.2),
    size=(96, 96, 72),
    head_centre_mm=HEAD_CENTRE_MM,
    scale: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    second_head_centre_mm=None,
) -> tuple[sitk.Image, sitk.Image]:
    """An MRI-like image and its exact label (0/1/2) on a grid with ``direction``.

    The grid is centred a little away from the head so the head is not at the image centre.
    ``scale`` shrinks or grows the head and lesion (for "no hip" and size tests).
    ``second_head_centre_mm`` adds a second head with the same lesion (a bilateral scan);
    the grid is then centred between the heads.
    """
    direction = np.asarray(direction, dtype=float)
    spacing = np.asarray(spacing_mm, dtype=float)
    half = (np.asarray(size) - 1) / 2.0 * spacing
    centre = np.asarray(head_centre_mm, dtype=float)
    grid_centre = centre + np.array([-6.0, 4.0, -3.0])
    if second_head_centre_mm is not None:
        grid_centre = (centre + np.asarray(second_head_centre_mm, dtype=float)) / 2.0
    origin = grid_centre - direction @ half
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    points = origin + (index * spacing) @ direction.T
    head = np.zeros(len(points), dtype=bool)
    necrosis = np.zeros(len(points), dtype=bool)
    centres = (
        [centre] if second_head_centre_mm is None else [centre, np.asarray(second_head_centre_mm, float)]
    )
    for head_centre in centres:
        relative = (points - head_centre) / (np.asarray(HEAD_SEMI_AXES_MM) * scale)
        head |= np.sum(relative**2, axis=1) <= 1.0
        lesion_centre = head_centre + np.asarray(NECROSIS_OFFSET_MM) * scale
        necrosis |= np.linalg.norm(points - lesion_centre, axis=1) <= NECROSIS_RADIUS_MM * scale
    label = (head.astype(np.uint8) + (head & necrosis)).reshape(size).transpose(2, 1, 0)
    values = 100.0 * label.astype(np.float32) + 20.0
    if noise:
        values += np.random.default_rng(seed).normal(0.0, noise, values.shape).astype(np.float32)
    image = sitk.GetImageFromArray(values.astype(np.float32))
    label_image = sitk.GetImageFromArray(np.ascontiguousarray(label))
    for item in (image, label_image):
        item.SetSpacing(spacing.tolist())
        item.SetOrigin(origin.tolist())
        item.SetDirection(direction.ravel().tolist())
    return image, label_image


class ThresholdNetwork(torch.nn.Module):
    """Class k where the input passes the k-th threshold (fractions of its own range).

    Soft (sigmoid) edges give probabilities that vary smoothly like a real network's, so
    interpolating them is exercised. ``roll`` shifts the output (voxels, per axis) to
    imitate a localiser that is off target.
    """

    def __init__(self, thresholds: tuple[float, ...], roll: tuple[int, int, int] = (0, 0, 0)) -> None:
        super().__init__()
        self.thresholds = thresholds
        self.roll = roll

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.amin(dim=(2, 3, 4), keepdim=True)
        high = x.amax(dim=(2, 3, 4), keepdim=True)
        fraction = (x - low) / (high - low).clamp_min(1e-6)
        above = [torch.sigmoid(30.0 * (fraction - t)) for t in self.thresholds]
        upper = [*above, torch.zeros_like(fraction)]
        lower = [torch.ones_like(fraction), *above]
        probabilities = torch.cat([lo - up for lo, up in zip(lower, upper)], dim=1).clamp_min(1e-6)
        logits = torch.log(probabilities)
        if any(self.roll):
            logits = torch.roll(logits, shifts=self.roll, dims=(2, 3, 4))
        return logits


class ThresholdModel(torch.nn.Module):
    """A two-stage "model" whose stages threshold the phantom's three intensity levels."""

    def __init__(self, localiser_roll: tuple[int, int, int] = (0, 0, 0)) -> None:
        super().__init__()
        self.localiser = ThresholdNetwork((0.25,), roll=localiser_roll)
        self.segmenter = ThresholdNetwork((0.25, 0.75))


def threshold_segment(image: sitk.Image):
    """Segment ``image`` with the threshold model: ``(InferenceResult, progress stages seen)``."""
    from onfh.inference import Segmenter

    stages = []
    result = Segmenter(ThresholdModel(), threshold_model_config()).segment(
        image, progress=lambda stage, fraction: stages.append(stage)
    )
    return result, stages


def threshold_model_config(patch_size=(64, 64, 64)) -> dict:
    """The shared design's configuration with percentiles that keep all phantom levels."""
    from onfh.modelfolder import default_config

    config = default_config("threshold")
    config["intensity"].update(lower_percentile=0.0, upper_percentile=100.0)
    config["segmenter"]["patch_size"] = list(patch_size)
    return config


def tiny_config(model_id: str = "tiny-test-model") -> dict:
    """The shared design at toy size: 6 mm 16^3 localiser, 2 mm 32^3 crops, few filters."""
    from onfh.modelfolder import default_config

    config = default_config(model_id, segmenter_filters=(8, 8, 16, 16, 16))
    config["localiser"]["network"]["filters"] = [8, 8, 8, 8]
    config["localiser"]["spacing_mm"] = [6.0, 6.0, 6.0]
    config["localiser"]["input_size"] = [16, 16, 16]
    config["segmenter"]["spacing_mm"] = [2.0, 2.0, 2.0]
    config["segmenter"]["patch_size"] = [32, 32, 32]
    config["segmenter"]["crop_margin_mm"] = 4.0
    return config


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes (balances the tiny head against background)."""
    probabilities = torch.softmax(logits, dim=1)
    one_hot = torch.nn.functional.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    overlap = (probabilities * one_hot).sum(dims)
    dice = (2 * overlap + 1.0) / (probabilities.sum(dims) + one_hot.sum(dims) + 1.0)
    return 1.0 - dice[1:].mean()


def train_tiny_model(folder, steps: int = 40, seed: int = 0):
    """Train the tiny two-stage model on noisy phantoms exactly as the shared design says.

    Inputs come from ``localiser_input`` / ``segmenter_crop``, targets from
    ``resample_label_like``; crops are centred on the true head centroid plus jitter.
    """
    from onfh.modelfolder import save_model_folder
    from onfh.network import build_model
    from onfh.preprocessing import label_centroid_mm, localiser_input, resample_label_like, segmenter_crop

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = tiny_config()
    model = build_model(config).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    names = sorted(DIRECTIONS)
    samples = []
    for i in range(6):
        image, label = phantom(
            DIRECTIONS[names[i % len(names)]],
            spacing_mm=(1.6, 1.5, 2.0),
            size=(64, 64, 48),
            head_centre_mm=np.asarray(HEAD_CENTRE_MM) + rng.uniform(-8, 8, 3),
            scale=float(rng.uniform(0.9, 1.1)),
            noise=8.0,
            seed=i,
        )
        image = sitk.Cast(image * float(rng.uniform(0.5, 3.0)), sitk.sitkFloat32)
        coarse, coarse_grid = localiser_input(image, config)
        coarse_target = sitk.GetArrayFromImage(resample_label_like(label, coarse_grid)) > 0
        samples.append((image, label, coarse, coarse_target.astype(np.int64), label_centroid_mm(label)))
    cross_entropy = torch.nn.CrossEntropyLoss()
    for step in range(steps):
        image, label, coarse, coarse_target, centre = samples[step % len(samples)]
        crop, crop_grid = segmenter_crop(image, centre + rng.uniform(-4, 4, 3), config)
        crop_target = sitk.GetArrayFromImage(resample_label_like(label, crop_grid)).astype(np.int64)
        loss = torch.zeros(())
        for network, array, target in (
            (model.localiser, coarse, coarse_target),
            (model.segmenter, crop, crop_target),
        ):
            logits = network(torch.from_numpy(array)[None])
            target_tensor = torch.from_numpy(target)[None]
            loss = loss + cross_entropy(logits, target_tensor) + soft_dice_loss(logits, target_tensor)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    config["training"] = {"dataset": "model_fixtures.phantom", "seed": seed, "iterations": steps}
    return save_model_folder(folder, model.eval(), config)


def _training_code_key() -> str:
    """Hash of everything the tiny model's training depends on (code and library versions)."""
    import monai

    import onfh

    digest = hashlib.sha256(f"{torch.__version__} {monai.__version__}".encode())
    package = Path(onfh.__file__).resolve().parent
    for source in (
        Path(__file__),
        package / "preprocessing.py",
        package / "network.py",
        package / "modelfolder.py",
    ):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model_dir(pytestconfig, tmp_path_factory):
    """Folder of a tiny two-stage model trained on phantoms.

    Training takes a minute or two on a small CPU, so the model is kept in pytest's cache
    (``.pytest_cache``) keyed by a hash of the code it depends on; it is retrained after any
    change to that code, and in every session when the cache is disabled.
    """
    from onfh.errors import OnfhError
    from onfh.modelfolder import load_model_folder

    torch.set_num_threads(min(2, torch.get_num_threads()))
    cache = getattr(pytestconfig, "cache", None)
    if cache is None:
        return train_tiny_model(tmp_path_factory.mktemp("models") / "tiny").path
    folder = cache.mkdir("onfh-tiny-model") / _training_code_key()
    try:
        return load_model_folder(folder).path
    except OnfhError:
        return train_tiny_model(folder).path
