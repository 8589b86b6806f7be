"""Shared pieces of the pseudo-labelling, soft-label, correction and ranking tests (no tests here).

A tiny project of synthetic 24×32×32 volumes (a bright ball in noise) on real NIfTI files, and
a tiny model: a cpu-small network saved in the trainer's own model-file format and registered
in the project, as a trained model would be.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import create_method
from napari_semiseg.engine.training._checkpoint import make_model_payload, save_atomically
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project

SHAPE = (24, 32, 32)
#: A patch smaller than the volume, one window per network call: several windows per case,
#: so that stopping "between windows" can be observed.
PATCH = (16, 16, 16)


def ball_volume(shape=SHAPE, seed: int = 0, radius: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8), both (z, y, x): a bright ball in Gaussian noise."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    centre = [s / 2 + rng.uniform(-2, 2) for s in shape]
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2
    image = rng.normal(0.0, 0.3, size=shape).astype(np.float32) + inside.astype(np.float32)
    return image, inside.astype(np.uint8)


def make_project(folder: Path, unlabelled: int = 2, labelled: int = 1, shape=SHAPE) -> Project:
    """A project with cases u0.. (split unlabelled) and g0.. (labelled, with a gold label)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    project = Project.create(folder / "project")
    for split, prefix, count, seeds in (("unlabelled", "u", unlabelled, 0),
                                        ("labelled", "g", labelled, 100)):
        for index in range(count):
            case_id = f"{prefix}{index}"
            image, label = ball_volume(shape, seed=seeds + index)
            path = images / f"{case_id}.nii.gz"
            write_volume(path, Volume.from_array(image, spacing=(1.0, 0.8, 0.8)))
            project.add_case(case_id, path, split=split)
            if split == "labelled":
                project.save_label(case_id, label, "gold")
    return project


def tiny_card():
    card = load_card("cpu-small")
    return card.replace(patch_size=PATCH,
                        inference=dataclasses.replace(card.inference, window_batch=1))


def register_tiny_model(project: Project, folder: Path, seed: int = 0, activate: bool = True):
    """A cpu-small network with seeded random weights, in the trainer's ``model.pt`` format."""
    torch.manual_seed(seed)
    card = tiny_card()
    method = create_method("supervised", card)
    payload = make_model_payload(method=method, iteration=0, metrics={}, config_dict={})
    path = save_atomically(payload, Path(folder) / f"model-{seed}.pt")
    return project.register_model(card.to_dict(), path, method="supervised", config={},
                                  metrics={}, activate=activate)
