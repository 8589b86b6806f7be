"""Shared pieces of the ATSO tests (no tests here).

A tiny LA-like project: six 24×48×48 volumes (a bright ball in noise), each an LA-style
``mri_norm2.h5`` holding its image and its label, as the benchmark's files do. The first two
cases are labelled (their label imported as a gold version); the other four are unlabelled,
and their h5 label is only the held-out reference of the pseudo-label Dice. The card is
cpu-small with 4 base filters, 2 levels and 16×32×32 patches, so a training step is cheap.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import yaml

from data_factory import write_la_h5
from napari_semiseg.engine.atso import AtsoConfig
from napari_semiseg.engine.cards import load_card
from napari_semiseg.project import Project

SHAPE = (24, 48, 48)
LABELLED = ("c0", "c1")
REFERENCE = ("c2", "c3", "c4", "c5")
#: Settings that keep every training short: no validation, no intermediate checkpoints.
QUICK = {"validate_every": 0, "checkpoint_every": 0}


def ball_case(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8), both (z, y, x): a bright ball of random centre and radius."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    centre = [s / 2 + rng.uniform(-3, 3) for s in shape]
    radius = rng.uniform(6, 9)
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2
    image = rng.normal(0.0, 0.5, size=shape).astype(np.float32) + inside.astype(np.float32)
    return image, inside.astype(np.uint8)


def make_project(folder: Path) -> Project:
    """The six-case project described in the module docstring (open; close it when done)."""
    project = Project.create(Path(folder) / "project")
    for index, case_id in enumerate(LABELLED + REFERENCE):
        image, label = ball_case(index)
        path = write_la_h5(_case_file(folder, case_id), image, label)
        labelled = case_id in LABELLED
        project.add_case(case_id, path, split="labelled" if labelled else "unlabelled")
        if labelled:
            project.save_label(case_id, label, "gold")
    return project


def _case_file(folder: Path, case_id: str) -> Path:
    path = Path(folder) / "la" / case_id / "mri_norm2.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def reference_of(case_id: str) -> np.ndarray:
    """The label the case was made with (what its h5 file holds)."""
    return ball_case((LABELLED + REFERENCE).index(case_id))[1]


def tiny_card():
    card = load_card("cpu-small")
    return card.replace(patch_size=(16, 32, 32),
                        network=dataclasses.replace(card.network, base_filters=4, levels=2))


def write_tiny_card(path: Path) -> Path:
    path.write_text(yaml.safe_dump(tiny_card().to_dict()))
    return path


def quick_config(mode: str = "atso", **changes) -> AtsoConfig:
    """Two generations of a few steps each, on the CPU."""
    values = dict(mode=mode, generations=2, iterations_m0=4, iterations_generation=2, iterations_final=2,
                  batch_size_generation=2, device="cpu", train_overrides=dict(QUICK))
    values.update(changes)
    return AtsoConfig(tiny_card(), **values)


def numpy_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total
