"""SS-Net: pixel-level smoothness (VAT with a Dice divergence) and inter-class separation
(prototype memory) for semi-supervised segmentation (Wu et al., MICCAI 2022; docs/METHODS.md §2).

One step on a batch of B_l labelled + B_u unlabelled patches (the official
``train_ss_3d.py``, whose released checkpoints reproduce the published LA table):

1. ``logits, embedding = model(x)`` in train mode (embedding: the last decoder feature map,
   after its dropout); P = softmax(logits).
2. Memory: the labelled voxels predicted correctly as foreground, projected (eval mode, no
   gradient), at most 32 per class kept by the selector ranking (``_prototypes``); a class
   without any this step keeps its previous step's prototypes (the official memory).
3. L_c,lab on every labelled voxel with its label, L_c,unlab on every unlabelled voxel with
   its argmax pseudo-label (no confidence threshold).
4. L_sup = plain-binary Dice of the foreground channel on the labelled half (the
   cross-entropy is logged, not added: the code's choice).
5. L_lds = VAT on the whole batch (``_vat``): ξ = 10, ε = 10 (LA), one power iteration,
   Dice over both channels; its target is a separate no-grad train-mode pass (dropout
   samples again, BatchNorm updates its statistics); the perturbed passes freeze them.
6. L = L_sup + w(t)·(L_lds + 0.1·(L_c,lab + L_c,unlab)), w(t) = λ·r(⌊t/150⌋, R), λ = 1,
   R = 40, where t counts steps **from 1** (the code increments its counter before it
   computes the weight).

The network is the card's (its ``forward(x, output="features")`` gives the embedding); the
heads (``PrototypeHeads``) are a second trainable network of the method and are not
deployed. At test time SS-Net keeps the largest connected component
(``postprocess_largest_component``; the ``largest_component`` hyperparameter records the
run's choice with the model version).

Speed option (not the code's behaviour, off by default): ``contrastive_voxels`` = n > 0
computes each stream's L_c on n voxels drawn uniformly without replacement (fresh each step)
instead of all of them; the memory is still built from every correctly predicted labelled
voxel. On the LA patch a stream has 2·112·112·80 ≈ 2 M voxels, the M×32 distance matrix and
the heads' activations scale with it. ``vat_target = "main"`` reuses the main pass's
(detached) softmax as the VAT target instead of a fourth forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import Batch, Method, MethodError, NetworkFactory, StepInfo
from ._consistency import ramped_weight
from ._losses import foreground_dice_loss
from ._prototypes import (MEMORY_WEIGHTINGS, PROTOTYPE_KEEP, PrototypeHeads, PrototypeMemory, correct_foreground,
                          voxel_vectors)
from ._registry import register_method
from ._vat import virtual_adversarial_loss

VAT_TARGETS = ("separate", "main")
#: The code computes w(t) after incrementing its 0-based step counter.
WEIGHT_STEP_OFFSET = 1


@dataclass
class SSNetParams:
    """Hyperparameters of SS-Net (defaults: the official LA code, docs/METHODS.md §2.1).

    Attributes:
        consistency: λ, the largest weight of the unsupervised terms (1 on LA, 0.1 on ACDC).
        consistency_rampup: R, the ramp length in units of ``rampup_period`` steps (40 on
            LA: full weight at step 6000; 200 on ACDC).
        rampup_period: steps per ramp unit (150).
        vat_xi: ξ, the power iteration's finite-difference step (10).
        vat_epsilon: ε, the L2 norm of the adversarial perturbation per sample (10 on LA).
        vat_iterations: power iterations (1).
        vat_target: ``"separate"`` (code: a no-grad train-mode pass of its own) or ``"main"``
            (the main pass's softmax, detached; one forward pass fewer).
        contrastive_weight: weight of L_c,lab + L_c,unlab inside the ramped term (0.1).
        memory_size: prototypes kept per class and step (32).
        prototype_selection: ``"lowest"`` (code: the 32 lowest selector scores) or
            ``"highest"`` (the paper's "top-K highest-scoring").
        memory_weighting: ``"code"`` (memory weights ≡ 1, see ``_prototypes``) or
            ``"normalised"`` (w·N/Σw, the described attention weighting).
        projection_dim: width of the projected vectors (32).
        contrastive_voxels: 0 = L_c on every voxel (code); n > 0 = on n random voxels per
            stream (a documented speed option).
        largest_component: keep the largest connected component at test time (the code's
            ``--nms 1``); recorded with the model version for the inference side.
    """

    consistency: float = 1.0
    consistency_rampup: float = 40.0
    rampup_period: int = 150
    vat_xi: float = 10.0
    vat_epsilon: float = 10.0
    vat_iterations: int = 1
    vat_target: str = "separate"
    contrastive_weight: float = 0.1
    memory_size: int = 32
    prototype_selection: str = "lowest"
    memory_weighting: str = "code"
    projection_dim: int = 32
    contrastive_voxels: int = 0
    largest_component: bool = True


@register_method
class SSNet(Method):
    """SS-Net: VAT smoothness + prototype class separation; see the module docstring.

    Networks: ``model`` (the card's network, trained and deployed) and ``heads``
    (``PrototypeHeads``, trained, not deployed). Logged losses: ``supervised`` (= ``dice``),
    ``ce`` (not in the total), ``lds``, ``contrastive_labeled``, ``contrastive_unlabeled``,
    ``consistency_weight`` and ``total``.
    """

    name = "ss-net"
    description = "SS-Net: VAT smoothness with a Dice divergence + prototype class separation (LA constants)"
    Params = SSNetParams
    step_params = ("rampup_period",)
    weight_ramps = ("consistency_rampup",)
    trainable_networks = ("model", "heads")
    deployed_network_name = "model"
    #: SS-Net's test script keeps the largest connected component (26-connected) by default.
    postprocess_largest_component = True

    def __init__(self, card, params: Any = None, *, network_factory: NetworkFactory | None = None):
        super().__init__(card, params, network_factory=network_factory)
        self.prototype_memory = PrototypeMemory(card.network.num_classes)

    @classmethod
    def check_params(cls, params: SSNetParams) -> None:
        problems = []
        if params.consistency < 0 or params.consistency_rampup < 0 or params.contrastive_weight < 0:
            problems.append("consistency, consistency_rampup and contrastive_weight must be ≥ 0")
        if params.rampup_period < 1 or params.vat_iterations < 1:
            problems.append("rampup_period and vat_iterations must be ≥ 1")
        if params.vat_epsilon < 0 or params.vat_xi <= 0:
            problems.append("vat_xi must be > 0 and vat_epsilon ≥ 0")
        if params.memory_size < 2 or params.projection_dim < 1 or params.contrastive_voxels < 0:
            problems.append("memory_size must be ≥ 2, projection_dim ≥ 1, contrastive_voxels ≥ 0")
        for field_name, value, allowed in (("vat_target", params.vat_target, VAT_TARGETS),
                                           ("prototype_selection", params.prototype_selection, PROTOTYPE_KEEP),
                                           ("memory_weighting", params.memory_weighting, MEMORY_WEIGHTINGS)):
            if value not in allowed:
                problems.append(f"{field_name} must be one of {list(allowed)}, got {value!r}")
        if problems:
            raise MethodError(f"method {cls.name!r}: " + "; ".join(problems))

    @classmethod
    def recommended_training(cls) -> dict[str, Any]:
        """The official LA recipe: SGD 0.01, momentum 0.9, weight decay 1e-4, lr ×0.1 every
        2500 steps, 15000 steps of 2 labelled + 2 unlabelled patches."""
        return {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                "step_size": 2500, "gamma": 0.1, "iterations": 15000, "batch_labeled": 2, "batch_unlabeled": 2}

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        model = factory(self.card.network)
        channels = getattr(model, "feature_channels", self.card.network.base_filters)
        heads = PrototypeHeads(channels, self.card.network.num_classes, self.params.projection_dim)
        return {"model": model, "heads": heads}

    # -- schedule ------------------------------------------------------------------------------

    def consistency_weight(self, iteration: int) -> float:
        """w = λ·r(⌊(t+1) / rampup_period⌋, R) for the 0-based step t (the code's counter is t+1)."""
        p = self.params
        return ramped_weight(p.consistency, iteration + WEIGHT_STEP_OFFSET, p.consistency_rampup, p.rampup_period)

    # -- the step --------------------------------------------------------------------------------

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        p, n_lab = self.params, batch.n_labeled
        logits, embedding = self.net("model")(batch.image, output="features")
        prob = torch.softmax(logits, dim=1)
        prediction = prob.argmax(dim=1)
        contrastive_lab, contrastive_unl = self._class_separation(embedding, prediction, batch.label, n_lab)
        ce = F.cross_entropy(logits[:n_lab], batch.label)
        dice = foreground_dice_loss(prob[:n_lab], batch.label, "binary")
        lds = self._smoothness(batch.image, prob)
        weight = self.consistency_weight(step.iteration)
        total = dice + weight * (lds + p.contrastive_weight * (contrastive_lab + contrastive_unl))
        return {"total": total, "supervised": dice, "dice": dice, "ce": ce.detach(), "lds": lds,
                "contrastive_labeled": contrastive_lab, "contrastive_unlabeled": contrastive_unl,
                "consistency_weight": torch.tensor(weight)}

    def _smoothness(self, image: Tensor, prob: Tensor) -> Tensor:
        p = self.params
        target = prob.detach() if p.vat_target == "main" else None
        return virtual_adversarial_loss(self.net("model"), image, xi=p.vat_xi, epsilon=p.vat_epsilon,
                                        iterations=p.vat_iterations, target=target,
                                        bn_module=self.network("model"), inner_model=self.network("model")).loss

    def _class_separation(self, embedding: Tensor, prediction: Tensor, labels: Tensor,
                          n_lab: int) -> tuple[Tensor, Tensor]:
        """(L_c,lab, L_c,unlab); the memory comes from the labelled half."""
        p = self.params
        heads = self.net("heads")
        lab_vectors, lab_labels = voxel_vectors(embedding[:n_lab]), labels.reshape(-1)
        correct = correct_foreground(prediction[:n_lab].reshape(-1), lab_labels)
        memory = self.prototype_memory.update(self.network("heads").build_memory(
            lab_vectors[correct], lab_labels[correct], size=p.memory_size, keep=p.prototype_selection))
        losses = []
        streams = [(lab_vectors, lab_labels)]
        if embedding.shape[0] > n_lab:
            streams.append((voxel_vectors(embedding[n_lab:]), prediction[n_lab:].reshape(-1)))
        for vectors, stream_labels in streams:
            vectors, stream_labels = self._subsample(vectors, stream_labels)
            losses.append(heads(vectors, stream_labels, memory, p.memory_weighting))
        if len(losses) == 1:
            losses.append(embedding.new_zeros(()))
        return losses[0], losses[1]

    def _subsample(self, vectors: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        count = self.params.contrastive_voxels
        if count == 0 or vectors.shape[0] <= count:
            return vectors, labels
        chosen = torch.randperm(vectors.shape[0], device=vectors.device)[:count]
        return vectors[chosen], labels[chosen]


__all__ = ["SSNet", "SSNetParams", "VAT_TARGETS"]
