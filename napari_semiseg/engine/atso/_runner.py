"""Running a schedule on a project: train, register, pseudo-label, measure, report.

Every model is trained in this process by the engine's trainer with the supervised method:
M0 on the labelled set S; a student on S plus the pseudo-labelled cases of its fold(s), all in
the trainer's labelled stream (the labelled cases repeated so that about ``labelled_share`` of
each batch is gold, see ``AtsoConfig``), starting from the weights the schedule names. Each
model is registered in the project as soon as it is trained (parent: the model it started
from), inactive except the final one, which is activated. Pseudo-labels are made by the
pseudo-labelling pipeline (``engine.pseudo.pseudo_label``): each is a "pseudo" label version
(with its soft label) recording the model version that made it; the students are trained on
those exact versions, pinned by id.

Stopping: ``should_stop`` is polled by the trainer between steps and by the pseudo-labelling
between window batches; the run then ends with status "stopped", keeping every model and
label made so far (a stopped training's weights stay in its run folder, unregistered).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..training import DataSpec, TrainConfig, case_dice, register_run_in_project, train
from ._cases import (AtsoCases, choose_cases, labelled_specs, pseudo_spec, reference_label,
                     validation_specs)
from ._config import AtsoConfig, AtsoError
from ._folds import ALL_FOLDS, Folds, split_folds
from ._progress import AtsoProgress, AtsoProgressCallback
from ._report import REPORT_FILE, AtsoReport, LabellingRecord, ModelRecord, PseudoLabelRecord
from ._schedule import M0, SCRATCH, Labelling, Schedule, Training, check_asynchronous, make_schedule
from ._weights import StartWeightsProbe, model_file_sha256, state_dict_sha256

RUN_KIND = "atso"


@dataclass(frozen=True)
class AtsoResult:
    """How a run ended.

    Attributes:
        status: ``"completed"`` or ``"stopped"``.
        report: the full report (also in ``report_path`` and the project's run record).
        report_path: ``report.json`` in the run folder.
        final_model_id: the activated model version (None when stopped before it existed).
    """

    status: str
    report: AtsoReport
    report_path: Path
    final_model_id: int | None


class _Stopped(Exception):
    """The run was asked to stop."""


def run_atso(project, config: AtsoConfig, *, progress: AtsoProgressCallback | None = None,
             should_stop: Callable[[], bool] | None = None) -> AtsoResult:
    """Run ATSO (or a baseline) on a project; see the module docstring and ``engine.atso``.

    Args:
        project: an open ``Project``.
        config: the run.
        progress: called with an ``AtsoProgress`` per trainer event and pseudo-labelling report.
        should_stop: polled often; True stops the run (what is done is kept).

    Returns:
        The ``AtsoResult``.

    Raises:
        AtsoError: a bad configuration or case choice (before anything is trained).
        TrainingError, ProjectError, InferenceError: a failure while running (the run is
            recorded as "failed" with the message).
    """
    return _AtsoRun(project, config, progress, should_stop).execute()


class _AtsoRun:
    def __init__(self, project, config: AtsoConfig, progress, should_stop):
        config.check()
        self.project, self.config = project, config
        self.progress, self.should_stop = progress, should_stop
        self.schedule: Schedule = make_schedule(config.mode, config.generations, final_init=config.final_init)
        check_asynchronous(self.schedule)
        self.cases: AtsoCases = choose_cases(project, config)
        self.folds: Folds | None = split_folds(self.cases.reference, config.folds_seed) \
            if config.mode == "atso" else None
        if not self.cases.reference:
            raise AtsoError(f"{project.root}: no unlabelled case to pseudo-label: {config.mode} needs a reference set")
        self.m0_given = project.model(config.m0_model_id) if config.m0_model_id is not None else None
        self._check_given_m0()
        self.labelled = labelled_specs(project, self.cases.labelled)
        self.validation = validation_specs(project, self.cases.validation)
        self.labels: dict[str, object] = {}          # case -> its newest pseudo LabelVersion of this run
        self.model_ids: dict[str, int] = {}         # key -> model version id
        self.steps_total = len(self.schedule.trainings) + sum(len(g.labellings) for g in self.schedule.generations)
        self.steps_done = 0

    def _check_given_m0(self) -> None:
        if self.m0_given is None:
            return
        given = self.m0_given.card.get("network")
        if given != self.config.card.to_dict()["network"]:
            raise AtsoError(f"model version {self.m0_given.id} was trained with network {given}, not the "
                            f"card {self.config.card.name!r}'s network: it cannot be M0 of this run")

    # -- the run -----------------------------------------------------------------------------------

    def execute(self) -> AtsoResult:
        started = time.perf_counter()
        self.run_id = self.project.start_run(RUN_KIND, {"atso": self.config.to_dict(), "cases": self.cases.to_dict(),
                                                        "folds": None if self.folds is None else self.folds.to_dict()})
        self.run_dir = self.project.path_for("runs", f"atso-{self.run_id}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.report = AtsoReport(self.run_id, self.config.mode, self.config.generations, self.config.to_dict(),
                                 self.cases.to_dict(), None if self.folds is None else self.folds.to_dict(),
                                 run_dir=str(self.run_dir))
        try:
            self._run_schedule()
            status = "completed"
        except _Stopped:
            status = "stopped"
        except BaseException as exc:
            self._finish("failed", started, error=str(exc) or type(exc).__name__)
            raise
        path = self._finish(status, started)
        self._emit(self.config.generations + 1, "done", "",
                   f"{self.config.mode} run {self.run_id} {status}"
                   + (f": final model version {self.report.final_model_id}" if self.report.final_model_id else ""))
        return AtsoResult(status, self.report, path, self.report.final_model_id)

    def _run_schedule(self) -> None:
        for generation in self.schedule.generations:
            for training in generation.trainings:
                self._train(training)
            for labelling in generation.labellings:
                self._label(generation.index, labelling)
        if self.schedule.final is not None:
            self._train(self.schedule.final)
        final_id = self.model_ids[self.schedule.final_model]
        self.project.activate_model(final_id)
        self.report.final_model_id, self.report.final_model = final_id, self.schedule.final_model

    def _finish(self, status: str, started: float, error: str | None = None) -> Path:
        self.report.status = status
        self.report.seconds = round(time.perf_counter() - started, 1)
        path = self.report.write(self.run_dir / REPORT_FILE)
        result = self.report.to_dict()
        if error is not None:
            result["error"] = error
        self.project.finish_run(self.run_id, status, result)
        return path

    def _checkpoint_report(self) -> None:
        """The report so far, in the run folder and the run record (what a crash leaves)."""
        self.report.write(self.run_dir / REPORT_FILE)
        self.project.update_run(self.run_id, result=self.report.to_dict())

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

    # -- progress -----------------------------------------------------------------------------------

    def _emit(self, generation: int, step: str, model: str, message: str, within: float = 0.0,
              event=None) -> None:
        if self.progress is None:
            return
        fraction = min(1.0, (self.steps_done + within) / self.steps_total) if step != "done" else 1.0
        self.progress(AtsoProgress(generation, step, model, message, fraction, event))

    # -- training -----------------------------------------------------------------------------------

    def _train(self, training: Training) -> None:
        if self._stop_requested():
            raise _Stopped()
        if training.key == M0 and self.m0_given is not None:
            self._record_given_m0()
            return
        started = time.perf_counter()
        pseudo = self._pseudo_labels_for(training)
        repeats = self._labelled_repeats(len(pseudo)) if training.folds else 1
        init_id = None if training.init == SCRATCH else self.model_ids[training.init]
        init_path = None if init_id is None else self.project.verified_model(init_id).checkpoint_path
        config = self._train_config(training, pseudo, repeats, init_id, init_path)
        probe = StartWeightsProbe()
        result = train(config, progress=lambda event: self._on_train_event(training, config, probe, event),
                       should_stop=self.should_stop, network_factory=probe)
        record = ModelRecord(
            key=training.key, generation=training.generation, model_id=None, parent_id=init_id,
            init=training.init, folds=list(training.folds),
            pseudo_labels={case: version.id for case, version in pseudo.items()},
            teachers=sorted({version.model_id for version in pseudo.values()}),
            labelled=list(self.cases.labelled), labelled_repeats=repeats, iterations=result.iteration,
            start_weights_sha256=probe.start_sha256,
            init_weights_sha256=None if init_path is None else model_file_sha256(init_path),
            weights_sha256=state_dict_sha256(result.method.deployed_state_dict()) if result.method else None,
            validation_dice=result.metrics.get("validation_dice"), seconds=round(time.perf_counter() - started, 1),
            run_dir=str(result.run_dir), status=result.status)
        self.report.models.append(record)
        if result.status != "finished":
            self._checkpoint_report()
            raise _Stopped()
        record.model_id = self._register(training, result, record).id
        self.model_ids[training.key] = record.model_id
        self.steps_done += 1
        self._checkpoint_report()

    def _pseudo_labels_for(self, training: Training) -> dict:
        """{case: pseudo LabelVersion} of the folds a training uses (the newest labels of this run)."""
        cases = [c for fold in training.folds for c in self._fold_cases(fold)]
        missing = [c for c in cases if c not in self.labels]
        if missing:
            raise AtsoError(f"{training.key}: case {missing[0]!r} has no pseudo-label yet (schedule error)")
        return {case: self.labels[case] for case in cases}

    def _labelled_repeats(self, n_pseudo: int) -> int:
        """How many times S is listed so that about ``labelled_share`` of the patches are gold."""
        share = self.config.labelled_share
        if share is None or n_pseudo == 0:
            return 1
        return max(1, round(share / (1.0 - share) * n_pseudo / len(self.labelled)))

    def _train_config(self, training: Training, pseudo: dict, repeats: int, init_id: int | None,
                      init_path: Path | None) -> TrainConfig:
        config = self.config
        overrides = dict(config.train_overrides)
        m0_batch = overrides.pop("batch_labeled", config.card.training.batch_labeled)
        if training.key == M0:
            iterations = config.m0_iterations
        elif training is self.schedule.final:
            iterations = config.final_iterations
        else:
            iterations = config.generation_iterations
        labelled = self.labelled * repeats + tuple(pseudo_spec(self.project, case, version)
                                                   for case, version in pseudo.items())
        return TrainConfig.from_card(
            config.card, self.run_dir / training.key.replace("/", "-"), method="supervised", iterations=iterations,
            batch_labeled=config.generation_batch if training.folds else m0_batch, batch_unlabeled=0,
            device=config.device, data=DataSpec(labeled=labelled, validation=self.validation),
            init_from=None if init_path is None else str(init_path), parent_model_id=init_id, **overrides)

    def _on_train_event(self, training: Training, config: TrainConfig, probe: StartWeightsProbe, event: dict) -> None:
        probe.on_event(event)
        kind = event.get("event")
        if kind == "iteration":
            message = f"{training.key}: iteration {event['iteration']}/{config.iterations}"
            within = event["iteration"] / config.iterations
        elif kind == "start":
            message, within = f"{training.key}: training ({config.iterations} iterations)", 0.0
        elif kind == "validation":
            message = f"{training.key}: validation Dice {event['dice']:.4f}" if event.get("dice") is not None \
                else f"{training.key}: validation"
            within = event["iteration"] / config.iterations
        else:
            message, within = f"{training.key}: {kind}", 1.0 if kind in ("finished", "stopped") else 0.0
        self._emit(training.generation, "train", training.key, message, within, event)

    def _register(self, training: Training, result, record: ModelRecord):
        atso = {"run_id": self.run_id, "mode": self.config.mode, "key": training.key, "generation": training.generation,
                "folds": list(training.folds), "init": training.init, "pseudo_label_teachers": record.teachers,
                "pseudo_cases": len(record.pseudo_labels), "labelled_repeats": record.labelled_repeats,
                "start_weights_sha256": record.start_weights_sha256}
        tagged = replace(result, metrics={**result.metrics, "atso": atso})
        final = training.key == self.schedule.final_model
        # The last weights: the report fingerprints them, and ATSO selects by generation, not by step.
        return register_run_in_project(self.project, tagged, activate=final, keep="last",
                                       name=f"{self.config.mode}{self.run_id}-{training.key.replace('/', '-')}")

    def _record_given_m0(self) -> None:
        model = self.m0_given
        record = ModelRecord(
            key=M0, generation=0, model_id=model.id, parent_id=model.parent_id, init="given", folds=[],
            pseudo_labels={}, teachers=[], labelled=list(self.cases.labelled), labelled_repeats=1,
            iterations=int(model.metrics.get("iterations") or 0), start_weights_sha256=None,
            init_weights_sha256=None, weights_sha256=model_file_sha256(model.checkpoint_path),
            validation_dice=model.metrics.get("validation_dice"), seconds=0.0, run_dir=None)
        self.report.models.append(record)
        self.model_ids[M0] = model.id
        self.steps_done += 1

    # -- pseudo-labelling ---------------------------------------------------------------------------

    def _fold_cases(self, fold: str) -> tuple[str, ...]:
        return self.cases.reference if self.folds is None and fold == ALL_FOLDS else self.folds.cases(fold)

    def _label(self, generation: int, labelling: Labelling) -> None:
        from ..pseudo import PseudoLabelCase, pseudo_label

        if self._stop_requested():
            raise _Stopped()
        cases = self._fold_cases(labelling.fold)
        self._check_teacher_never_saw(labelling, cases)
        teacher_id = self.model_ids[labelling.teacher]
        record = LabellingRecord(generation, labelling.fold, labelling.teacher, teacher_id, requested=len(cases))
        self.report.labellings.append(record)
        started = time.perf_counter()

        def relay(item) -> None:
            message = (f"G{generation}: {labelling.fold} labelled by {labelling.teacher} (model {teacher_id}): "
                       f"case {item.case_index + 1}/{len(cases)} {item.case_id}")
            if isinstance(item, PseudoLabelCase):
                dice = self._store(record, item).dice
                message += " stored" + ("" if dice is None else f", pseudo-label Dice {100 * dice:.2f} %")
            self._emit(generation, "pseudo-label", labelling.teacher, message,
                       getattr(item, "fraction", (item.case_index + 1) / len(cases)), item)

        summary = pseudo_label(self.project, teacher_id, list(cases), device=self.config.device, progress=relay,
                               should_stop=self.should_stop, overlap=self.config.overlap)
        record.seconds = round(time.perf_counter() - started, 1)
        record.cancelled = summary.cancelled
        if summary.cancelled:
            self._checkpoint_report()
            raise _Stopped()
        if summary.failed:
            # The next student would train on a fold with holes: stop here, naming the cases.
            raise AtsoError(f"G{generation}: {labelling.fold} could not be pseudo-labelled by "
                            f"{labelling.teacher}: " + "; ".join(map(str, summary.failed)))
        self.steps_done += 1
        self._checkpoint_report()

    def _store(self, record: LabellingRecord, stored) -> PseudoLabelRecord:
        version = self.project.label_version(stored.label_version_id)
        reference, source = reference_label(self.project, stored.case_id)
        dice = None if reference is None else case_dice(self.project.load_label(version.id), reference,
                                                        self.config.card.network.num_classes)
        record.cases.append(PseudoLabelRecord(stored.case_id, version.id, dice, source))
        self.labels[stored.case_id] = version
        return record.cases[-1]

    def _check_teacher_never_saw(self, labelling: Labelling, cases) -> None:
        """ATSO's invariant, checked on what was really trained: the teacher (and every model it
        started from) was never fine-tuned on a pseudo-label of these cases."""
        if not self.schedule.asynchronous:
            return
        seen = self._cases_seen(labelling.teacher)
        overlap = sorted(seen & set(cases))
        if overlap:
            raise AtsoError(f"ATSO invariant broken: {labelling.teacher} would pseudo-label fold {labelling.fold}, "
                            f"but it was fine-tuned on case(s) {', '.join(overlap)}")

    def _cases_seen(self, key: str) -> set[str]:
        if key not in self.model_ids:
            return set()
        record = self.report.model(key)
        seen = set(record.pseudo_labels)
        return seen | (self._cases_seen(record.init) if record.init not in (SCRATCH, "given") else set())


__all__ = ["AtsoResult", "RUN_KIND", "run_atso"]
