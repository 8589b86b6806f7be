"""The method plug-in interface: what a training method owns and what the trainer owns.

A **method** owns its networks (a student, an EMA teacher, extra heads...), its per-step
losses, its hyperparameters (a dataclass whose defaults come from the paper's official code,
docs/METHODS.md) and any state of its own (a feature memory...). The **trainer** owns everything
else: sampling the labelled + unlabelled halves of each batch, augmentation, the optimiser and
the learning-rate schedule, the backward pass, checkpoints, progress events, stopping and DDP.

One optimiser step, as the trainer runs it::

    method.set_training(True)
    optimizer.zero_grad()
    losses = method.training_step(batch, step)     # dict of scalar tensors, "total" included
    losses["total"].backward()                      # the trainer backpropagates "total" only
    optimizer.step()
    method.after_step(step)                         # e.g. the EMA teacher update

So a method never calls ``backward`` on its total nor steps the optimiser. A method that needs
an inner gradient (SS-Net's adversarial direction) takes it with ``torch.autograd.grad`` with
respect to its own tensors, so no ``.grad`` of a parameter is left behind.

Networks: ``build_networks`` returns named modules; ``trainable_networks`` names those whose
parameters the optimiser updates (and which DDP wraps); ``deployed_network`` names the one
that becomes the model version (the student for UA-MT, the teacher for some others). Inside
``training_step`` call networks through ``self.net(name)``: under ``torchrun`` that is the
DistributedDataParallel wrapper, whose ``forward`` must see every use of the parameters (the
shipped networks take ``output=`` / ``perturb=`` keywords for that reason).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import SemisegError
from .._field_types import check_field_types
from ..cards import ModelCard, NetworkSpec

NetworkFactory = Callable[[NetworkSpec], nn.Module]


class MethodError(SemisegError):
    """A method is unknown, misconfigured, or produced an unusable loss."""


@dataclass(frozen=True)
class NoParams:
    """A method without hyperparameters."""


@dataclass
class Batch:
    """One training batch, already on the training device.

    Attributes:
        image: (B_l + B_u, C, Z, Y, X) float32 patches, the B_l labelled ones first and then
            the B_u unlabelled ones of the main unlabelled stream: the papers' layout, where
            one forward pass sees both halves and BatchNorm normalises over all of them.
        label: (B_l, Z, Y, X) int64 class indices of the labelled patches.
        n_labeled: B_l.
        extra: tensors asked for by the method's data hooks: each further unlabelled stream
            under its name ((B_u, C, Z, Y, X)), and each per-sample view under
            ``"<stream>/<view>"`` (stacked over that stream's samples; the labelled stream is
            ``"labeled"``).
    """

    image: Tensor
    label: Tensor
    n_labeled: int
    extra: dict[str, Tensor] = field(default_factory=dict)

    @property
    def labeled_image(self) -> Tensor:
        return self.image[: self.n_labeled]

    @property
    def unlabeled_image(self) -> Tensor:
        return self.image[self.n_labeled:]

    @property
    def n_unlabeled(self) -> int:
        return self.image.shape[0] - self.n_labeled


@dataclass(frozen=True)
class StepInfo:
    """Where the run is, for ramp-ups and schedules inside a method.

    Attributes:
        iteration: 0-based index of this optimiser step (the papers' ``iter_num`` before it
            is incremented).
        iterations: total steps of the run.
        lr: the learning rate this step uses.
    """

    iteration: int
    iterations: int
    lr: float


def default_network_factory(spec: NetworkSpec) -> nn.Module:
    """``engine.networks.build_network`` (imported late: the registry must not need it)."""
    from ..networks import build_network
    return build_network(spec)


class Method(abc.ABC):
    """Base of every training method; see the module docstring for the contract.

    Class attributes a subclass sets:
        name: registry name (``"supervised"``, ``"mean-teacher"``...).
        description: one line for the CLI and the GUI.
        Params: the hyperparameter dataclass (defaults from the paper's code).
        uses_unlabeled: False for methods that ignore unlabelled data; the trainer then
            loads none and ``batch.image`` holds the labelled half only.
        unlabeled_streams: names of the independent unlabelled streams the method wants;
            the first forms the unlabelled half of ``batch.image``, the others come in
            ``batch.extra`` (CrossMatch's CutMix source would be a second stream).
        trainable_networks: networks whose parameters the optimiser updates (DDP wraps them).
        deployed_network_name: the network that becomes the model version.
        find_unused_parameters: passed to DistributedDataParallel (True when some trainable
            parameters take no part in some steps).

    Args:
        card: the model card (network, classes, patch).
        params: a ``Params`` instance, or a dict of overrides of its defaults.
        network_factory: builds a network from a ``NetworkSpec``; the engine's
            ``build_network`` by default.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    uses_unlabeled: ClassVar[bool] = True
    unlabeled_streams: ClassVar[tuple[str, ...]] = ("unlabeled",)
    trainable_networks: ClassVar[tuple[str, ...]] = ("model",)
    deployed_network_name: ClassVar[str] = "model"
    find_unused_parameters: ClassVar[bool] = False
    #: Hyperparameters counted in optimiser steps of the published run (ramp lengths), which
    #: ``schedule_for`` rescales for a shorter or longer run.
    step_params: ClassVar[tuple[str, ...]] = ()
    #: Lengths of the ramps of an unsupervised term's weight (0 = full weight from the start),
    #: which ``schedule_for(..., warm_start=True)`` sets to 0 for a fine-tune.
    weight_ramps: ClassVar[tuple[str, ...]] = ()

    def __init__(self, card: ModelCard, params: Any = None, *, network_factory: NetworkFactory | None = None):
        self.card = card
        self.params = params if isinstance(params, self.Params) else self.make_params(params)
        self.networks: dict[str, nn.Module] = dict(self.build_networks(network_factory or default_network_factory))
        missing = set(self.trainable_networks) | {self.deployed_network_name}
        missing -= set(self.networks)
        if missing:
            raise MethodError(f"method {self.name!r}: build_networks() did not build {sorted(missing)}")
        self._callable: dict[str, nn.Module] = dict(self.networks)

    # -- hyperparameters ---------------------------------------------------------------------

    @classmethod
    def make_params(cls, values: Mapping[str, Any] | None = None) -> Any:
        """The ``Params`` dataclass from its defaults overridden by ``values``.

        Raises:
            MethodError: a key is not a hyperparameter of this method, or a value has the
                wrong type.
        """
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls.Params)}
        unknown = set(values) - names
        if unknown:
            raise MethodError(f"method {cls.name!r}: unknown hyperparameter(s) {sorted(unknown)}; "
                              f"it has {sorted(names) or 'none'}")
        values = check_field_types(cls.Params, values, where=f"method {cls.name!r}", error=MethodError)
        try:
            params = cls.Params(**values)
        except (TypeError, ValueError) as exc:
            raise MethodError(f"method {cls.name!r}: {exc}") from None
        cls.check_params(params)
        return params

    @classmethod
    def check_params(cls, params: Any) -> None:
        """Raise ``MethodError`` for values the method cannot use (override when needed)."""

    @classmethod
    def learns_from_unlabeled(cls) -> bool:
        """Whether unlabelled volumes shape the model at all (what ``semiseg methods`` shows).

        ``uses_unlabeled`` only says whether the trainer feeds its unlabelled stream; a method
        that reads unlabelled material by itself (PLC-KD: stored soft labels) overrides this.
        """
        return cls.uses_unlabeled

    @classmethod
    def recommended_training(cls) -> dict[str, Any]:
        """``TrainConfig`` overrides of the method's published recipe (optimiser, schedule, length).

        The trainer owns the optimiser, so a method can only recommend; the papers' full
        protocol (benchmarks ``full``) applies these, while a card's own recipe (say the small
        CPU card's) is kept otherwise. ``{}`` keeps the card's recipe.
        """
        return {}

    @classmethod
    def schedule_for(cls, iterations: int, *, warm_start: bool = False) -> dict[str, Any]:
        """Hyperparameter overrides that fit the published ramps to a run of ``iterations`` steps.

        A ramp measured in steps (Mean Teacher's 40 × 150 of a 6000-step run) barely starts in
        a 400-step CPU run, which would then train as supervised-only. This keeps each ramp's
        share of the run: every ``step_params`` default is scaled by ``iterations`` over the
        published length (``recommended_training()["iterations"]``), never below 1 step.

        ``warm_start``: the run starts from a trained model (fine-tuning), so each
        ``weight_ramps`` field is 0: the unsupervised term has its full weight from the first
        step. The ramps protect a random initialisation from its own noisy targets; a model
        that already segments has none to be protected from, and a ramp fitted to a short
        fine-tune would leave the term near 0 for most of it (benchmarks/RESULTS.md §7).
        Thresholds that ramp (UA-MT's, CrossMatch's) keep their fitted length.
        ``{}`` when the method has no such field.
        """
        published = cls.recommended_training().get("iterations")
        defaults = cls.default_params()
        fitted = {} if not published else \
            {name: max(1, round(defaults[name] * iterations / published)) for name in cls.step_params}
        return {**fitted, **({name: 0 for name in cls.weight_ramps} if warm_start else {})}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The defaults as plain data (for the CLI help and the GUI form)."""
        return dataclasses.asdict(cls.Params())

    def params_dict(self) -> dict[str, Any]:
        """This run's hyperparameters as plain data (recorded with the model version)."""
        return dataclasses.asdict(self.params)

    # -- networks ------------------------------------------------------------------------------

    @abc.abstractmethod
    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        """Build every network of the method (on CPU; the trainer moves them)."""

    def net(self, name: str) -> nn.Module:
        """The module to call in ``training_step``: the DDP wrapper when training distributed."""
        return self._callable[name]

    def network(self, name: str) -> nn.Module:
        """The bare module (never a DDP wrapper): for state dicts, EMA, evaluation."""
        return self.networks[name]

    def deployed_network(self) -> nn.Module:
        return self.networks[self.deployed_network_name]

    def exclude_cases(self, case_ids: Collection[str]) -> None:
        """Never learn from these cases (the run's validation cases). The trainer keeps them out of
        its own streams; a method that reads cases by itself (PLC-KD's soft labels) drops them."""

    def branch_networks(self) -> Mapping[str, nn.Module]:
        """Networks besides the deployed one whose validation Dice the trainer also reports, by name
        (e.g. the dual-branch method's teacher decoder); none by default."""
        return {}

    def deployed_state_dict(self) -> dict[str, Tensor]:
        """The weights of the network a model version keeps (``deployed_spec`` builds it)."""
        return self.deployed_network().state_dict()

    def deployed_spec(self) -> NetworkSpec:
        """The ``NetworkSpec`` that ``deployed_state_dict`` loads into (the card's by default)."""
        return self.card.network

    def wrap_trainable(self, wrap: Callable[[nn.Module, bool], nn.Module]) -> None:
        """Replace the callable form of each trainable network by ``wrap(module, find_unused)``."""
        for name in self.trainable_networks:
            self._callable[name] = wrap(self.networks[name], self.find_unused_parameters)

    def to(self, device: torch.device) -> "Method":
        for module in self.networks.values():
            module.to(device)
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the optimiser updates (those of the trainable networks)."""
        for name in self.trainable_networks:
            yield from self.networks[name].parameters()

    def set_training(self, training: bool) -> None:
        """Put the networks in training (True) or evaluation mode; a teacher that stays in
        train mode (UA-MT) overrides this."""
        for module in self.networks.values():
            module.train(training)

    # -- the step --------------------------------------------------------------------------------

    @abc.abstractmethod
    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        """Compute the step's losses.

        Returns:
            Named scalar tensors; ``"total"`` is the one the trainer backpropagates, the
            others are logged (detach them or not, the trainer only reads their values).
        """

    def after_step(self, step: StepInfo) -> None:
        """Called after the optimiser step (EMA updates, memory refresh...)."""

    # -- data hooks (optional) ----------------------------------------------------------------

    def sample_views(self, stream: str, image: np.ndarray, label: np.ndarray | None,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Extra per-sample arrays made on the data side, after the standard augmentation.

        Runs in the data pipeline (possibly a worker process) with a generator seeded from
        (seed, rank, iteration, sample), so that it is deterministic and resumable.

        Args:
            stream: ``"labeled"`` or one of ``unlabeled_streams``.
            image: (C, Z, Y, X) float32 augmented patch.
            label: (Z, Y, X) int64 patch (labelled stream) or None.
            rng: this sample's generator; use it for every random draw.

        Returns:
            Named arrays of one shape per name across samples (e.g. CrossMatch's strong
            views and CutMix boxes); they reach ``batch.extra["<stream>/<name>"]``.
        """
        return {}

    # -- checkpoints --------------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        """State beyond the networks' weights (tensors and plain data only)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint keeps of the method; loadable with ``weights_only=True``."""
        return {"networks": {name: module.state_dict() for name, module in self.networks.items()},
                "extra": self.extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s output (networks by name, then the extra state)."""
        stored = state.get("networks", {})
        missing = set(self.networks) - set(stored)
        if missing:
            raise MethodError(f"method {self.name!r}: the checkpoint has no weights for {sorted(missing)}")
        for name, module in self.networks.items():
            module.load_state_dict(stored[name])
        self.load_extra_state(state.get("extra", {}))

    def initialize_from(self, weights: Mapping[str, Tensor]) -> list[str]:
        """Start fine-tuning from a deployed model's weights.

        The default loads them into every network with exactly those parameter names and
        shapes (a student and its teacher alike, so an EMA teacher starts equal to its student).

        Returns:
            The names of the networks that were initialised.

        Raises:
            MethodError: no network of the method has that layout.
        """
        layout = {key: tuple(value.shape) for key, value in weights.items()}
        loaded = [name for name, module in self.networks.items()
                  if {key: tuple(value.shape) for key, value in module.state_dict().items()} == layout]
        if not loaded:
            raise MethodError(f"method {self.name!r}: the initial weights fit none of its networks "
                              f"({', '.join(self.networks)}); was the model trained with another card?")
        for name in loaded:
            self.networks[name].load_state_dict(weights)
        return loaded

    def describe(self) -> dict[str, Any]:
        """Name and hyperparameters, as recorded with a run."""
        return {"method": self.name, "params": self.params_dict()}


__all__ = ["Batch", "Method", "MethodError", "NetworkFactory", "NoParams", "StepInfo",
           "default_network_factory"]
