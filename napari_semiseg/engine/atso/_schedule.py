"""The generation schedule of each mode, as data: who trains on what, who labels which fold.

Models are named by keys: ``"G0/M0"`` (trained on the labelled set S), ``"G<t>/student-1"``
and ``"G<t>/student-2"`` (ATSO's two students of generation t, fine-tuned on S ∪ R1 and
S ∪ R2), ``"G<t>/student"`` (the baselines' one student, on S ∪ R) and ``"final"``.

ATSO (Algorithm 1 of Huo et al., CVPR 2021), T generations::

    G0:  M0 on S;                         label R1 with M0, R2 with M0
    Gt:  student-1 ← M0, fine-tune on S ∪ R1;  student-2 ← M0, fine-tune on S ∪ R2
         label R1 with student-2, R2 with student-1      (each fold by the model that did not see it)
    final ← M0, fine-tune on S ∪ R1 ∪ R2 with the last labels

The last labelling (by generation T's students) is the "asynchronous update of both subsets
after the last generation" of §3.3; it is also what Table 1 reports as generation T's
reference-set accuracy (its rows G1..G5 differ between STSO and ATSO already at G1, which only
the students' cross-fold labels can explain). ``Algorithm 1``'s line 12 read literally would
train the final model on the labels the generation-T students were trained on, leaving those
students unused; we follow the text and the table.

Self-learning (continual), per generation: the one student starts from the previous
generation's student (M0 at first), is fine-tuned on S ∪ R labelled by that same model, then
labels R itself. STSO: the same, but the student is re-initialised from M0 each generation.
For both, the final model is the last student (no further training); its labelling of R is
still made, so that generation T has a reference-set Dice as in Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import MODES, AtsoError
from ._folds import ALL_FOLDS, FOLD_1, FOLD_2

M0 = "G0/M0"
FINAL = "final"
#: ``init`` of a model trained from random weights.
SCRATCH = "scratch"


def student_key(generation: int, role: str) -> str:
    return f"G{generation}/{role}"


@dataclass(frozen=True)
class Training:
    """One model to train.

    Attributes:
        key: the model's key (see the module docstring).
        generation: 0 for M0, 1..T for students, T + 1 for the final model.
        folds: the pseudo-labelled folds it is fine-tuned on (with S); () for M0.
        init: the key of the model whose weights it starts from, or ``SCRATCH``.
    """

    key: str
    generation: int
    folds: tuple[str, ...]
    init: str

    @property
    def role(self) -> str:
        return self.key.split("/")[-1]


@dataclass(frozen=True)
class Labelling:
    """One fold pseudo-labelled by one model.

    Attributes:
        fold: ``"R1"``, ``"R2"`` or ``"R"``.
        teacher: the key of the model that labels it.
    """

    fold: str
    teacher: str


@dataclass(frozen=True)
class Generation:
    """What generation ``index`` does: train its models, then label the reference set with them."""

    index: int
    trainings: tuple[Training, ...]
    labellings: tuple[Labelling, ...]


@dataclass(frozen=True)
class Schedule:
    """A run's whole plan.

    Attributes:
        mode: one of ``MODES``.
        generations: G0 (M0 and its labels), then G1..GT.
        final: ATSO's final training, or None when the last student is the final model.
        final_model: the key of the model that ends up active.
        asynchronous: True when no model may label a fold it was fine-tuned on (ATSO).
    """

    mode: str
    generations: tuple[Generation, ...]
    final: Training | None
    final_model: str
    asynchronous: bool

    @property
    def trainings(self) -> list[Training]:
        """Every training, in order (the final one last)."""
        found = [t for g in self.generations for t in g.trainings]
        return found + ([self.final] if self.final is not None else [])

    def training(self, key: str) -> Training:
        for candidate in self.trainings:
            if candidate.key == key:
                return candidate
        raise AtsoError(f"the {self.mode} schedule has no model {key!r}")


def make_schedule(mode: str, generations: int, *, final_init: str = "m0") -> Schedule:
    """The plan of ``mode`` over ``generations`` (T ≥ 1) generations.

    Args:
        final_init: where ATSO's final model starts: ``"m0"`` or ``"scratch"``.

    Raises:
        AtsoError: unknown mode, or T < 1.
    """
    if mode not in MODES:
        raise AtsoError(f"unknown mode {mode!r}; use one of {list(MODES)}")
    if generations < 1:
        raise AtsoError(f"generations must be ≥ 1, got {generations}")
    m0 = Generation(0, (Training(M0, 0, (), SCRATCH),),
                    (Labelling(FOLD_1, M0), Labelling(FOLD_2, M0)) if mode == "atso" else (Labelling(ALL_FOLDS, M0),))
    plan = [m0]
    for t in range(1, generations + 1):
        plan.append(_atso_generation(t) if mode == "atso" else _baseline_generation(mode, t))
    if mode == "atso":
        final = Training(FINAL, generations + 1, (FOLD_1, FOLD_2), M0 if final_init == "m0" else SCRATCH)
        return Schedule(mode, tuple(plan), final, FINAL, asynchronous=True)
    return Schedule(mode, tuple(plan), None, student_key(generations, "student"), asynchronous=False)


def _atso_generation(t: int) -> Generation:
    first, second = student_key(t, "student-1"), student_key(t, "student-2")
    trainings = (Training(first, t, (FOLD_1,), M0), Training(second, t, (FOLD_2,), M0))
    # each fold is labelled by the student fine-tuned on the other one
    return Generation(t, trainings, (Labelling(FOLD_1, second), Labelling(FOLD_2, first)))


def _baseline_generation(mode: str, t: int) -> Generation:
    student = student_key(t, "student")
    init = M0 if mode == "stso" or t == 1 else student_key(t - 1, "student")
    return Generation(t, (Training(student, t, (ALL_FOLDS,), init),), (Labelling(ALL_FOLDS, student),))


def check_asynchronous(schedule: Schedule) -> None:
    """Raise ``AtsoError`` if an asynchronous schedule lets a model label a fold it trained on.

    The folds a model "saw" are those it was fine-tuned on and, transitively, those of the
    model it started from (weights carry what they were trained on).
    """
    if not schedule.asynchronous:
        return
    for generation in schedule.generations:
        for labelling in generation.labellings:
            seen = _folds_seen(schedule, labelling.teacher)
            if labelling.fold in seen or (labelling.fold == ALL_FOLDS and seen) or ALL_FOLDS in seen:
                raise AtsoError(f"{schedule.mode} schedule: model {labelling.teacher} would pseudo-label fold "
                                f"{labelling.fold}, but it was fine-tuned on {sorted(seen)}")


def _folds_seen(schedule: Schedule, key: str) -> set[str]:
    training = schedule.training(key)
    seen = set(training.folds)
    if training.init != SCRATCH:
        seen |= _folds_seen(schedule, training.init)
    return seen


__all__ = ["FINAL", "Generation", "Labelling", "M0", "SCRATCH", "Schedule", "Training", "check_asynchronous",
           "make_schedule", "student_key"]
