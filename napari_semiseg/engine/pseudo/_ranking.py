"""Which case next: the unlabelled cases, most informative first.

A case is a candidate when it has no gold and no corrected label version and is not in the
"test" split (test cases are held out for evaluation, not picked for training). Its score is

    score = mean entropy + disagreement_weight · teacher disagreement

- mean entropy: the catalogue's summary (mean normalised entropy, 0..1) of the case's newest
  teacher soft label made by the active model, else of its newest teacher soft label;
- teacher disagreement (0..1): when soft labels of several model versions exist, the mean over
  voxels of the mean pairwise |p_a − p_b| of their foreground probabilities (for two models
  exactly mean |p_a − p_b|), using the newest soft label of each of the ``max_teachers`` most
  recent models; 0 with a single model.

Cases without any soft label go last, in project order: their informativeness is unknown, and
a clinician's time is best spent where the model is measurably unsure; pseudo-labelling all
cases (cheap next to annotating one) gives every case a score.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ...project import SoftLabel

#: Label kinds that make a case "labelled" for ranking.
from ...project import GOLD_KINDS as LABELLED_KINDS  # noqa: E402 (the one definition)
#: Splits never proposed.
EXCLUDED_SPLITS = ("test",)


@dataclass(frozen=True)
class CaseRank:
    """One ranked case.

    Attributes:
        case_id: the case.
        score: higher is more informative; None when the case has no soft label yet.
        reasons: what the score is made of, in words.
        mean_entropy: the entropy term, or None.
        disagreement: the disagreement term (0 with one model), or None.
        models: model versions whose soft labels were used.
    """

    case_id: str
    score: float | None
    reasons: tuple[str, ...]
    mean_entropy: float | None = None
    disagreement: float | None = None
    models: tuple[int | None, ...] = ()


def candidate_case_ids(project) -> list[str]:
    """Cases without gold or corrected labels, outside the test split, in project order."""
    labelled = {v.case_id for v in project.label_versions() if v.kind in LABELLED_KINDS}
    return [c.id for c in project.cases()
            if c.id not in labelled and c.split not in EXCLUDED_SPLITS]


def _newest_per_model(soft_labels: list[SoftLabel]) -> dict[int | None, SoftLabel]:
    newest: dict[int | None, SoftLabel] = {}
    for soft in soft_labels:  # oldest first, so later ones replace earlier ones
        newest[soft.model_id] = soft
    return newest


def teacher_disagreement(project, soft_labels: list[SoftLabel]) -> float:
    """Mean over voxels of the mean pairwise |p_a − p_b| of foreground probabilities (0..1)."""
    if len(soft_labels) < 2:
        return 0.0
    foregrounds = [1.0 - project.load_soft_label(soft)[0] for soft in soft_labels]
    pairs = list(combinations(range(len(foregrounds)), 2))
    total = sum(float(np.abs(foregrounds[a] - foregrounds[b]).mean(dtype=np.float64))
                for a, b in pairs)
    return total / len(pairs)


def _rank_case(project, case_id: str, soft_labels: list[SoftLabel], active_id: int | None,
               disagreement_weight: float, max_teachers: int) -> CaseRank:
    if not soft_labels:
        return CaseRank(case_id, None, ("no soft label yet: pseudo-label it to rank it",))
    newest = _newest_per_model(soft_labels)
    lead = newest.get(active_id) or soft_labels[-1]
    entropy = lead.summary.mean_entropy
    reasons = [f"mean entropy {entropy:.3f} (model {lead.model_id})"]
    teachers = sorted(newest.values(), key=lambda s: s.id)[-max_teachers:]
    disagreement = teacher_disagreement(project, teachers)
    if len(teachers) > 1:
        names = ", ".join(str(s.model_id) for s in teachers)
        reasons.append(f"teacher disagreement {disagreement:.3f} (models {names})")
    return CaseRank(case_id, entropy + disagreement_weight * disagreement, tuple(reasons),
                    entropy, disagreement, tuple(s.model_id for s in teachers))


def rank_cases(project, *, disagreement_weight: float = 1.0, max_teachers: int = 3
               ) -> list[CaseRank]:
    """Rank the candidate cases (see the module docstring), most informative first.

    Args:
        project: an open ``Project``.
        disagreement_weight: weight of the teacher disagreement against the mean entropy.
        max_teachers: at most this many (most recent) model versions enter the disagreement;
            each costs one soft-label file read per case.

    Returns:
        ``CaseRank``s: scored cases by decreasing score (ties in project order), then the
        cases without a soft label in project order.
    """
    by_case: dict[str, list[SoftLabel]] = defaultdict(list)
    for soft in project.soft_labels(kind="teacher"):
        by_case[soft.case_id].append(soft)
    active = project.active_model()
    active_id = None if active is None else active.id
    ranks = [_rank_case(project, case_id, by_case.get(case_id, []), active_id,
                        disagreement_weight, max(1, max_teachers))
             for case_id in candidate_case_ids(project)]
    scored = sorted((r for r in ranks if r.score is not None), key=lambda r: -r.score)
    return scored + [r for r in ranks if r.score is None]


def next_case(project) -> str | None:
    """The most informative candidate case (see ``rank_cases``), or None when none is left."""
    ranks = rank_cases(project)
    return ranks[0].case_id if ranks else None
