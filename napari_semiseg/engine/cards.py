"""Model cards: one YAML per configuration, read into typed dataclasses.

A card says everything needed to build, feed and train a network: the network and its
channels, the patch, the spacing and intensity preprocessing, the sliding-window settings
and the default training recipe. All sizes are in **(z, y, x)** order, like every array in
the package (the LA papers quote their patch as 112×112×80 in x, y, z: here it is
``[80, 112, 112]``).

Cards ship in ``models/`` at the repository root, which is installed inside the package as
``napari_semiseg/models`` so that a non-editable install finds them too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import SemisegError
from ._field_types import check_field_types


class CardError(SemisegError):
    """A model card is missing or malformed."""


#: Levels of the shipped networks when a card does not say (kept here, torch-free, so that
#: a card's patch can be checked without building the network).
DEFAULT_LEVELS = {"vnet": 5, "unet-small": 3}
NORMALIZATIONS = ("batchnorm", "instancenorm", "none")
INTENSITIES = ("zscore", "zscore-once", "window", "none")
BLENDINGS = ("constant", "gaussian")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "poly", "constant")
#: Compute precision of a recipe (engine/_compute.py says what "auto" means on each device).
PRECISIONS = ("auto", "bf16", "fp32")

# Upper bounds of a card's sizes, checked when the card is read, before anything allocates: a
# typo (patch_size 100000³, base_filters 1600) must end in a message, not in a petabyte
# allocation or hours of swapping. Each lies far beyond any published configuration.
#: Voxels per patch side, and per patch: a 256³ patch at 16 base filters already needs 1 GiB
#: per float32 feature map of the first stage (the LA patch is 80×112×112, about 1 M voxels).
MAX_PATCH_SIDE = 1024
MAX_PATCH_VOXELS = 256 ** 3
MIN_PATCH_SIDE = 8
#: Channels of the first stage (the LA V-Net: 16); parameters grow with its square (128: ~600 M).
MAX_BASE_FILTERS = 128
#: Image channels (multi-parametric MRI has four).
MAX_IN_CHANNELS = 64
#: Classes, background included: label maps are stored as uint8 (values 0..255).
MAX_CLASSES = 256
#: Resolutions of a U-shape: each halves the patch, so 8 already needs sides that are multiples of 128.
MAX_LEVELS = 8
#: Windows per network call: memory grows linearly (256 LA windows: ~16 GiB for the first feature map).
MAX_WINDOW_BATCH = 256
#: Patches in each half of a batch (the papers use 2).
MAX_BATCH = 256
#: Optimiser steps, and every count of steps in a recipe (the papers train 6 000 to 30 000).
MAX_ITERATIONS = 10_000_000
#: Target spacing in mm: finer than 0.01 mm is no clinical scanner's (a 300 mm CT would become
#: 30 000 voxels a side); coarser than 100 mm leaves nothing to segment.
SPACING_RANGE_MM = (0.01, 100.0)
#: Seeds NumPy, PyTorch and the samplers all accept.
SEED_LIMIT = 2 ** 32
TOP_LEVEL_KEYS = ("name", "description", "modality", "network", "patch_size", "preprocessing",
                  "inference", "training", "source")


@dataclass(frozen=True)
class NetworkSpec:
    """Which network to build.

    Attributes:
        name: ``"vnet"`` (the LA papers' V-Net) or ``"unet-small"`` (a light 3-D U-Net).
        in_channels: image channels.
        num_classes: output classes, background included.
        base_filters: channels of the first stage; memory and time grow with its square.
        normalization: ``"batchnorm"``, ``"instancenorm"`` or ``"none"``.
        dropout: build the Dropout3d layers (MC dropout, the papers' ``has_dropout``).
        dropout_rate: their probability.
        levels: resolutions of the U-shape (``unet-small``: default 3); None is the
            network's own (the V-Net has exactly 5).
        second_decoder: build a second ("student") decoder on the shared encoder, for the
            dual-branch KD method.
    """

    name: str = "vnet"
    in_channels: int = 1
    num_classes: int = 2
    base_filters: int = 16
    normalization: str = "batchnorm"
    dropout: bool = True
    dropout_rate: float = 0.5
    levels: int | None = None
    second_decoder: bool = False

    @property
    def resolved_levels(self) -> int:
        """Resolutions of the U-shape, this spec's or the network's default."""
        return self.levels or DEFAULT_LEVELS.get(self.name, 1)

    @property
    def input_multiple(self) -> int:
        """Patch (and network input) sizes must be multiples of this: 2 ** downsamplings."""
        return 2 ** (self.resolved_levels - 1)


@dataclass(frozen=True)
class Preprocessing:
    """How a volume becomes network input.

    Attributes:
        target_spacing: resample to this (z, y, x) spacing in mm first; None keeps the grid.
        intensity: ``"zscore"`` (over the whole volume), ``"zscore-once"`` (the same, except
            that a volume already holding the z-score of its whole scan, ``Volume.zscored``:
            the LA ``mri_norm2.h5``, is fed as stored, as the LA papers' code does),
            ``"window"`` (clip to ``window`` then scale to 0..1, then z-score as the pancreas
            protocol does) or ``"none"`` (as stored, always).
        window: (low, high) intensity window, e.g. CT HU −125..275.
    """

    target_spacing: tuple[float, float, float] | None = None
    intensity: str = "zscore"
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class InferenceSpec:
    """Sliding-window settings.

    Attributes:
        stride: window step along (z, y, x) in voxels for the papers' dense grid; None
            means ``overlap`` decides.
        overlap: fraction of the patch shared by neighbouring windows (our faster default).
        blending: ``"constant"`` (the papers) or ``"gaussian"``.
        window_batch: windows per network call; memory grows linearly with it.
        largest_component: keep only the largest connected foreground component.
    """

    stride: tuple[int, int, int] | None = None
    overlap: float = 0.5
    blending: str = "constant"
    window_batch: int = 4
    largest_component: bool = False


@dataclass(frozen=True)
class TrainingSpec:
    """The default training recipe (a method may override its own hyperparameters).

    Attributes:
        method: default method name (``"supervised"``, ``"mean-teacher"``, ...).
        iterations: optimiser steps.
        batch_labeled, batch_unlabeled: the two halves of each batch.
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr, momentum, weight_decay: optimiser settings.
        schedule: ``"step"`` (lr·gamma^⌊t/step_size⌋), ``"poly"``
            (lr·(1 − t/horizon)^poly_power) or ``"constant"``; t is the 0-based step.
        step_size, gamma: for ``"step"``.
        poly_horizon, poly_power: for ``"poly"``; a horizon of None means ``iterations``.
        validate_every, checkpoint_every: in iterations.
        seed: random seed.
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on the CPU), ``"bf16"`` or ``"fp32"``.
        method_params: hyperparameters of the default method.
    """

    method: str = "supervised"
    iterations: int = 6000
    batch_labeled: int = 2
    batch_unlabeled: int = 2
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_size: int = 2500
    gamma: float = 0.1
    poly_horizon: int | None = None
    poly_power: float = 0.9
    validate_every: int = 200
    checkpoint_every: int = 500
    seed: int = 1337
    precision: str = "auto"
    method_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCard:
    """One shipped or user configuration; see the module docstring."""

    name: str
    description: str
    modality: str
    network: NetworkSpec
    patch_size: tuple[int, int, int]
    preprocessing: Preprocessing = Preprocessing()
    inference: InferenceSpec = InferenceSpec()
    training: TrainingSpec = TrainingSpec()
    source: str | None = None

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples) that ``card_from_dict`` reads back."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes) -> "ModelCard":
        return dataclasses.replace(self, **changes)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls, data: dict | None, where: str, section: str = ""):
    """``cls`` from one section of a card, every value of the type its field declares.

    Args:
        where: the card's file (or the object it came from), which messages start with.
        section: the section's name in messages, e.g. ``"network"`` (→ ``network.dropout``).
    """
    prefix = f"{section}." if section else ""
    if data is not None and not isinstance(data, dict):
        raise CardError(f"{where}: {section or 'section'}: must be a mapping, got {data!r}")
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise CardError(f"{where}: {section + ': ' if section else ''}unknown key(s) {sorted(unknown)}; "
                        f"expected some of {sorted(names)}")
    return cls(**check_field_types(cls, data, where=where, error=CardError, prefix=prefix))


def network_spec_from_dict(data: dict, where: str = "network") -> NetworkSpec:
    """A ``NetworkSpec`` from plain data (a model file's record), checked like a card's."""
    if not isinstance(data, dict):
        raise CardError(f"{where}: must be a mapping")
    try:
        return _build(NetworkSpec, data, where)
    except TypeError as exc:
        raise CardError(f"{where}: {exc}") from None


def card_from_dict(data: dict, where: str = "card") -> ModelCard:
    """Validate plain data (a parsed YAML) into a ``ModelCard``."""
    if not isinstance(data, dict):
        raise CardError(f"{where}: a model card must be a mapping")
    missing = {"name", "network", "patch_size"} - set(data)
    if missing:
        raise CardError(f"{where}: missing key(s) {sorted(missing)}")
    unknown = set(data) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise CardError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(TOP_LEVEL_KEYS)}")
    top = check_field_types(ModelCard, {"description": "", "modality": "MR", "source": None, **data},
                            where=where, error=CardError)
    training = data.get("training")
    if isinstance(training, dict) and "method_params" in training:
        training = {**training, "method_params": training["method_params"] or {}}
    card = ModelCard(
        name=top["name"], description=top["description"], modality=top["modality"],
        network=_build(NetworkSpec, data["network"], where, "network"),
        patch_size=top["patch_size"],
        preprocessing=_build(Preprocessing, data.get("preprocessing"), where, "preprocessing"),
        inference=_build(InferenceSpec, data.get("inference"), where, "inference"),
        training=_build(TrainingSpec, training, where, "training"),
        source=top["source"],
    )
    _validate(card, where)
    return card


def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise CardError(f"{where}: {problem}")


def _one_of(value, choices: tuple, where: str, key: str) -> None:
    _require(value in choices, where, f"{key} must be one of {list(choices)}, got {value!r}")


def _validate(card: ModelCard, where: str) -> None:
    """Values a network, the inferer or the trainer could not use, reported with the card's file."""
    _validate_patch(card.patch_size, where)
    _validate_network(card.network, card.patch_size, where)
    _validate_preprocessing(card.preprocessing, where)
    _validate_inference(card.inference, card.patch_size, where)
    _validate_training(card.training, where)


def _within(value, low, high, where: str, key: str) -> None:
    _require(low <= value <= high, where, f"{key}: must be in {low}..{high}, got {value}")


def _validate_patch(patch: tuple[int, int, int], where: str) -> None:
    for side in patch:
        _within(side, MIN_PATCH_SIDE, MAX_PATCH_SIDE, where, "patch_size")
    voxels = patch[0] * patch[1] * patch[2]
    _require(voxels <= MAX_PATCH_VOXELS, where,
             f"patch_size: {list(patch)} is {voxels:,} voxels a patch; at most {MAX_PATCH_VOXELS:,} (256³)")


def _validate_network(net: NetworkSpec, patch: tuple[int, int, int], where: str) -> None:
    _one_of(net.normalization, NORMALIZATIONS, where, "network.normalization")
    _require(net.in_channels >= 1 and net.num_classes >= 2, where,
             "network needs in_channels ≥ 1 and num_classes ≥ 2 (background included)")
    _within(net.in_channels, 1, MAX_IN_CHANNELS, where, "network.in_channels")
    _within(net.num_classes, 2, MAX_CLASSES, where, "network.num_classes")
    _within(net.base_filters, 1, MAX_BASE_FILTERS, where, "network.base_filters")
    _require(0.0 <= net.dropout_rate < 1.0, where, f"network.dropout_rate must be in [0, 1), got {net.dropout_rate}")
    if net.name == "vnet":
        _require(net.levels in (None, 5), where, f"network.levels: the V-Net has exactly 5, got {net.levels}")
    _require(net.levels is None or net.levels >= 1, where, f"network.levels must be ≥ 1, got {net.levels}")
    if net.levels is not None:
        _within(net.levels, 1, MAX_LEVELS, where, "network.levels")
    multiple = net.input_multiple
    _require(all(p % multiple == 0 for p in patch), where,
             f"patch_size {list(patch)} must be multiples of {multiple} for network {net.name!r}")


def _validate_preprocessing(pre: Preprocessing, where: str) -> None:
    _one_of(pre.intensity, INTENSITIES, where, "preprocessing.intensity")
    if pre.target_spacing is not None:
        for spacing in pre.target_spacing:
            _within(spacing, *SPACING_RANGE_MM, where, "preprocessing.target_spacing (mm)")
    if pre.intensity == "window":
        _require(pre.window is not None and len(pre.window) == 2 and pre.window[0] < pre.window[1], where,
                 f"preprocessing.window must be [low, high] with low < high, got {pre.window}")


def _validate_inference(inf: InferenceSpec, patch: tuple[int, int, int], where: str) -> None:
    _one_of(inf.blending, BLENDINGS, where, "inference.blending")
    _require(0.0 <= inf.overlap < 1.0, where, f"inference.overlap must be in [0, 1), got {inf.overlap}")
    _within(inf.window_batch, 1, MAX_WINDOW_BATCH, where, "inference.window_batch")
    if inf.stride is not None:
        _require(len(inf.stride) == 3 and all(1 <= s <= p for s, p in zip(inf.stride, patch)), where,
                 f"inference.stride must be three steps in 1..patch_size (z, y, x), got {list(inf.stride)}")


def _validate_training(tr: TrainingSpec, where: str) -> None:
    _one_of(tr.optimizer, OPTIMIZERS, where, "training.optimizer")
    _one_of(tr.schedule, SCHEDULES, where, "training.schedule")
    _one_of(tr.precision, PRECISIONS, where, "training.precision")
    _require(tr.iterations >= 1 and tr.batch_labeled >= 1 and tr.batch_unlabeled >= 0, where,
             "training needs iterations ≥ 1, batch_labeled ≥ 1 and batch_unlabeled ≥ 0")
    _require(tr.lr > 0 and tr.step_size >= 1 and tr.validate_every >= 1 and tr.checkpoint_every >= 1, where,
             "training needs lr > 0 and step_size, validate_every, checkpoint_every ≥ 1")
    for key in ("iterations", "step_size", "validate_every", "checkpoint_every", "poly_horizon"):
        if getattr(tr, key) is not None:
            _within(getattr(tr, key), 1, MAX_ITERATIONS, where, f"training.{key}")
    for key in ("batch_labeled", "batch_unlabeled"):
        _within(getattr(tr, key), 0, MAX_BATCH, where, f"training.{key}")
    _within(tr.seed, 0, SEED_LIMIT - 1, where, "training.seed")


def shipped_cards_dir() -> Path:
    """The folder of the cards installed with the package."""
    return Path(str(resources.files("napari_semiseg") / "models"))


def shipped_card_names() -> list[str]:
    return sorted(p.stem for p in shipped_cards_dir().glob("*.yaml"))


def load_card(name_or_path: str | Path) -> ModelCard:
    """Load a card from a YAML path, or by the name of a shipped card (``"cpu-small"``)."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = shipped_cards_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise CardError(f"{name_or_path}: no such model card (shipped cards: "
                        f"{', '.join(shipped_card_names())})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CardError(f"{path}: not a text file in UTF-8 (byte {exc.start}: {exc.reason}); "
                        "a model card is YAML text") from None
    except OSError as exc:
        raise CardError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise CardError(f"{path}: not valid YAML ({exc})") from None
    card = card_from_dict(data, where=str(path))
    return dataclasses.replace(card, source=str(path))
