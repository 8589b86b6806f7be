"""The training configuration: one dataclass, plain JSON on disk, rebuilt exactly in a child.

``TrainConfig.from_card(card, output_dir, ...)`` fills the recipe (optimiser, schedule,
iterations, batch halves, seed...) from the card's ``training`` section; any field can be
overridden. ``to_dict`` / ``from_dict`` round-trip through JSON, which is how the GUI hands a
run to ``python -m napari_semiseg.engine.training config.json`` and how a checkpoint records
what produced it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TrainingError
from ...io import atomic_write_bytes
from .._field_types import check_field_types
from ..data import CaseSpec, DataSpec
from ..cards import (MAX_BATCH, MAX_ITERATIONS, OPTIMIZERS, PRECISIONS, SCHEDULES, SEED_LIMIT, ModelCard,
                     TrainingSpec, card_from_dict)

CONFIG_FILE = "config.json"


#: The recipe's fields: the card's ``TrainingSpec`` (engine/cards.py), declared there once.
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingSpec))


@dataclass
class TrainConfig:
    """Everything a run needs: the card's recipe, as chosen for this run, and how the run is done.

    ``from_card`` is the usual way to make one. The recipe (method and its hyperparameters,
    iterations, batch halves, optimiser, schedule, validation and checkpoint intervals, seed,
    precision) is a ``TrainingSpec``, the type of a card's ``training`` section, documented
    there; its fields read as the config's own (``config.lr``), and the JSON file keeps them at
    its top level, as every earlier release wrote them. ``replace`` changes any field.

    Attributes:
        card: the model card (network, patch, preprocessing).
        output_dir: the run folder (events, checkpoints, the final model).
        recipe: the run's ``TrainingSpec``; its ``method_params`` override the method's defaults.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        resume_from: a checkpoint to continue from (weights, optimiser, step, RNG states).
        num_workers: data-loading processes (0 = in the training process); each holds its
            own cache of ``cache_volumes`` volumes. None: 0 on the CPU; on CUDA one per two
            CPU cores (at most 8), pinned and prefetched, so that the GPU never waits.
        cache_volumes: preprocessed volumes kept in memory per process (LRU); the rest stay
            on disk. Memory ≈ cache_volumes × the largest preprocessed volume (float32).
        deterministic: deterministic algorithms (bitwise-repeatable on CPU; slower on CUDA).
            None: True on the CPU, False on CUDA (then ``cudnn.benchmark`` picks kernels).
        channels_last: networks and inputs in ``channels_last_3d``; None: on CUDA only.
        compile: ``torch.compile`` the trainable networks (CUDA only; off by default: it
            costs start-up time and pays only where ``benchmarks/gpu_check.py`` says so).
        data: the cases by file (needed for a child process); in-process callers may pass
            a ``TrainingData`` to ``train`` instead.
        parent_model_id: the project model version this run fine-tunes (recorded).
        init_from: a model or checkpoint file whose deployed weights initialise the trainable
            networks (fine-tuning); unlike ``resume_from`` the step restarts at 0.
        log_every: an iteration event every N steps.
    """

    card: ModelCard
    output_dir: str
    recipe: TrainingSpec = field(default_factory=TrainingSpec)
    device: str = "auto"
    resume_from: str | None = None
    num_workers: int | None = None
    cache_volumes: int = 8
    deterministic: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    data: DataSpec | None = None
    parent_model_id: int | None = None
    init_from: str | None = None
    log_every: int = 1

    def __getattr__(self, name: str) -> Any:
        """A recipe field read as the config's own (called only when ``name`` is not one)."""
        recipe = self.__dict__.get("recipe")  # absent while unpickling: no recursion
        if recipe is not None and name in RECIPE_FIELDS:
            return getattr(recipe, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def from_card(cls, card: ModelCard, output_dir: str | Path, **overrides) -> "TrainConfig":
        """A config with the card's training recipe, then ``overrides`` (any field, recipe or run).

        The card's ``method_params`` apply only when the method is the card's default one.
        """
        method = overrides.get("method", card.training.method)
        base = dataclasses.replace(card.training, method=method,
                                   method_params=dict(card.training.method_params)
                                   if method == card.training.method else {})
        return cls(card=card, output_dir=str(output_dir), recipe=base).replace(**overrides)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` (recipe and run fields alike), type-checked as a file's values
        (they come from a command line or a form) and checked as a whole."""
        where = f"training configuration for {changes.get('output_dir', self.output_dir)}"
        recipe = {key: changes.pop(key) for key in list(changes) if key in RECIPE_FIELDS}
        recipe = check_field_types(TrainingSpec, recipe, where=where, error=TrainingError)
        changes = check_field_types(type(self), changes, where=where, error=TrainingError)
        try:
            config = dataclasses.replace(self, recipe=dataclasses.replace(self.recipe, **recipe), **changes)
        except TypeError as exc:  # a name that is no field
            raise TrainingError(f"{where}: {exc}") from None
        config.check()
        return config

    def check(self) -> None:
        """Raise ``TrainingError`` naming the first field a run could not use."""
        problems = []
        if self.iterations < 1:
            problems.append(f"iterations must be ≥ 1, got {self.iterations}")
        if self.batch_labeled < 1 or self.batch_unlabeled < 0:
            problems.append("batch_labeled must be ≥ 1 and batch_unlabeled ≥ 0")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.lr <= 0 or self.step_size < 1:
            problems.append("lr must be > 0 and step_size ≥ 1")
        if self.poly_horizon is not None and self.poly_horizon < 1:
            problems.append("poly_horizon must be ≥ 1")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if min(self.validate_every, self.checkpoint_every, self.num_workers or 0) < 0:
            problems.append("validate_every, checkpoint_every and num_workers must be ≥ 0")
        if self.cache_volumes < 1 or self.log_every < 1:
            problems.append("cache_volumes and log_every must be ≥ 1")
        problems += self._beyond_bounds()
        if problems:
            raise TrainingError(f"training configuration for {self.output_dir}: " + "; ".join(problems))

    def _beyond_bounds(self) -> list[str]:
        """Sizes past the card's bounds (see engine/cards.py), refused before anything allocates."""
        counts = {"iterations": self.iterations, "step_size": self.step_size, "poly_horizon": self.poly_horizon,
                  "validate_every": self.validate_every, "checkpoint_every": self.checkpoint_every}
        problems = [f"{key} must be at most {MAX_ITERATIONS:,}, got {value:,}"
                    for key, value in counts.items() if value is not None and value > MAX_ITERATIONS]
        problems += [f"{key} must be at most {MAX_BATCH}, got {value}"
                     for key, value in (("batch_labeled", self.batch_labeled),
                                        ("batch_unlabeled", self.batch_unlabeled)) if value > MAX_BATCH]
        if not 0 <= self.seed < SEED_LIMIT:
            problems.append(f"seed must be in 0..{SEED_LIMIT - 1}, got {self.seed}")
        return problems

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, the recipe's fields at the top level; ``from_dict`` rebuilds an equal config."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"}
        data.update({name: getattr(self.recipe, name) for name in RECIPE_FIELDS})
        data["card"] = self.card.to_dict()
        data["data"] = None if self.data is None else self.data.to_dict()
        data["method_params"] = dict(self.recipe.method_params)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training configuration") -> "TrainConfig":
        """Rebuild a config from ``to_dict``'s output (unknown keys are an error)."""
        if not isinstance(data, dict):
            raise TrainingError(f"{where}: a training configuration must be a mapping")
        data = dict(data)
        _refuse_named_code(data, where)
        names = {f.name for f in dataclasses.fields(cls) if f.name != "recipe"} | set(RECIPE_FIELDS)
        unknown = set(data) - names
        if unknown:
            raise TrainingError(f"{where}: unknown key(s) {sorted(unknown)}")
        if "card" not in data or "output_dir" not in data:
            raise TrainingError(f"{where}: needs at least 'card' and 'output_dir'")
        recipe = check_field_types(TrainingSpec, {k: data.pop(k) for k in list(data) if k in RECIPE_FIELDS},
                                   where=where, error=TrainingError)
        data = check_field_types(cls, data, where=where, error=TrainingError)
        data["card"] = card_from_dict(data["card"], where=f"{where}: card")
        if data.get("data") is not None:
            data["data"] = DataSpec.from_dict(data["data"], where=f"{where}: data")
        try:
            config = cls(recipe=TrainingSpec(**recipe), **data)
        except TypeError as exc:
            raise TrainingError(f"{where}: {exc}") from None
        config.check()
        return config

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def write(self, path: str | Path | None = None) -> Path:
        """Write the JSON atomically (``run_dir/config.json`` by default); returns the path."""
        path = Path(path) if path is not None else self.run_dir / CONFIG_FILE
        atomic_write_bytes(path, self.to_json().encode())
        return path

    @classmethod
    def read(cls, path: str | Path) -> "TrainConfig":
        """Read a config JSON file.

        Raises:
            TrainingError: the file is missing or not a valid configuration.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TrainingError(f"{path}: no such training configuration file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainingError(f"{path}: not a readable JSON configuration ({exc})") from None
        return cls.from_dict(data, where=str(path))


def _refuse_named_code(data: dict[str, Any], where: str) -> None:
    """A file never chooses code to run: networks come only from the card's registered name.

    Configurations written before this rule carried ``network_factory: null``; that key is
    dropped. One that names a ``module:callable`` is refused, never imported.
    """
    if "network_factory" not in data:
        return
    named = data.pop("network_factory")
    if named is not None:
        raise TrainingError(f"{where}: names code to run (network_factory {named!r}); refused: a "
                            "network comes only from a registered name in the card's 'network'")


__all__ = ["CONFIG_FILE", "CaseSpec", "DataSpec", "RECIPE_FIELDS", "TrainConfig", "TrainingError"]
