"""SS-Net's class-separation term: per-step prototype memory and the learned-weight cosine
loss (docs/METHODS.md §2.1 steps 4–5; the memory of Alonso et al., ICCV 2021).

Everything works on voxel vectors: the decoder embedding (B, F, Z, Y, X) becomes (N, F) rows.

The heads (``PrototypeHeads``), trained with the network:

- projection: Linear(F→32)–BN1d–ReLU–Linear(32→32);
- prediction: Linear(32→32)–BN1d–ReLU–Linear(32→32);
- per class c, a feature selector and a memory selector: Linear(32→32)–BN1d–LeakyReLU(0.2)–
  Linear(32→1), whose sigmoid is an attention weight.

Memory, updated every step: the labelled voxels the network predicts correctly *as
foreground*, projected by the projection head in eval mode without gradient; per class, when
there are more than ``size`` of them, they are ranked by sigmoid(feature selector) and the
``size`` **lowest**-ranked are kept (the official code sorts ascending and keeps the head of
the list, despite its comment "highest rankings"; ``keep="highest"`` is the paper's "top-K
highest-scoring"). A class with no such voxel this step keeps the vectors of the last step
that had some (``PrototypeMemory``, the official ``feature_memory.py``: one ``FeatureMemory``
for the whole run, a class overwritten only when it has candidates); until its first, it has
none. Class 0 never has a memory. The memory is not saved in checkpoints: a resumed run starts
with an empty one, as an official run does.

Loss of one stream (labelled voxels with their labels, or unlabelled voxels with argmax
pseudo-labels), with f = prediction(projection(embedding)) in train mode:
for each class c with a memory M_c (N > 1 rows) and more than one voxel (M rows),
D = 1 − cos(f_i, m_j) (M×N), w_f = sigmoid(selector_c(f.detach())) rescaled to mean 1,
w_m the memory weights, and loss_c = mean(D·w_f·w_mᵀ); L_c = Σ_c loss_c / K.

Memory weights: the official code rescales sigmoid(memory_selector_c(M̂_c)) (M̂ the
L2-normalised memory) after transposing it to 1×N, along its length-1 axis, so every weight
divides itself: w_m ≡ 1 (``memory_weighting="code"``, the default; the memory selectors then
receive no gradient). ``"normalised"`` is the described behaviour, w_m·N/Σw_m.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROTOTYPE_KEEP = ("lowest", "highest")
MEMORY_WEIGHTINGS = ("code", "normalised")

Scorer = Callable[[Tensor], Tensor]
Memory = Sequence[Tensor | None]


def _mlp(in_dim: int, dim: int, out_dim: int, activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.BatchNorm1d(dim), activation, nn.Linear(dim, out_dim))


def _selector(dim: int) -> nn.Sequential:
    return _mlp(dim, dim, 1, nn.LeakyReLU(negative_slope=0.2, inplace=True))


def voxel_vectors(maps: Tensor) -> Tensor:
    """(B, F, Z, Y, X) feature maps → (B·Z·Y·X, F) rows in (b, z, y, x) order."""
    return maps.movedim(1, -1).reshape(-1, maps.shape[1])


def correct_foreground(prediction: Tensor, labels: Tensor) -> Tensor:
    """Voxels predicted correctly and as a foreground class: (argmax = y) ∧ (argmax > 0)."""
    return (prediction == labels) & (prediction > 0)


def select_prototypes(vectors: Tensor, labels: Tensor, num_classes: int, scorers: Sequence[Scorer], *,
                      size: int = 32, keep: str = "lowest") -> list[Tensor | None]:
    """The per-class memory from candidate vectors (no gradient).

    Args:
        vectors: (N, D) projected candidate vectors.
        labels: (N,) their classes.
        num_classes: K.
        scorers: per class, maps (n, D) vectors to (n, 1) ranking logits.
        size: the most vectors a class keeps (32).
        keep: ``"lowest"`` (code) or ``"highest"`` (paper) sigmoid scores.

    Returns:
        K entries: a detached (≤ size, D) tensor, or None for a class without candidates.
    """
    memory: list[Tensor | None] = []
    with torch.no_grad():
        for c in range(num_classes):
            candidates = vectors[labels == c].detach()
            if candidates.shape[0] == 0:
                memory.append(None)
                continue
            if candidates.shape[0] > size:
                scores = torch.sigmoid(scorers[c](candidates))[:, 0]
                order = torch.sort(scores, descending=keep == "highest").indices
                candidates = candidates[order[:size]]
            memory.append(candidates)
    return memory


def class_separation_loss(features: Tensor, labels: Tensor, memory: Memory, feature_scorers: Sequence[Scorer],
                          memory_scorers: Sequence[Scorer], *, memory_weighting: str = "code") -> Tensor:
    """L_c of one stream (see the module docstring).

    Args:
        features: (M, D) predicted vectors of the stream's voxels (they carry the gradient).
        labels: (M,) their classes (labels or pseudo-labels).
        memory: per class, an (N, D) constant memory or None.
        feature_scorers, memory_scorers: per class, (n, D) → (n, 1) attention logits.
        memory_weighting: ``"code"`` (w_m ≡ 1) or ``"normalised"`` (w_m·N/Σw_m).

    Returns:
        A scalar: Σ_c loss_c / K (0 when no class has both a memory and features).
    """
    num_classes = len(memory)
    loss = features.new_zeros(())
    for c in range(num_classes):
        bank = memory[c]
        class_features = features[labels == c]
        if bank is None or bank.shape[0] <= 1 or class_features.shape[0] <= 1:
            continue
        bank = F.normalize(bank.detach().to(features.dtype), dim=1)
        distances = 1.0 - F.normalize(class_features, dim=1) @ bank.t()
        feature_weights = torch.sigmoid(feature_scorers[c](class_features.detach()))
        feature_weights = feature_weights * (feature_weights.shape[0] / feature_weights.sum())
        distances = distances * feature_weights
        if memory_weighting == "normalised":
            memory_weights = torch.sigmoid(memory_scorers[c](bank)).t()
            distances = distances * (memory_weights * (memory_weights.shape[1] / memory_weights.sum()))
        loss = loss + distances.mean()
    return loss / num_classes


class PrototypeMemory:
    """The per-class prototypes carried from step to step (the official ``FeatureMemory``).

    Args:
        num_classes: K; every class starts without a memory.
    """

    def __init__(self, num_classes: int):
        self.banks: list[Tensor | None] = [None] * num_classes

    def update(self, selected: Memory) -> list[Tensor | None]:
        """Replace each class that has new prototypes, keep the others; returns the memory now.

        Args:
            selected: this step's ``select_prototypes`` output (None: no candidate of that class).
        """
        self.banks = [old if new is None else new for new, old in zip(selected, self.banks)]
        return list(self.banks)


class PrototypeHeads(nn.Module):
    """The trainable heads of SS-Net's class separation; see the module docstring.

    ``forward`` computes one stream's L_c, so that a DistributedDataParallel wrapper sees
    every use of the parameters; it adds 0·Σθ over all head parameters so that each gets a
    (zero) gradient even in a step where a class has no memory. DDP then needs no
    ``find_unused_parameters``, and SGD's momentum and weight decay keep acting on a selector
    in such a step, as in the official code, whose ``zero_grad`` zeroes gradients rather than
    dropping them (the trainer's ``set_to_none`` would otherwise skip that parameter).

    Args:
        in_dim: channels F of the decoder embedding.
        num_classes: K.
        dim: width of the projected vectors (32).
    """

    def __init__(self, in_dim: int, num_classes: int, dim: int = 32):
        super().__init__()
        self.num_classes = num_classes
        self.projection = _mlp(in_dim, dim, dim, nn.ReLU(inplace=True))
        self.prediction = _mlp(dim, dim, dim, nn.ReLU(inplace=True))
        self.feature_selectors = nn.ModuleList(_selector(dim) for _ in range(num_classes))
        self.memory_selectors = nn.ModuleList(_selector(dim) for _ in range(num_classes))

    def forward(self, vectors: Tensor, labels: Tensor, memory: Memory, memory_weighting: str = "code") -> Tensor:
        """L_c of one stream.

        Args:
            vectors: (M, F) embedding rows (``voxel_vectors``) of the stream, with gradient.
            labels: (M,) their classes.
            memory: ``build_memory``'s output.
            memory_weighting: see ``class_separation_loss``.
        """
        features = self.prediction(self.projection(vectors))
        loss = class_separation_loss(features, labels, memory, self.feature_selectors, self.memory_selectors,
                                     memory_weighting=memory_weighting)
        return loss + 0.0 * sum(p.sum() for p in self.parameters())

    def build_memory(self, vectors: Tensor, labels: Tensor, *, size: int = 32,
                     keep: str = "lowest") -> list[Tensor | None]:
        """The step's memory from the correctly predicted foreground vectors (no gradient).

        The projection runs in eval mode (running statistics, as the code's ``model.eval()``)
        and the ranking in the heads' current mode (train mode during training: its
        BatchNorm uses the candidates' statistics).

        Args:
            vectors: (N, F) embedding rows of the candidates.
            labels: (N,) their (correctly predicted) classes.
        """
        if vectors.shape[0] == 0:
            return [None] * self.num_classes
        training = self.training
        with torch.no_grad():
            self.projection.eval()
            projected = self.projection(vectors.detach())
            self.projection.train(training)
        return select_prototypes(projected, labels, self.num_classes, self.feature_selectors, size=size, keep=keep)


__all__ = ["MEMORY_WEIGHTINGS", "PROTOTYPE_KEEP", "PrototypeHeads", "PrototypeMemory", "class_separation_loss", "correct_foreground",
           "select_prototypes", "voxel_vectors"]
