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
                     card_from_dict)

CONFIG_FILE = "config.json"


@dataclass
class TrainConfig:
    """Everything a run needs; see ``from_card`` for the usual way to make one.

    Attributes:
        card: the model card (network, patch, preprocessing).
        output_dir: the run folder (events, checkpoints, the final model).
        method: registered method name; ``method_params`` overrides its defaults.
        iterations: optimiser steps in total (a resumed run continues up to it).
        batch_labeled, batch_unlabeled: the two halves of each batch (per process).
        optimizer: ``"sgd"`` (momentum, weight decay) or ``"adamw"`` (weight decay).
        lr, momentum, weight_decay: optimiser settings.
        schedule: ``"step"`` (lr·gamma^⌊t/step_size⌋), ``"poly"``
            (lr·(1 − t/horizon)^poly_power, horizon = ``poly_horizon`` or ``iterations``) or
            ``"constant"``; t is the 0-based step.
        seed: seeds network initialisation, sampling, augmentation and dropout.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        validate_every: validation Dice every N steps (and after the last); 0 = never.
        checkpoint_every: a resumable checkpoint every N steps (and at stop and end); 0 = only then.
        resume_from: a checkpoint to continue from (weights, optimiser, step, RNG states).
        num_workers: data-loading processes (0 = in the training process); each holds its
            own cache of ``cache_volumes`` volumes. None: 0 on the CPU; on CUDA one per two
            CPU cores (at most 8), pinned and prefetched, so that the GPU never waits.
        cache_volumes: preprocessed volumes kept in memory per process (LRU); the rest stay
            on disk. Memory ≈ cache_volumes × the largest preprocessed volume (float32).
        deterministic: deterministic algorithms (bitwise-repeatable on CPU; slower on CUDA).
            None: True on the CPU, False on CUDA (then ``cudnn.benchmark`` picks kernels).
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on the CPU), ``"bf16"``, ``"fp32"``.
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
    method: str = "supervised"
    method_params: dict[str, Any] = field(default_factory=dict)
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
    seed: int = 1337
    device: str = "auto"
    validate_every: int = 200
    checkpoint_every: int = 500
    resume_from: str | None = None
    num_workers: int | None = None
    cache_volumes: int = 8
    deterministic: bool | None = None
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    data: DataSpec | None = None
    parent_model_id: int | None = None
    init_from: str | None = None
    log_every: int = 1

    @classmethod
    def from_card(cls, card: ModelCard, output_dir: str | Path, **overrides) -> "TrainConfig":
        """A config with the card's training recipe, then ``overrides`` (any field).

        The card's ``method_params`` apply only when the method is the card's default one.
        """
        recipe = card.training
        method = overrides.get("method", recipe.method)
        # Every recipe field of the card is a field of the config, under the same name.
        values = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}
        values.update(method=method, method_params=dict(recipe.method_params) if method == recipe.method else {})
        values.update(overrides)
        # Overrides come from a command line (--param lr=fast) or a form: same checks as a file's.
        values = check_field_types(cls, values, where=f"training configuration for {output_dir}",
                                   error=TrainingError)
        config = cls(card=card, output_dir=str(output_dir), **values)
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
        """Plain JSON data; ``from_dict`` rebuilds an equal config."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["card"] = self.card.to_dict()
        data["data"] = None if self.data is None else self.data.to_dict()
        data["method_params"] = dict(self.method_params)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training configuration") -> "TrainConfig":
        """Rebuild a config from ``to_dict``'s output (unknown keys are an error)."""
        if not isinstance(data, dict):
            raise TrainingError(f"{where}: a training configuration must be a mapping")
        data = dict(data)
        _refuse_named_code(data, where)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise TrainingError(f"{where}: unknown key(s) {sorted(unknown)}")
        if "card" not in data or "output_dir" not in data:
            raise TrainingError(f"{where}: needs at least 'card' and 'output_dir'")
        data = check_field_types(cls, data, where=where, error=TrainingError)
        data["card"] = card_from_dict(data["card"], where=f"{where}: card")
        if data.get("data") is not None:
            data["data"] = DataSpec.from_dict(data["data"], where=f"{where}: data")
        try:
            config = cls(**data)
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


__all__ = ["CONFIG_FILE", "CaseSpec", "DataSpec", "TrainConfig", "TrainingError"]
