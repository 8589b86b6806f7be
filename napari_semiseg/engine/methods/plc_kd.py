"""PLC-KD-style distillation from corrected soft labels (Wang et al., MICCAI 2024) — RECONSTRUCTED.

RECONSTRUCTED: the paper is known here only from its abstract and supplement (docs/METHODS.md §6).
Its KD loss, its weight and the student's supervised loss are not published; what follows is
the reconstruction skeleton of docs/METHODS.md §6.3 step 6 with choices made here, and it must be
shown as "reconstructed" wherever it is offered (``PLCKD.RECONSTRUCTED``, ``METHOD_LABEL``).

The teacher is not trained here: its soft labels were made beforehand (pseudo-labelling, a
prediction) and stored in the project. The **teacher team** (``engine.correction``, reconstructed:
false-pixel assistant, boundary assistant, similarity correction, final forcing) corrects them
wherever a gold or clinician-corrected label exists, so that there every voxel's soft label is
on its class's side of 0.5; see ``engine.data._soft_targets`` for which soft label each case uses and
why unlabelled cases keep their teacher soft label unchanged (the team has no unsupervised
step). The student (the card's network, deployed) then trains on

    total = ce_weight·CE + dice_weight·Dice      (labelled half, as ``supervised``)
          + kd_weight · KD(q, p_student)           (distillation patches)

with KD = ``"kl"``: mean over voxels of KL(q ‖ p) = Σ_c q_c (ln q_c − ln p_c) (default, the
usual pixel-wise KD; no temperature, since stored soft labels are probabilities), ``"soft-dice"``:
the squared Dice of each foreground class against q, or ``"kl+soft-dice"``: their sum. q is
the corrected soft label, a constant.

Data route: the trainer cannot yet carry a per-case array along its augmentation for an
unlabelled stream, so the method draws its own distillation patches in ``sample_views`` of
the labelled stream: ``distill_per_labeled`` per labelled sample, each from a distillation
case drawn with that sample's seeded generator, its image and soft label stacked as channels
and cut by one call of the trainer's ``la_augment`` (identical rotation, flip and crop by
construction; deterministic and resumable like every batch). The trainer's own unlabelled
stream is not used (``uses_unlabeled = False``). One forward pass sees the labelled and the
distillation patches together, so BatchNorm normalises over both, as the two-stream papers do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import SemisegError
from ..cards import ModelCard
from ..correction import CorrectionParams
from ..data import SoftTarget, SoftTargetSampler, project_soft_targets, resolve_soft_targets
from ._base import Batch, Method, MethodError, NetworkFactory, StepInfo
from ._kd_losses import kl_divergence, soft_dice_loss
from ._losses import DICE_KINDS, dice_and_cross_entropy
from ._registry import register_method

KD_LOSSES = ("kl", "soft-dice", "kl+soft-dice")
#: How the UI and the docs name this method.
METHOD_LABEL = "PLC-KD-style distillation from corrected soft labels (reconstructed)"
#: ``batch.extra`` keys of the distillation patches (the labelled stream's views).
DISTILL_IMAGE, DISTILL_TARGET = "labeled/distill_image", "labeled/distill_target"


@dataclass
class PLCKDParams:
    """Hyperparameters of the PLC-KD student (reconstructed; the paper's values are unknown).

    Attributes:
        project: the project folder holding the soft labels (required).
        targets: the distillation cases pinned as ``{case_id, soft_label_id, gold_label_id}``;
            empty: resolved when the method is built (``resolve_soft_targets``) and recorded.
        case_ids: candidate distillation cases for that resolution; empty: every labelled and
            unlabelled case of the project that has a soft label.
        teacher_model_id: use only soft labels made by this model version (None: the newest).
        correct_with_gold: correct teacher soft labels of cases with a gold/corrected label.
        correction: ``engine.pseudo.CorrectionParams`` overrides for that correction.
        kd_loss: ``"kl"``, ``"soft-dice"`` or ``"kl+soft-dice"``.
        kd_weight: λ_KD.
        distill_per_labeled: distillation patches per labelled patch of the batch.
        cache_volumes: prepared distillation cases kept in memory per process.
        ce_weight, dice_weight, dice: the supervised loss, as ``supervised``.
    """

    project: str = ""
    targets: list = field(default_factory=list)
    case_ids: list = field(default_factory=list)
    teacher_model_id: int | None = None
    correct_with_gold: bool = True
    correction: dict = field(default_factory=dict)
    kd_loss: str = "kl"
    kd_weight: float = 1.0
    distill_per_labeled: int = 1
    cache_volumes: int = 4
    ce_weight: float = 0.5
    dice_weight: float = 0.5
    dice: str = "squared"


def correction_params(values: Mapping[str, Any]):
    """``CorrectionParams`` from overrides; ``MethodError`` naming the bad one."""
    try:
        return CorrectionParams(**dict(values))
    except (TypeError, SemisegError) as exc:
        raise MethodError(f"method 'plc-kd': correction: {exc}") from None


@register_method
class PLCKD(Method):
    """Student distilling from teacher-team-corrected soft labels — RECONSTRUCTED; see the module."""

    name = "plc-kd"
    description = ("PLC-KD-style KD (reconstructed): the student learns from labels and from the teacher's "
                   "stored soft labels corrected by the teacher team")
    #: The method is a reconstruction from the abstract and supplement, not the paper's code.
    RECONSTRUCTED: ClassVar[bool] = True
    METHOD_LABEL: ClassVar[str] = METHOD_LABEL
    Params = PLCKDParams
    uses_unlabeled = False  # its unlabelled material comes from the soft-label store (module docstring)
    trainable_networks = ("model",)
    deployed_network_name = "model"

    def __init__(self, card: ModelCard, params: Any = None, *, network_factory: NetworkFactory | None = None):
        super().__init__(card, params, network_factory=network_factory)
        project_dir = Path(self.params.project).expanduser().resolve()
        targets = self._targets(project_dir)
        self.params = dataclasses.replace(self.params, project=str(project_dir),
                                          targets=[t.to_dict() for t in targets])
        self.sampler = SoftTargetSampler(project_dir, targets, card, correction_params(self.params.correction),
                                         self.params.cache_volumes)

    @classmethod
    def learns_from_unlabeled(cls) -> bool:
        return True  # the unlabelled cases' soft labels, read by the method, are half of what it learns

    @classmethod
    def check_params(cls, params: PLCKDParams) -> None:
        problems = []
        if not params.project:
            problems.append("'project' must name the project folder that holds the soft labels")
        if params.kd_loss not in KD_LOSSES:
            problems.append(f"kd_loss must be one of {list(KD_LOSSES)}, got {params.kd_loss!r}")
        if params.dice not in DICE_KINDS:
            problems.append(f"dice must be one of {list(DICE_KINDS)}, got {params.dice!r}")
        if min(params.kd_weight, params.ce_weight, params.dice_weight) < 0:
            problems.append("kd_weight, ce_weight and dice_weight must be ≥ 0")
        if params.distill_per_labeled < 1 or params.cache_volumes < 1:
            problems.append("distill_per_labeled and cache_volumes must be ≥ 1")
        if problems:
            raise MethodError(f"method {cls.name!r}: " + "; ".join(problems))
        correction_params(params.correction)
        try:
            for target in params.targets:
                SoftTarget.from_dict(target)
        except SemisegError as exc:
            raise MethodError(f"method {cls.name!r}: {exc}") from None

    def _targets(self, project_dir: Path) -> list[SoftTarget]:
        try:
            targets = project_soft_targets(project_dir, self.card.network.num_classes, pinned=self.params.targets,
                                           case_ids=self.params.case_ids, teacher_model_id=self.params.teacher_model_id,
                                           correct_with_gold=self.params.correct_with_gold)
        except SemisegError as exc:
            raise MethodError(f"method {self.name!r}: {exc}") from None
        if not targets:
            raise MethodError(f"method {self.name!r}: no case of {project_dir} has a soft label to distil from; "
                              "run pseudo-labelling first")
        return targets

    def exclude_cases(self, case_ids: Collection[str]) -> None:
        """Drop the distillation targets of ``case_ids``: a validation case the clinician corrected
        keeps its split ("unlabelled") and has a corrected soft label, which would leak its label."""
        excluded = set(case_ids)
        kept = [t for t in self.sampler.targets if t.case_id not in excluded]
        if len(kept) == len(self.sampler.targets):
            return
        if not kept:
            raise MethodError(f"method {self.name!r}: every distillation case is a validation case "
                              f"({sorted(excluded)}); pseudo-label other cases first")
        self.params = dataclasses.replace(self.params, targets=[t.to_dict() for t in kept])
        self.sampler = SoftTargetSampler(self.sampler.project_dir, kept, self.card,
                                         correction_params(self.params.correction), self.params.cache_volumes)

    # -- networks and data ---------------------------------------------------------------------------

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        return {"model": factory(self.card.network)}

    def sample_views(self, stream: str, image: np.ndarray, label: np.ndarray | None,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Labelled stream: ``distill_image`` (m, C, *patch) and ``distill_target`` (m, K, *patch),
        m = ``distill_per_labeled``, each pair cut by one ``la_augment`` call (module docstring)."""
        if stream != "labeled":
            return {}
        pairs = [self.sampler.sample(rng) for _ in range(self.params.distill_per_labeled)]
        return {"distill_image": np.stack([p[0] for p in pairs]), "distill_target": np.stack([p[1] for p in pairs])}

    # -- the step --------------------------------------------------------------------------------------

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        if DISTILL_IMAGE not in batch.extra or DISTILL_TARGET not in batch.extra:
            raise MethodError(f"method {self.name!r}: the batch has no distillation patches "
                              f"({DISTILL_IMAGE!r}); they come from the method's sample_views")
        params, n = self.params, batch.n_labeled
        images = batch.extra[DISTILL_IMAGE].flatten(0, 1)
        targets = batch.extra[DISTILL_TARGET].flatten(0, 1)
        logits = self.net("model")(torch.cat([batch.labeled_image, images]))
        supervised = dice_and_cross_entropy(logits[:n], batch.label, dice=params.dice,
                                            ce_weight=params.ce_weight, dice_weight=params.dice_weight)
        student = logits[n:]
        valid = targets.sum(dim=1) > 0.5  # zero padding of the crop has no target
        kl = kl_divergence(targets, student, valid)
        soft_dice = soft_dice_loss(torch.softmax(student, dim=1), targets, valid)
        kd = {"kl": kl, "soft-dice": soft_dice, "kl+soft-dice": kl + soft_dice}[params.kd_loss]
        return {"ce": supervised["ce"], "dice": supervised["dice"], "supervised": supervised["total"],
                "kd_kl": kl.detach(), "kd_soft_dice": soft_dice.detach(), "kd": kd,
                "total": supervised["total"] + params.kd_weight * kd}


def plc_kd_params(project, case_ids=None, *, teacher_model_id: int | None = None, correct_with_gold: bool = True,
                  **overrides) -> dict[str, Any]:
    """Method parameters for a run on ``project`` with its distillation cases pinned now.

    Args:
        project: an open ``Project``.
        case_ids, teacher_model_id, correct_with_gold: as ``resolve_soft_targets``.
        overrides: other ``PLCKDParams`` fields.

    Returns:
        A dict for ``TrainConfig.method_params`` (plain JSON data).

    Raises:
        MethodError: no case has a soft label.
    """
    targets = resolve_soft_targets(project, case_ids, teacher_model_id=teacher_model_id,
                                   correct_with_gold=correct_with_gold)
    if not targets:
        raise MethodError(f"method 'plc-kd': no case of {project.root} has a soft label to distil from; "
                          "run pseudo-labelling first")
    return {**overrides, "project": str(project.root), "targets": [t.to_dict() for t in targets],
            "teacher_model_id": teacher_model_id, "correct_with_gold": correct_with_gold}


__all__ = ["DISTILL_IMAGE", "DISTILL_TARGET", "KD_LOSSES", "METHOD_LABEL", "PLCKD", "PLCKDParams",
           "SoftTarget", "plc_kd_params", "resolve_soft_targets"]
