"""PLC-KD's distillation material: stored soft labels, corrected, cut into patches with their image.

Which soft label of each case (``resolve_soft_targets``), newest first:

1. a stored "corrected" soft label made against the case's newest gold/corrected label (the
   interactive loop stores one when a clinician corrects a pseudo-label);
2. else the newest "teacher" soft label; if the case has a gold or corrected label it is
   corrected on the fly against it by the teacher team (``engine.correction.correct_soft_labels``,
   RECONSTRUCTED), in memory, nothing stored;
3. a case without a gold/corrected label keeps its teacher soft label as it is. The teacher
   team (reconstructed) has no unsupervised step: each of its steps, the forcing included,
   acts only where a gold label exists (docs/METHODS.md §6.3: the correction requires the ground
   truth), so on an unlabelled case correction is the identity.

Every target is pinned by ids (soft label, gold label version), which the run records.

How a target patch follows its image (``SoftTargetSampler``): the prepared image (the card's
resampling and intensity recipe, the trainer's ``prepare_case``) and the soft label (resampled
linearly onto the same grid when the card resamples) are stacked as channels of one array, and
the trainer's own ``la_augment`` cuts that array: one rotation, one flip, one crop for all
channels, so image and target are aligned by construction. Voxels that the crop's zero padding
created have an all-zero target; the loss ignores them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...errors import SemisegError
from ...project import GOLD_KINDS, Project  # GOLD_KINDS: the label kinds that count as truth
from ..cards import ModelCard
from ..correction import correct_soft_labels
from ..inference import to_input_grid
from ._augment import la_augment
from ._cache import VolumeCache
from ._cases import CaseSource, PreparedCase, prepare_case

if TYPE_CHECKING:  # the project layer reads volumes; only its type is named here
    from ...io import Volume


class SoftTargetError(SemisegError):
    """A distillation target does not fit its project or card (PLC-KD reports it as its own error)."""


#: Splits whose cases may serve as distillation cases (never validation or test cases).
DISTILL_SPLITS = ("labelled", "unlabelled")


@dataclass(frozen=True)
class SoftTarget:
    """One distillation case, pinned.

    Attributes:
        case_id: the project case.
        soft_label_id: the stored soft label used (teacher or corrected).
        gold_label_id: a gold/corrected label version to correct a teacher soft label against
            on the fly, or None (already corrected, or no truth for this case).
    """

    case_id: str
    soft_label_id: int
    gold_label_id: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SoftTarget":
        try:
            return cls(str(data["case_id"]), int(data["soft_label_id"]),
                       None if data.get("gold_label_id") is None else int(data["gold_label_id"]))
        except (KeyError, TypeError, ValueError):
            raise SoftTargetError(f"a distillation target must be {{case_id, soft_label_id, gold_label_id}}, "
                              f"got {data!r}") from None


def _target_of_case(project, case_id: str, teacher_model_id: int | None,
                    correct_with_gold: bool) -> SoftTarget | None:
    gold = project.latest_label(case_id, kinds=GOLD_KINDS)
    if gold is not None:
        corrected = [s for s in project.soft_labels(case_id, kind="corrected", model_id=teacher_model_id)
                     if s.label_version_id == gold.id]
        if corrected:
            return SoftTarget(case_id, corrected[-1].id)
    teachers = project.soft_labels(case_id, kind="teacher", model_id=teacher_model_id)
    if not teachers:
        return None
    correct = correct_with_gold and gold is not None and teachers[-1].num_classes == 2
    return SoftTarget(case_id, teachers[-1].id, gold.id if correct else None)


def resolve_soft_targets(project, case_ids: Sequence[str] | None = None, *, teacher_model_id: int | None = None,
                         correct_with_gold: bool = True) -> list[SoftTarget]:
    """The distillation cases of a project and the soft label each one uses (see the module).

    Args:
        project: an open ``napari_semiseg.project.Project``.
        case_ids: the candidate cases; None takes every case of split "labelled" and
            "unlabelled". Cases without a soft label are skipped.
        teacher_model_id: only soft labels made by this model version; None: any (newest).
        correct_with_gold: correct teacher soft labels of cases that have a gold/corrected label.

    Raises:
        SoftTargetError: a named case is a validation or test case (distilling on it would leak).
    """
    if case_ids is None:
        case_ids = [c for split in DISTILL_SPLITS for c in project.case_ids(split)]
    targets = []
    for case_id in case_ids:
        split = project.case(case_id).split
        if split not in DISTILL_SPLITS:
            raise SoftTargetError(f"case {case_id!r} of {project.root} is a {split} case: it cannot be a "
                              "distillation case")
        target = _target_of_case(project, case_id, teacher_model_id, correct_with_gold)
        if target is not None:
            targets.append(target)
    return targets


def check_soft_targets(project, targets: Sequence[SoftTarget], num_classes: int) -> None:
    """Raise ``SoftTargetError`` naming the first target that does not fit the project or card."""
    for target in targets:
        try:
            soft = project.soft_label(target.soft_label_id)
            gold = None if target.gold_label_id is None else project.label_version(target.gold_label_id)
        except SemisegError as exc:
            raise SoftTargetError(f"distillation target of case {target.case_id!r}: {exc}") from None
        if soft.case_id != target.case_id or (gold is not None and gold.case_id != target.case_id):
            raise SoftTargetError(f"distillation target of case {target.case_id!r}: soft label {soft.id} or label "
                              f"version {target.gold_label_id} belongs to another case")
        if soft.num_classes != num_classes:
            raise SoftTargetError(f"soft label {soft.id} of case {target.case_id!r} has {soft.num_classes} classes; "
                              f"the card's network has {num_classes}")
        if gold is not None and soft.num_classes != 2:
            raise SoftTargetError(f"soft label {soft.id} of case {target.case_id!r}: the teacher team corrects binary "
                              "soft labels only")


def project_soft_targets(project_dir: str | Path, num_classes: int, *, pinned: Sequence[dict] = (),
                         case_ids: Sequence[str] | None = None, teacher_model_id: int | None = None,
                         correct_with_gold: bool = True) -> list[SoftTarget]:
    """The distillation targets of the project at ``project_dir``, checked against it and the card.

    ``pinned`` (a run's recorded targets) are taken as they are; otherwise they are resolved now
    (``resolve_soft_targets``). Raises ``SemisegError`` (the project cannot be opened, a target
    does not fit); an empty list when no case has a soft label.
    """
    with Project.open(project_dir) as project:
        if pinned:
            targets = [SoftTarget.from_dict(t) for t in pinned]
        else:
            targets = resolve_soft_targets(project, case_ids or None, teacher_model_id=teacher_model_id,
                                           correct_with_gold=correct_with_gold)
        check_soft_targets(project, targets, num_classes)
    return targets


def load_target_probabilities(project, target: SoftTarget, correction=None) -> tuple[np.ndarray, Volume]:
    """(K, z, y, x) float32 target probabilities of a case, corrected if the target says so,
    and the case's image ``Volume``."""
    volume = project.load_image(target.case_id)
    probabilities = project.load_soft_label(target.soft_label_id)
    if target.gold_label_id is not None:
        gold = project.load_label(target.gold_label_id) > 0
        result = correct_soft_labels(probabilities[1], gold_mask=np.ones(gold.shape, bool), gold_label=gold,
                                     image=volume.array, params=correction)
        foreground = result.corrected.astype(np.float32)
        probabilities = np.stack([np.float32(1.0) - foreground, foreground])
    return probabilities, volume


def prepare_target_stack(project_dir: str | Path, target: SoftTarget, card: ModelCard, correction=None):
    """The prepared image and target of a case stacked as channels: a ``PreparedCase`` whose
    image is (C + K, Z, Y, X) float32 on the network grid (C image channels first)."""
    try:
        with Project.open(project_dir) as project:
            probabilities, volume = load_target_probabilities(project, target, correction)
    except SoftTargetError:
        raise
    except SemisegError as exc:
        raise SoftTargetError(f"distillation case {target.case_id!r}: {exc}") from None
    image = prepare_case(CaseSource.from_arrays(target.case_id, volume.array, spacing=volume.spacing,
                                                 zscored=volume.zscored), card).image
    soft = to_input_grid(torch.from_numpy(probabilities), image.shape[1:]).numpy()
    return PreparedCase(np.concatenate([image, soft.astype(np.float32, copy=False)]), None)


class SoftTargetSampler:
    """Random (image patch, target patch) pairs from the distillation cases.

    Args:
        project_dir: the project folder holding the soft labels.
        targets: the distillation cases.
        card: patch size, channels, preprocessing.
        correction: ``CorrectionParams`` of the on-the-fly teacher-team correction (defaults if None).
        cache_volumes: prepared stacks kept in memory (LRU, per process).

    Picklable (for data-loading workers): the cache is rebuilt in each process.
    """

    def __init__(self, project_dir: str | Path, targets: Sequence[SoftTarget], card: ModelCard,
                 correction=None, cache_volumes: int = 4):
        self.project_dir = str(project_dir)
        self.targets = tuple(targets)
        self.card = card
        self.correction = correction
        self.cache_volumes = cache_volumes
        self._cache = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": None}

    def stack(self, index: int) -> np.ndarray:
        """The (C + K, Z, Y, X) stack of target ``index`` (from the cache when possible)."""
        if self._cache is None:
            self._cache = VolumeCache(self.cache_volumes, self._prepare)
        return self._cache.get(self.targets[index]).image

    def _prepare(self, target: SoftTarget):
        return prepare_target_stack(self.project_dir, target, self.card, self.correction)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One pair: a case drawn uniformly, then the trainer's rotation, flip and crop.

        Returns:
            (image (C, *patch) float32, target (K, *patch) float32 probabilities; all-zero
            where the crop padded).
        """
        index = int(rng.integers(len(self.targets)))
        patch, _ = la_augment(self.stack(index), None, self.card.patch_size, rng)
        channels = self.card.network.in_channels
        return patch[:channels], patch[channels:]


__all__ = ["DISTILL_SPLITS", "GOLD_KINDS", "SoftTarget", "SoftTargetError", "SoftTargetSampler", "check_soft_targets",
           "load_target_probabilities", "prepare_target_stack", "project_soft_targets", "resolve_soft_targets"]
