"""A small ready-made project for the demo and the GUI tests (numpy, io and project only).

It holds the shipped real volumes with their gold labels, a few synthetic left-atrium
phantoms (some with a gold label, some unlabelled) and, when the LA benchmark folder is at
hand, a handful of its cases. Building it again on the same folder adds only what is missing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._phantom import LA_SPACING, make_la_phantom

#: Shipped sample cases added to a sample project (the large CT is left to File → Open Sample).
SHIPPED_IN_PROJECT: tuple[str, ...] = ("hippocampus_001", "hippocampus_004")


@dataclass(frozen=True)
class SampleProjectSpec:
    """What ``build_sample_project`` puts in the project.

    Attributes:
        shipped: keys of ``SAMPLE_CASES`` to add, each with its gold label.
        phantoms: how many synthetic LA phantoms to add (seeds 0, 1, ...).
        phantom_gold: how many of them get their gold label; the rest are unlabelled.
        phantom_shape: (z, y, x) voxels of each phantom, at ``LA_SPACING`` (0.625 mm).
        la_root: the LA benchmark folder (holding ``train.list``), or None to skip it.
        la_cases: how many LA cases to add, from the top of ``train.list``.
        la_labeled: how many of those get their gold label.
    """

    shipped: tuple[str, ...] = SHIPPED_IN_PROJECT
    phantoms: int = 3
    phantom_gold: int = 1
    phantom_shape: tuple[int, int, int] = (48, 80, 80)
    la_root: Path | None = None
    la_cases: int = 4
    la_labeled: int = 2


def build_sample_project(folder: str | Path, spec: SampleProjectSpec = SampleProjectSpec()):
    """Create (or complete) a sample project in ``folder`` and return it open.

    Raises:
        ProjectError: ``folder`` exists and is something else than a project.
        VolumeError: a shipped sample or an LA file cannot be read.
    """
    from ..project import Project

    folder = Path(folder)
    project = Project.open(folder) if (folder / _db_name()).exists() else Project.create(folder)
    for key in spec.shipped:
        _add_shipped(project, key)
    for seed in range(spec.phantoms):
        _add_phantom(project, seed, spec.phantom_shape, with_gold=seed < spec.phantom_gold)
    if spec.la_root is not None and spec.la_cases > 0:
        _add_la_subset(project, Path(spec.la_root), spec.la_cases, spec.la_labeled)
    return project


def _db_name() -> str:
    from ..project import DB_NAME

    return DB_NAME


def _add_shipped(project, key: str) -> None:
    from ..io import read_label
    from . import SAMPLE_CASES, sample_path

    sample = SAMPLE_CASES[key]
    case = project.add_case(key, sample_path(sample.image), modality=sample.modality,
                            split="labelled", copy=True)
    if not project.label_versions(key):
        gold = read_label(sample_path(sample.label), like=case.geometry)
        project.save_label(key, gold, "gold", author="sample data", note=sample.description)


def _add_phantom(project, seed: int, shape: tuple[int, int, int], with_gold: bool) -> None:
    from ..io import Volume, write_volume

    case_id = f"la_phantom_{seed:02d}"
    if project.has_case(case_id):
        return
    image, label = make_la_phantom(shape, LA_SPACING, seed=seed)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{case_id}.nii.gz"
        write_volume(path, Volume.from_array(image, spacing=LA_SPACING))
        project.add_case(case_id, path, modality="MR",
                         split="labelled" if with_gold else "unlabelled", copy=True)
    if with_gold:
        project.save_label(case_id, label, "gold", author="phantom generator",
                           note=f"synthetic ground truth, seed {seed}")


def _add_la_subset(project, root: Path, n_cases: int, n_labeled: int) -> None:
    """The first ``n_cases`` of ``train.list`` (the first ``n_labeled`` gold), via the LA importer."""
    from ..project import import_la

    ids = (root / "train.list").read_text(encoding="utf-8").split()[:n_cases]
    with tempfile.TemporaryDirectory() as scratch:
        subset = Path(scratch) / "subset.list"
        subset.write_text("\n".join(ids) + "\n", encoding="utf-8")
        import_la(project, root, subset, min(n_labeled, len(ids)))
