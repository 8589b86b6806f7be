"""CrossMatch (Zhao, Wang, Ding, JBHI 2024): self-knowledge-distillation with image- and
feature-level perturbations (docs/METHODS.md §3; the paper's Algorithm 1).

One network, no EMA. Per step, with the labelled patches x and two unlabelled streams (u, the
main one, and m, the CutMix source):

1. **Data side** (``sample_views``, with each sample's generator): two strong views s1, s2
   of every weak (standard-augmented) unlabelled patch (bias field + gamma with probability
   0.8, blur with probability 0.5; ``_strong_aug``) and, for u, two 3-D CutMix boxes
   (``_cutmix``).
2. **Mix teachers**, without gradient: T_mix from a plain pass on m_w and, at HEAD, T_mix^fw /
   T_mix^fs from a feature-perturbed pass on [x; m_w]; in train mode at HEAD, eval mode at
   paper release.
3. s1 and s2 get the voxels of box 1 / box 2 from m's own strong views.
4. **Two perturbed passes with gradient**, each stacking [A; B; weak(B); strong(B)] encoder
   features along the batch so one decoder pass serves all four (``_feature_dropout``;
   decoder dropout off): on [x; u_w] (p_x, p_w, p_w^fw, p_w^fs) and on [s1; s2]
   (p_s1, p_s2, p_s2^fw, p_s2^fs).
5. **Targets**: T_w = argmax p_w (the paper's p_n^w, detached), CutMixed with T_mix inside the
   boxes as Y1, Y2; the dropout teachers T_w^fw, T_w^fs CutMixed with T_mix^fw, T_mix^fs as
   Y2^fw, Y2^fs (paper release: not mixed, a bug fixed in Dec 2024).
6. **Losses** (``_crossmatch_losses``): L_sup = ½(CE + squared Dice) on x; L_ip, L_tkd, L_dkd
   with the confidence-masked squared Dice; L_kd = (1 − η)L_tkd + ηL_dkd; the total by the
   chosen weighting.

History variants of the official code (``variant``), each of whose parts can be overridden:

=================  ==========  ===============  ===========  =========  ===========
variant            τ_0 (code)  teacher mode     DKD targets  weighting  iterations
=================  ==========  ===============  ===========  =========  ===========
``"head2025"``     0.75        train            mixed        head2025   14000
``"paper2024"``    0.85        eval (T_mix)     unmixed      paper2024  9000
=================  ==========  ===============  ===========  =========  ===========

The paper's own description is available as ``threshold_mode="paper"`` (a fixed τ, 0.85) and
``loss_weighting="paper"`` (its Eq. 12).

**Optimiser.** The method cannot set the trainer's optimiser: the official recipe (AdamW,
lr 1e-3, weight decay 1e-4, poly schedule with horizon 17000) is ``recommended_training()``,
a dict of ``TrainConfig`` overrides for the caller (CLI, GUI) to apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ._base import Batch, Method, MethodError, NetworkFactory, StepInfo
from ._crossmatch_losses import (LOSS_WEIGHTINGS, THRESHOLD_MODES, HardTargets, confidence_threshold,
                                 decoder_distillation_loss, distillation_loss, image_perturbation_loss,
                                 teacher_distillation_loss, total_loss)
from ._cutmix import (CUTMIX_PLACEMENT_ALIASES, CUTMIX_PLACEMENTS, CutMixSettings, box_masks, cutmix_box,
                      paste_boxes, placement_name)
from ._feature_dropout import FeatureDropoutStack, split_stacked
from ._losses import dice_and_cross_entropy
from ._registry import register_method
from ._strong_aug import StrongAugmentation, strong_view

VARIANTS = ("head2025", "paper2024")
TEACHER_MODES = ("train", "eval")
DKD_TARGETS = ("mixed", "unmixed")
#: The unlabelled stream that is the CutMix source (the trainer's second unlabelled stream).
MIX_STREAM = "mix"
PAPER_TAU = 0.85

#: What each variant sets when the corresponding parameter is left at None.
VARIANT_SETTINGS: dict[str, dict[str, Any]] = {
    "head2025": {"tau": 0.75, "teacher_mode": "train", "dkd_targets": "mixed", "loss_weighting": "head2025"},
    "paper2024": {"tau": 0.85, "teacher_mode": "eval", "dkd_targets": "unmixed", "loss_weighting": "paper2024"},
}
VARIANT_ITERATIONS = {"head2025": 14000, "paper2024": 9000}


@dataclass(frozen=True)
class CrossMatchParams(StrongAugmentation):
    """CrossMatch's hyperparameters; defaults from the official code at HEAD (Dec 2025).

    The strong views' fields (``bias_gamma_probability`` … ``blur_max_std``) are
    ``StrongAugmentation``'s, declared there once; a run's parameters stay one flat mapping.

    Parameters left at None follow ``variant`` (see the module docstring's table); a model
    version records the resolved values.

    Attributes:
        variant: ``"head2025"`` (official HEAD) or ``"paper2024"`` (the paper-release code).
        threshold_mode: ``"code"`` (τ_0 ramped to 1 over ``threshold_ramp`` steps, times
            ln 2) or ``"paper"`` (a fixed τ).
        tau: τ_0 in ``"code"`` mode (0.75 head2025 / 0.85 paper2024), the fixed τ in
            ``"paper"`` mode (0.85); None: those defaults.
        threshold_ramp: the ramp length L in steps (17000, whatever the run length).
        eta: η, the share of L_dkd in L_kd (0.3).
        loss_weighting: ``"head2025"``, ``"paper2024"`` or ``"paper"`` (Eq. 12); None: the
            variant's.
        teacher_mode: ``"train"`` or ``"eval"``: the mode of the no-gradient mix-teacher
            passes; None: the variant's.
        dkd_targets: ``"mixed"`` (T_mix^fw/fs pasted into the DKD targets) or ``"unmixed"``
            (the paper-release bug: no mix pass, the weak-image dropout teachers everywhere);
            None: the variant's.
        weak_dropout, strong_dropout: Dropout3d rates of the weak/strong feature perturbation.
        cutmix_probability: chance of a CutMix box per sample and view (0.5).
        cutmix_min_volume, cutmix_max_volume: box volume range as a fraction of the patch.
        cutmix_min_ratio: aspect ratio range [min, 1/min] (0.3).
        cutmix_box: ``"official"`` (the official code's box layout, the published recipe) or
            ``"within-patch"`` (the paper text's box, anywhere inside the patch); see
            ``_cutmix``. The earlier names ``"bug-compatible"`` and ``"correct"`` are accepted
            and recorded under the current ones.
        (the strong views' operations: see ``StrongAugmentation``.)
    """

    variant: str = "head2025"
    threshold_mode: str = "code"
    tau: float | None = None
    threshold_ramp: int = 17000
    eta: float = 0.3
    loss_weighting: str | None = None
    teacher_mode: str | None = None
    dkd_targets: str | None = None
    weak_dropout: float = 0.25
    strong_dropout: float = 0.75
    cutmix_probability: float = 0.5
    cutmix_min_volume: float = 0.02
    cutmix_max_volume: float = 0.4
    cutmix_min_ratio: float = 0.3
    cutmix_box: str = "official"


def resolve_params(params: CrossMatchParams) -> CrossMatchParams:
    """A copy with every None filled from the variant (and τ from the threshold mode)."""
    defaults = dict(VARIANT_SETTINGS[params.variant])
    if params.threshold_mode == "paper":
        defaults["tau"] = PAPER_TAU
    return dataclasses.replace(params, cutmix_box=placement_name(params.cutmix_box),
                               **{name: value for name, value in defaults.items() if getattr(params, name) is None})


@register_method
class CrossMatch(Method):
    """CrossMatch on one network: strong views, CutMix, stacked feature dropout, self-KD."""

    name = "crossmatch"
    description = ("CrossMatch: weak/strong image views with CutMix and weak/strong feature dropout, "
                   "distilled from the network's own weak-view prediction")
    Params = CrossMatchParams
    step_params = ("threshold_ramp",)
    unlabeled_streams = ("unlabeled", MIX_STREAM)
    trainable_networks = ("model",)
    deployed_network_name = "model"

    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "variant": VARIANTS, "threshold_mode": THRESHOLD_MODES, "loss_weighting": LOSS_WEIGHTINGS,
        "teacher_mode": TEACHER_MODES, "dkd_targets": DKD_TARGETS,
        "cutmix_box": (*CUTMIX_PLACEMENTS, *CUTMIX_PLACEMENT_ALIASES)}

    def __init__(self, card, params: Any = None, *, network_factory: NetworkFactory | None = None):
        super().__init__(card, params, network_factory=network_factory)
        self.settings = resolve_params(self.params)
        s = self.settings
        self.strong_augmentation = StrongAugmentation(
            **{f.name: getattr(s, f.name) for f in dataclasses.fields(StrongAugmentation)})
        self.cutmix = CutMixSettings(s.cutmix_probability, s.cutmix_min_volume, s.cutmix_max_volume,
                                     s.cutmix_min_ratio, s.cutmix_box)

    # -- hyperparameters ---------------------------------------------------------------------

    @classmethod
    def check_params(cls, params: CrossMatchParams) -> None:
        problems = [f"{name} must be one of {list(choices)}, got {getattr(params, name)!r}"
                    for name, choices in cls._CHOICES.items()
                    if getattr(params, name) is not None and getattr(params, name) not in choices]
        probabilities = ("weak_dropout", "strong_dropout")
        problems += [f"{name} must be in [0, 1), got {getattr(params, name)}"
                     for name in probabilities if not 0.0 <= getattr(params, name) < 1.0]
        chances = ("cutmix_probability", "bias_gamma_probability", "blur_probability", "eta")
        problems += [f"{name} must be in [0, 1], got {getattr(params, name)}"
                     for name in chances if not 0.0 <= getattr(params, name) <= 1.0]
        if params.tau is not None and not 0.0 <= params.tau <= 1.0:
            problems.append(f"tau must be in [0, 1], got {params.tau}")
        if params.threshold_ramp < 0:
            problems.append(f"threshold_ramp must be ≥ 0, got {params.threshold_ramp}")
        if not 0.0 < params.cutmix_min_volume <= params.cutmix_max_volume <= 1.0:
            problems.append("cutmix volumes need 0 < cutmix_min_volume ≤ cutmix_max_volume ≤ 1")
        if not 0.0 < params.cutmix_min_ratio <= 1.0:
            problems.append(f"cutmix_min_ratio must be in (0, 1], got {params.cutmix_min_ratio}")
        if params.bias_order < 0 or params.bias_coefficient < 0 or params.log_gamma < 0:
            problems.append("bias_order, bias_coefficient and log_gamma must be ≥ 0")
        if not 0.0 < params.blur_min_std <= params.blur_max_std:
            problems.append("blur stds need 0 < blur_min_std ≤ blur_max_std")
        if problems:
            raise MethodError("method 'crossmatch': " + "; ".join(problems))

    def params_dict(self) -> dict[str, Any]:
        """The resolved hyperparameters (no None left), as a model version records them."""
        return dataclasses.asdict(self.settings)

    @classmethod
    def recommended_training(cls, variant: str = "head2025") -> dict[str, Any]:
        """The official training recipe as ``TrainConfig`` overrides (the trainer owns them).

        AdamW, lr 1e-3, weight decay 1e-4; lr·(1 − t/17000)^0.9 whatever the run length;
        batch 2 labelled + 2 unlabelled (+ 2 CutMix sources); 14000 steps at HEAD, 9000 at
        paper release (the official loop runs one step more).
        """
        if variant not in VARIANTS:
            raise MethodError(f"method 'crossmatch': variant must be one of {list(VARIANTS)}, got {variant!r}")
        return {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "poly",
                "poly_horizon": 17000, "poly_power": 0.9, "batch_labeled": 2, "batch_unlabeled": 2,
                "iterations": VARIANT_ITERATIONS[variant]}

    # -- networks and data -----------------------------------------------------------------------

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        return {"model": factory(self.card.network)}

    def sample_views(self, stream: str, image: np.ndarray, label: np.ndarray | None,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Two strong views of each unlabelled patch, and two CutMix boxes on the main stream.

        Returns:
            ``{"strong1", "strong2"}`` (C, Z, Y, X) float32 for both unlabelled streams, plus
            ``{"box1", "box2"}`` (3, 2) int64 ``[start, stop)`` ranges along (z, y, x) for the
            main one; nothing for the labelled stream.
        """
        if stream == "labeled":
            return {}
        views = {"strong1": strong_view(image, rng, self.strong_augmentation),
                 "strong2": strong_view(image, rng, self.strong_augmentation)}
        if stream == self.unlabeled_streams[0]:
            patch = image.shape[1:]
            views["box1"] = cutmix_box(patch, rng, self.cutmix)
            views["box2"] = cutmix_box(patch, rng, self.cutmix)
        return views

    # -- the step ----------------------------------------------------------------------------------

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        s = self.settings
        views = self._views(batch)
        x, weak, mix = batch.labeled_image, batch.unlabeled_image, views["mix"]
        shape = weak.shape[2:]
        box_1, box_2 = box_masks(views["box1"], shape), box_masks(views["box2"], shape)
        mix_normal, mix_fw, mix_fs = self._mix_teachers(x, mix)
        strong_1 = paste_boxes(views["strong1"], views["mix/strong1"], box_1)
        strong_2 = paste_boxes(views["strong2"], views["mix/strong2"], box_2)

        model = self.net("model")
        logits_x, logits_w, logits_w_fw, logits_w_fs = self._stacked_pass(model, x, weak)
        logits_s1, logits_s2, logits_s2_fw, logits_s2_fs = self._stacked_pass(model, strong_1, strong_2)

        teacher_w = HardTargets.from_logits(logits_w)
        teacher_w_fw, teacher_w_fs = HardTargets.from_logits(logits_w_fw), HardTargets.from_logits(logits_w_fs)
        target_1, target_2 = teacher_w.cutmixed(mix_normal, box_1), teacher_w.cutmixed(mix_normal, box_2)
        if s.dkd_targets == "mixed":
            target_2_fw, target_2_fs = teacher_w_fw.cutmixed(mix_fw, box_2), teacher_w_fs.cutmixed(mix_fs, box_2)
        else:
            target_2_fw, target_2_fs = teacher_w_fw, teacher_w_fs

        threshold = confidence_threshold(step.iteration, s.threshold_mode, s.tau, s.threshold_ramp)
        p = {name: torch.softmax(logits, dim=1) for name, logits in (
            ("w_fw", logits_w_fw), ("w_fs", logits_w_fs), ("s1", logits_s1), ("s2", logits_s2),
            ("s2_fw", logits_s2_fw), ("s2_fs", logits_s2_fs))}
        supervised = dice_and_cross_entropy(logits_x, batch.label)
        ip = image_perturbation_loss(p["s1"], p["s2"], target_1, target_2, threshold)
        tkd = teacher_distillation_loss(p["w_fw"], p["w_fs"], p["s2_fw"], p["s2_fs"], teacher_w, target_2,
                                        threshold)
        dkd = decoder_distillation_loss(p["s2_fw"], p["s2_fs"], target_2_fw, target_2_fs, threshold)
        kd = distillation_loss(tkd, dkd, s.eta)
        return {"supervised": supervised["total"], "ip": ip, "tkd": tkd, "dkd": dkd, "kd": kd,
                "total": total_loss(supervised["total"], ip, kd, s.loss_weighting)}

    def _stacked_pass(self, model: nn.Module, first: Tensor, second: Tensor) -> tuple[Tensor, ...]:
        """(first, second, weak-dropout second, strong-dropout second) logits of one pass."""
        perturb = FeatureDropoutStack(first.shape[0], self.settings.weak_dropout, self.settings.strong_dropout)
        logits = model(torch.cat([first, second]), perturb=perturb, decoder_dropout=False)
        return split_stacked(logits, first.shape[0], second.shape[0])

    def _mix_teachers(self, x: Tensor, mix: Tensor) -> tuple[HardTargets, HardTargets | None, HardTargets | None]:
        """T_mix (plain pass on the mix images) and, for mixed DKD targets, T_mix^fw and
        T_mix^fs (the perturbed halves of a pass on [x; mix]); no gradient."""
        evaluating = self.settings.teacher_mode == "eval"
        module = self.network("model") if evaluating else self.net("model")
        was_training = module.training
        try:
            if evaluating:
                module.eval()
            with torch.no_grad():
                normal = HardTargets.from_logits(module(mix))
                if self.settings.dkd_targets != "mixed":
                    return normal, None, None
                _, _, fw, fs = self._stacked_pass(module, x, mix)
                return normal, HardTargets.from_logits(fw), HardTargets.from_logits(fs)
        finally:
            module.train(was_training)

    def _views(self, batch: Batch) -> dict[str, Tensor]:
        """The streams and views the step needs, under short names; a clear error if absent."""
        main = self.unlabeled_streams[0]
        wanted = {"mix": MIX_STREAM, "box1": f"{main}/box1", "box2": f"{main}/box2",
                  "strong1": f"{main}/strong1", "strong2": f"{main}/strong2",
                  "mix/strong1": f"{MIX_STREAM}/strong1", "mix/strong2": f"{MIX_STREAM}/strong2"}
        missing = sorted(key for key in wanted.values() if key not in batch.extra)
        if batch.n_unlabeled == 0 or missing:
            raise MethodError("method 'crossmatch' needs unlabelled patches (batch_unlabeled ≥ 1) from two "
                              f"unlabelled streams with their strong views and CutMix boxes; the batch has "
                              f"{batch.n_unlabeled} unlabelled patch(es) and lacks {missing or 'nothing'}")
        return {short: batch.extra[key] for short, key in wanted.items()}


__all__ = ["CrossMatch", "CrossMatchParams", "DKD_TARGETS", "MIX_STREAM", "TEACHER_MODES", "VARIANTS",
           "VARIANT_SETTINGS", "resolve_params"]
