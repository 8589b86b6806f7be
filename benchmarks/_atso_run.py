"""ATSO in the LA quality benchmark: a project-based schedule made comparable with the trainer's runs.

ATSO (``engine.atso``) is not a training step but a schedule of trainings and pseudo-labelling
passes over a *project*, so the benchmark builds one in the run folder
(``N<n>/atso/project``): the training cases on the trainer's grid (the first N with their gold
label, the rest unlabelled) and the validation split as split "validation" (each training
selects on it, as every other run does). M0 is the same-N ``supervised`` run's best model,
registered in the project, so ATSO's row shows what its generations add to exactly the model
supervised-only reports.

Budget: the generations and the final model share the protocol's iteration budget
(``iterations`` steps of fine-tuning in all, split evenly over the 2·T students and the final
model), on top of M0's own run, as PLC-KD distils on top of its teacher's.

The run folder gets ``atso.json`` (total fine-tuning steps and seconds, the validation curve
over the whole schedule, the ATSO report's path) and a copy of the final model's
``best_model.pt``, so the benchmark evaluates it like any other run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

#: The summary an ATSO run folder holds once the run completed.
ATSO_SUMMARY = "atso.json"
GENERATIONS = 2


def atso_finished(run_dir: Path) -> bool:
    return (run_dir / ATSO_SUMMARY).is_file()


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / ATSO_SUMMARY).read_text())


def build_project(folder: Path, train_cases: Sequence[tuple[str, Path]], validation_cases: Sequence[tuple[str, Path]],
                  n_labeled: int, downsample: int, m0_file: Path, m0_config: dict):
    """A new project in ``folder``: training and validation cases, M0 registered; returns
    (the open project, M0's model version id)."""
    from napari_semiseg.project import Project

    from ._plc_teacher import add_la_cases, register_model_file
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    project = Project.create(folder)
    add_la_cases(project, train_cases, n_labeled, downsample)
    add_la_cases(project, validation_cases, len(validation_cases), downsample, labelled_split="validation")
    return project, register_model_file(project, m0_file, m0_config).id


def run_atso_benchmark(run_dir: Path, train_cases, validation_cases, n_labeled: int, downsample: int, *,
                       m0_run: Path, m0_file: Path, card_name: str, iterations: int, validate_every: int | None,
                       device: str, seed: int) -> Path:
    """Run ATSO from the supervised run ``m0_run`` (its weights ``m0_file``); returns ``run_dir``."""
    from napari_semiseg.engine.atso import AtsoConfig, run_atso
    from napari_semiseg.engine.cards import load_card
    from napari_semiseg.engine.training import BEST_MODEL_FILE, MODEL_FILE
    steps = max(1, round(iterations / (2 * GENERATIONS + 1)))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ATSO_SUMMARY).unlink(missing_ok=True)
    m0_config = json.loads((m0_run / "config.json").read_text())
    project, m0_id = build_project(run_dir / "project", train_cases, validation_cases, n_labeled, downsample,
                                   m0_file, m0_config)
    overrides = {"seed": seed, "validate_every": validate_every or max(1, steps // 2), "checkpoint_every": 0,
                 "log_every": 10, "cache_volumes": len(train_cases) + len(validation_cases)}
    config = AtsoConfig(load_card(card_name), generations=GENERATIONS, iterations_generation=steps,
                        m0_model_id=m0_id, device=device, train_overrides=overrides)
    started = time.perf_counter()
    with project:
        result = run_atso(project, config, progress=lambda p: None)
    if result.status != "completed":
        raise RuntimeError(f"ATSO N={n_labeled}: run {result.status}, see {result.report_path}")
    trained = [m for m in result.report.models if m.run_dir]
    final = Path(trained[-1].run_dir)
    kept = final / BEST_MODEL_FILE if (final / BEST_MODEL_FILE).is_file() else final / MODEL_FILE
    shutil.copyfile(kept, run_dir / BEST_MODEL_FILE)  # selected on validation, as every other run's
    summary = {"generations": GENERATIONS, "iterations": sum(m.iterations for m in trained),
               "train_s": round(time.perf_counter() - started, 1), "report": str(result.report_path),
               "models": [{"key": m.key, "iterations": m.iterations, "validation_dice": m.validation_dice}
                          for m in result.report.models],
               "curve": _schedule_curve(trained)}
    (run_dir / ATSO_SUMMARY).write_text(json.dumps(summary, indent=1))
    print(f"[quality_la] atso N={n_labeled}: {summary['iterations']} fine-tuning steps in {summary['train_s']} s "
          f"(with pseudo-labelling), final validation Dice {trained[-1].validation_dice}", flush=True)
    return run_dir


def _schedule_curve(trained) -> list[tuple[int, float]]:
    """Validation Dice of every training of the schedule, one after the other on one step axis."""
    from napari_semiseg.engine.training import read_events
    curve, offset = [], 0
    for record in trained:
        events = read_events(Path(record.run_dir) / "events.jsonl")
        curve += [(offset + e["iteration"], e["dice"]) for e in events
                  if e["event"] == "validation" and e["dice"] is not None]
        offset += record.iterations
    return curve


__all__ = ["ATSO_SUMMARY", "GENERATIONS", "atso_finished", "read_summary", "run_atso_benchmark"]
