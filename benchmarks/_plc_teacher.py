"""The teacher project PLC-KD distils from, built from LA volumes and a finished supervised run.

PLC-KD reads its teacher's soft labels from a *project* (``method_params["project"]``), while
the LA benchmarks feed the trainer in-memory volumes. ``build_teacher_project`` bridges the two:
it writes each training case exactly as the trainer sees it (``read_la_case(path, downsample)``:
same voxels, same spacing) as a NIfTI image (at full resolution: the h5 file itself, which keeps
``Volume.zscored``) into a new project under the same case id, the
first ``n_labeled`` with their gold label, then registers the teacher's model file and stores
its hard + soft labels of every case through the engine's pseudo-labelling API, as the CLI and
the Pseudo-label panel would. PLC-KD then corrects the labelled cases' soft labels against
their gold labels and keeps the unlabelled ones as they are.

Only the cases handed in go into the project: the caller leaves the validation cases out, so
they can never become distillation cases.

``pseudo_label_with`` (register a model file, pseudo-label cases with it) is shared with
``pseudo_throughput``; ``add_la_cases`` and ``register_model_file`` also build the ATSO
benchmark's project (``_atso_run``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._common import block_factors, read_la_case


def add_la_cases(project, cases: Sequence[tuple[str, Path]], n_labeled: int, downsample, *,
                 labelled_split: str = "labelled") -> None:
    """Add LA cases on the trainer's grid (``read_la_case``'s ``downsample``), the first ``n_labeled`` with
    their gold label and split ``labelled_split``, the others "unlabelled" without any label."""
    from napari_semiseg.io import Volume, write_volume
    with tempfile.TemporaryDirectory(dir=project.root.parent) as scratch:
        for index, (case_id, path) in enumerate(cases):
            image, label, spacing = read_la_case(path, downsample)
            labelled = index < n_labeled
            split = labelled_split if labelled else "unlabelled"
            if block_factors(downsample) == (1, 1, 1):
                # The h5 file itself: a NIfTI copy would lose ``Volume.zscored``, and la-vnet's
                # zscore-once would then z-score these cases but not the trainer's own.
                project.add_case(case_id, path, split=split)
            else:
                # Uncompressed: the distillation sampler reads these files back during training.
                image_file = write_volume(Path(scratch) / f"{case_id}.nii",
                                          Volume.from_array(image, spacing=spacing))
                project.add_case(case_id, image_file, split=split, copy=True)
            if labelled:
                note = f"{path}, downsampled by (z, y, x) blocks {block_factors(downsample)}"
                project.save_label(case_id, label, "gold", note=note)


def pseudo_label_with(project, model_file: Path, case_ids: Sequence[str], *, device: str = "cpu",
                      config: dict | None = None):
    """Register ``model_file`` as the project's active model and store its hard and soft
    labels of ``case_ids``; returns the ``PseudoLabelSummary``."""
    from napari_semiseg.engine.pseudo import pseudo_label
    version = register_model_file(project, model_file, config)
    return pseudo_label(project, version.id, list(case_ids), device=device)


def register_model_file(project, model_file: Path, config: dict | None = None):
    """``model_file`` (a run's weights) as a new, active model version of ``project``."""
    from napari_semiseg.engine.training import load_model
    model = load_model(model_file)
    return project.register_model(model.card.to_dict(), model_file, method=model.method, config=config or {},
                                  metrics=model.metrics)


def build_teacher_project(folder: Path, model_file: Path, train_cases: Sequence[tuple[str, Path]], n_labeled: int,
                          downsample: int, *, device: str = "cpu", config: dict | None = None) -> Path:
    """A new project in ``folder`` (replacing any earlier one) holding ``train_cases`` and the
    teacher ``model_file``'s soft labels of all of them; returns the folder.

    Args:
        folder: where the project goes; removed first if it exists.
        model_file: the teacher's weights (a run's ``best_model.pt``).
        train_cases: (case id, ``mri_norm2.h5`` path) of the labelled then the unlabelled cases;
            never validation cases.
        n_labeled: how many of the first cases are labelled.
        downsample: the trainer's downsampling (``read_la_case``).
        device: where the teacher predicts.
        config: the teacher run's configuration, recorded with its model version.
    """
    from napari_semiseg.project import Project
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with Project.create(folder) as project:
        add_la_cases(project, train_cases, n_labeled, downsample)
        pseudo_label_with(project, model_file, project.case_ids(), device=device, config=config)
    return folder


__all__ = ["add_la_cases", "build_teacher_project", "pseudo_label_with", "register_model_file"]
