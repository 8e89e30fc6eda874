"""Deterministic k-fold split of a dataset by case, and the ``crossval.json`` that records it.

The split is a pure function of the case ids and the seed, so a resumed run, another
machine and ``onfh evaluate`` all see the same folds; it is also written down, because a
later dataset with added cases must not silently reshuffle an existing cross-validation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from onfh.errors import OnfhError
from onfh.imageio import write_text_atomic

CROSSVAL_DIR = "crossval"
CROSSVAL_JSON = "crossval.json"


def split_folds(case_ids: list[str], folds: int, seed: int) -> list[list[str]]:
    """Split ``case_ids`` into ``folds`` validation sets of near-equal size.

    Cases are shuffled with ``seed`` (order-independent: ids are sorted first) and dealt
    round-robin, so fold sizes differ by at most one.

    Args:
        case_ids: the dataset's case ids (any order, no duplicates).
        folds: number of folds, at least 2 and at most the number of cases.
        seed: shuffle seed.

    Returns:
        ``folds`` lists of case ids (each sorted); fold ``k`` is validated on list ``k`` and
        trained on all others.

    Raises:
        OnfhError: fewer than 2 folds, more folds than cases, or duplicate ids.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise OnfhError(f"duplicate case ids in the dataset: {ids}")
    if folds < 2:
        raise OnfhError(f"--folds must be at least 2 for cross-validation, got {folds}")
    if folds > len(ids):
        raise OnfhError(f"--folds {folds} needs at least {folds} cases, the dataset has {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    split: list[list[str]] = [[] for _ in range(folds)]
    for position, index in enumerate(order):
        split[position % folds].append(ids[int(index)])
    return [sorted(fold) for fold in split]


def training_cases(split: list[list[str]], fold: int) -> list[str]:
    """The case ids fold ``fold`` trains on: every case not in its validation set."""
    return sorted(case for k, cases in enumerate(split) if k != fold for case in cases)


def write_crossval_json(
    model_dir: str | os.PathLike, dataset: str | os.PathLike, split: list[list[str]]
) -> Path:
    """Write ``MODEL_DIR/crossval/crossval.json`` = ``{"dataset": abs path, "folds": {"0": [...]}}``."""
    path = Path(model_dir) / CROSSVAL_DIR / CROSSVAL_JSON
    content = {
        "dataset": str(Path(dataset).resolve()),
        "folds": {str(k): list(cases) for k, cases in enumerate(split)},
    }
    write_text_atomic(path, json.dumps(content, indent=2) + "\n")
    return path


def read_crossval_json(model_dir: str | os.PathLike) -> tuple[str, list[list[str]]]:
    """Read the dataset path and split written by :func:`write_crossval_json`.

    Raises:
        OnfhError: the file is missing or malformed.
    """
    path = Path(model_dir) / CROSSVAL_DIR / CROSSVAL_JSON
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        folds = content["folds"]
        split = [list(folds[str(k)]) for k in range(len(folds))]
        return str(content["dataset"]), split
    except FileNotFoundError:
        raise OnfhError(f"{path}: no such file (not a cross-validation folder)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise OnfhError(f"{path}: malformed cross-validation file ({error})") from None
