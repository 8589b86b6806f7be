"""The trainer: one loop for every method, one process or many (``torchrun``).

``train(config)`` builds the method's networks from the card, the optimiser and the batches,
then runs optimiser steps up to ``config.iterations``: validation Dice every
``validate_every`` steps, a resumable checkpoint every ``checkpoint_every`` steps, a JSON-lines
event per step. It returns when the run finishes or is asked to stop (``_stop``); either way
the last weights are saved (``checkpoint.pt`` to resume, ``model.pt`` to deploy).

Exact resumption: a batch is a pure function of (seed, rank, step) (``_batches``), the
learning rate a pure function of the step (``_schedule``), and the checkpoint holds the
weights, the optimiser state and every RNG state of every rank. So running N steps, stopping
and resuming for N more gives the same weights as 2N steps at once (bitwise on CPU with
``deterministic``).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import SemisegError
from .._compute import ComputeMode
from ..data import TrainingData
from ..methods import Batch, Method, StepInfo, create_method
from ._batches import BatchDataset, make_loader
from ._checkpoint import (BEST_MODEL_FILE, CHECKPOINT_FILE, MODEL_FILE, capture_rng_state, load_checkpoint,
                          load_model_weights, make_checkpoint, make_model_payload, restore_rng_state,
                          save_atomically)
from ._config import CONFIG_FILE, TrainConfig, TrainingError
from ._ddp import DistributedContext, any_rank, ddp_wrapper, gather_objects, init_distributed, shutdown
from ._events import EVENTS_FILE, EventLog, ProgressCallback, read_events
from ._sampling import TwoStreamSchedule, seed_sequence
from ._schedule import build_optimizer, learning_rate, set_learning_rate
from ._stop import StopSignal
from ._validation import ValidationStopped, validate


@dataclass
class TrainResult:
    """How a run ended and what it left.

    Attributes:
        status: ``"finished"`` or ``"stopped"``.
        iteration: steps done.
        run_dir: the run folder.
        checkpoint: the resumable checkpoint (``resume_from`` continues from it).
        model: the deployable model file (``load_model``, ``register_run_in_project``).
        metrics: validation Dice (last and best, per case), final losses, steps.
        config: the configuration of the run.
        history: this process's per-step records {iteration, losses, lr} of this session.
        method: the trained method with its networks (in-process runs only).
    """

    status: str
    iteration: int
    run_dir: Path
    checkpoint: Path | None
    model: Path | None
    metrics: dict[str, Any]
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    method: Method | None = field(default=None, repr=False)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> "TrainResult":
        """The result of a run that another process executed, from its events and config.

        Raises:
            TrainingError: the run has not ended (yet), or ended with an error (its message).
        """
        run_dir = Path(run_dir)
        config = TrainConfig.read(run_dir / CONFIG_FILE)
        events = read_events(run_dir / EVENTS_FILE)
        for event in reversed(events):
            if event["event"] in ("finished", "stopped"):
                return cls(event["event"], event["iteration"], run_dir, Path(event["checkpoint"]),
                           Path(event["model"]), event["metrics"], config)
            if event["event"] == "error":
                raise TrainingError(f"{run_dir}: the run failed: {event['message']}")
            if event["event"] == "start":
                break
        raise TrainingError(f"{run_dir}: the run has not finished or stopped (no final event yet)")


def train(config: TrainConfig, data: TrainingData | None = None, *, progress: ProgressCallback | None = None,
          should_stop: Callable[[], bool] | None = None,
          network_factory: Callable | None = None, handle_signals: bool = False) -> TrainResult:
    """Run (or resume) a training run; see the module docstring.

    Args:
        config: the run (method, card, recipe, output folder, resume checkpoint...).
        data: the cases; None builds them from ``config.data`` (file paths).
        progress: called with every event dict (rank 0 only), after it is written to
            ``<run_dir>/events.jsonl``.
        should_stop: polled between steps; True stops the run (weights kept).
        network_factory: builds networks from a ``NetworkSpec`` instead of the engine's
            ``build_network`` (in-process callers only: a configuration file cannot name one).
        handle_signals: turn SIGTERM/SIGINT into a graceful stop (the child-process entry
            point sets it; leave it off inside applications that own their signals).

    Returns:
        The ``TrainResult`` (``status`` "finished" or "stopped").

    Raises:
        TrainingError (and other ``SemisegError``): bad configuration, data or checkpoint,
            or a loss that became NaN. An ``error`` event is written first.
    """
    config.check()
    context = init_distributed(config.device)
    events = EventLog(config.run_dir / EVENTS_FILE if context.is_main else None,
                      progress if context.is_main else None)
    run = None
    try:
        with compute_mode(config, context.device).kernels():
            stop = StopSignal(config.run_dir, should_stop, handle_signals)
            with stop.installed():
                run = _Run(config, data, context, events, stop, network_factory)
                return run.execute()
    except BaseException as exc:
        message = str(exc) if isinstance(exc, SemisegError) else f"{type(exc).__name__}: {exc}"
        events.emit("error", message=message, error_type=type(exc).__name__,
                    iteration=None if run is None else run.done)
        raise
    finally:
        events.close()
        shutdown(context)


def compute_mode(config: TrainConfig, device: torch.device) -> ComputeMode:
    """The run's precision, memory format and kernel determinism on ``device`` ("auto" resolved)."""
    return ComputeMode.resolve(device, precision=config.precision, channels_last=config.channels_last,
                               deterministic=config.deterministic)


def resolve_num_workers(num_workers: int | None, device: torch.device) -> int:
    """None: batches in the training process on the CPU (today's default, no extra memory);
    on CUDA one worker per two cores, at most 8, so that building batches never stalls the GPU."""
    if num_workers is not None:
        return int(num_workers)
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def _process_seed(seed: int, rank: int) -> int:
    """The seed of this rank's training-time randomness (dropout...), distinct per rank."""
    return int(seed_sequence(seed, rank, 2).generate_state(1)[0])


class _Run:
    """One execution of ``train``: the state shared by its steps."""

    def __init__(self, config: TrainConfig, data: TrainingData | None, context: DistributedContext,
                 events: EventLog, stop: StopSignal, network_factory: Callable | None):
        self.config, self.context, self.events, self.stop = config, context, events, stop
        self.network_factory = network_factory
        self.compute = compute_mode(config, context.device)
        self.num_workers = resolve_num_workers(config.num_workers, context.device)
        self.data = self._data(data)
        self.done = 0
        self.history: list[dict[str, Any]] = []
        self.validation = {"history": [], "best_dice": None, "best_iteration": None}
        self.last_losses: dict[str, float] = {}

    # -- setup -------------------------------------------------------------------------------------

    def _data(self, data: TrainingData | None) -> TrainingData:
        if data is not None:
            return data
        if self.config.data is None:
            raise TrainingError(f"training run {self.config.output_dir}: no cases given (pass TrainingData "
                                "or set config.data)")
        return TrainingData.from_spec(self.config.data)

    def _build(self) -> None:
        config, context = self.config, self.context
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.method = create_method(config.method, config.card, config.method_params,
                                    network_factory=self.network_factory)
        self.method.exclude_cases([source.case_id for source in self.data.validation])
        self.uses_unlabeled = self.method.uses_unlabeled and config.batch_unlabeled > 0
        self.data.check(needs_unlabeled=self.uses_unlabeled)
        checkpoint = load_checkpoint(config.resume_from) if config.resume_from else None
        if checkpoint is not None:
            self._check_resumable(checkpoint)
            self.method.load_state_dict(checkpoint["method_state"])
        elif config.init_from:
            self.method.initialize_from(load_model_weights(config.init_from)[0])
        self.method.to(context.device)
        for network in self.method.networks.values():
            self.compute.prepare_network(network)
        self.optimizer = build_optimizer(self.method.parameters(), config)
        if checkpoint is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.done = int(checkpoint["iteration"])
            self.validation = checkpoint.get("validation", self.validation)
        self._seed_process(checkpoint)
        self.method.wrap_trainable(self._wrapper())

    def _wrapper(self) -> Callable:
        """DDP around each trainable network, then ``torch.compile`` when the run asks (CUDA only)."""
        wrap = ddp_wrapper(self.context)
        if not (self.config.compile and self.context.device.type == "cuda"):
            return wrap
        return lambda module, find_unused: torch.compile(wrap(module, find_unused))

    def _check_resumable(self, checkpoint: dict) -> None:
        if checkpoint["method"] != self.config.method:
            raise TrainingError(f"{self.config.resume_from}: the checkpoint was trained with method "
                                f"{checkpoint['method']!r}, not {self.config.method!r}")

    def _seed_process(self, checkpoint: dict | None) -> None:
        states = None if checkpoint is None else checkpoint.get("rng")
        if states is not None and len(states) == self.context.world_size:
            restore_rng_state(states[self.context.rank])
            return
        seed = _process_seed(self.config.seed, self.context.rank)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def _loader(self):
        config, data = self.config, self.data
        schedule = TwoStreamSchedule(len(data.labeled), len(data.unlabeled), config.batch_labeled,
                                     config.batch_unlabeled if self.uses_unlabeled else 0,
                                     config.seed, self.context.rank)
        views = self.method.sample_views if type(self.method).sample_views is not Method.sample_views else None
        dataset = BatchDataset(data, config.card, schedule, cache_volumes=config.cache_volumes, views=views,
                               unlabeled_streams=self.method.unlabeled_streams if self.uses_unlabeled else ())
        self.dataset = dataset
        return make_loader(dataset, self.done, config.iterations, num_workers=self.num_workers,
                           pin_memory=self.context.device.type == "cuda")

    # -- the run ---------------------------------------------------------------------------------------

    def execute(self) -> TrainResult:
        self._build()
        if self.context.is_main:
            self.config.write(self.config.run_dir / CONFIG_FILE)
        self._emit_start()
        self.started = time.perf_counter()
        self.first = self.done
        batches = iter(self._loader())
        self.waited = self.busy = 0.0  # seconds waiting for batches / in whole steps, since the last event
        for step in range(self.done, self.config.iterations):
            reason = self._stop_reason()
            if reason is not None:
                return self._end("stopped", reason)
            asked = time.perf_counter()
            raw = next(batches)
            self.waited += time.perf_counter() - asked
            self.step_started = asked
            self._step(step, raw)
            self.busy += time.perf_counter() - self.step_started
            if self._due(self.config.validate_every) and not self._validate():
                return self._end("stopped", self.stop.reason() or "requested")
            if self._due(self.config.checkpoint_every) and self.done < self.config.iterations:
                path = self._save_checkpoint()
                self._emit("checkpoint", iteration=self.done, path=str(path))
        return self._end("finished", None)

    def _step(self, step: int, raw: dict) -> None:
        device, mode = self.context.device, self.compute
        batch = Batch(image=mode.prepare_input(raw["image"].to(device, non_blocking=True)),
                      label=raw["label"].to(device, non_blocking=True), n_labeled=int(raw["label"].shape[0]),
                      extra={k: mode.prepare_input(v.to(device, non_blocking=True)) for k, v in raw["extra"].items()})
        lr = learning_rate(self.config, step)
        set_learning_rate(self.optimizer, lr)
        info = StepInfo(step, self.config.iterations, lr)
        self.method.set_training(True)
        self.optimizer.zero_grad(set_to_none=True)
        with self.compute.autocast():  # forward passes in bf16 on CUDA; losses stay fp32 (see _compute)
            losses = self.method.training_step(batch, info)
        total = self._checked_total(losses, step)
        total.backward()
        self.optimizer.step()
        self.method.after_step(info)
        self.done = step + 1
        self.last_losses = {name: float(value.detach()) for name, value in losses.items()}
        self.history.append({"iteration": self.done, "losses": self.last_losses, "lr": lr})
        if self.done % self.config.log_every == 0 or self.done == self.config.iterations:
            elapsed = time.perf_counter() - self.started
            eta = elapsed / (self.done - self.first) * (self.config.iterations - self.done)
            self._emit("iteration", iteration=self.done, losses=self.last_losses, lr=lr, eta_s=eta,
                       elapsed_s=elapsed, data_wait=self._data_wait())

    def _data_wait(self) -> float | None:
        """Share of the steps since the last event spent waiting for their batch (0..1), then reset.

        The step's own time ends when its losses are read back, which waits for the device,
        so on CUDA the share is of real step time, not of the time to queue kernels.
        """
        now = time.perf_counter()
        waited, busy = self.waited, self.busy + (now - self.step_started)
        self.waited = self.busy = 0.0
        self.step_started = now  # the rest of this step counts towards the next event
        return waited / busy if busy > 0 else None

    def _checked_total(self, losses: dict, step: int) -> torch.Tensor:
        if "total" not in losses:
            raise TrainingError(f"method {self.method.name!r} returned no 'total' loss "
                                f"(got {sorted(losses)})")
        total = losses["total"]
        if not torch.isfinite(total.detach()).all():
            raise TrainingError(f"the loss became {float(total.detach())} at step {step + 1} of "
                                f"{self.config.output_dir}; try a lower learning rate")
        return total

    def _due(self, every: int) -> bool:
        return every > 0 and (self.done % every == 0 or self.done == self.config.iterations)

    def _stop_reason(self) -> str | None:
        reason = self.stop.reason()
        if any_rank(reason is not None, self.context):
            return reason or "another rank stopped"
        return None

    # -- validation ------------------------------------------------------------------------------------

    def _validate(self) -> bool:
        """Validate now; False when a stop request interrupted it."""
        cases = self.data.validation
        if not cases:
            return True
        should_stop = None if self.context.distributed else lambda: self.stop.reason() is not None
        try:
            mode = dict(precision=self.compute.precision, channels_last=self.compute.channels_last)
            result = validate(self.method.deployed_network(), cases, self.config.card, self.context, should_stop,
                              **mode)
            branches = {name: validate(network, cases, self.config.card, self.context, should_stop, **mode).dice
                        for name, network in self.method.branch_networks().items()}
        except ValidationStopped:
            return False
        record = {"iteration": self.done, "dice": result.dice, "per_case": result.per_case}
        if branches:
            record["branch_dice"] = branches
        self.validation["history"].append(record)
        best = self.validation["best_dice"]
        if best is None or (math.isfinite(result.dice) and result.dice > best):
            self.validation["best_dice"], self.validation["best_iteration"] = result.dice, self.done
            if self.context.is_main:
                self._save_model(self.config.run_dir / BEST_MODEL_FILE)
        self._emit("validation", **record, best_dice=self.validation["best_dice"],
                   best_iteration=self.validation["best_iteration"])
        return True

    # -- saving ----------------------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        history = self.validation["history"]
        last = history[-1] if history else None
        return {"iterations": self.done,
                "validation_dice": None if last is None else last["dice"],
                "validation_iteration": None if last is None else last["iteration"],
                "validation_per_case": {} if last is None else last["per_case"],
                "validation_branch_dice": {} if last is None else last.get("branch_dice", {}),
                "best_validation_dice": self.validation["best_dice"],
                "best_iteration": self.validation["best_iteration"],
                "final_losses": dict(self.last_losses)}

    def _save_checkpoint(self) -> Path:
        """Every rank takes part (RNG states are gathered); rank 0 writes."""
        states = gather_objects(capture_rng_state(), self.context)
        path = self.config.run_dir / CHECKPOINT_FILE
        if self.context.is_main:
            payload = make_checkpoint(method=self.method, optimizer=self.optimizer, iteration=self.done,
                                      config_dict=self.config.to_dict(), rng_states=states,
                                      validation=self.validation)
            save_atomically({**payload, "compute": self.compute.to_dict()}, path)
        return path

    def _save_model(self, path: Path) -> Path:
        payload = make_model_payload(method=self.method, iteration=self.done, metrics=self.metrics(),
                                     config_dict=self.config.to_dict())
        save_atomically({**payload, "compute": self.compute.to_dict()}, path)
        return path

    def _end(self, status: str, reason: str | None) -> TrainResult:
        checkpoint = self._save_checkpoint()
        model = self.config.run_dir / MODEL_FILE
        if self.context.is_main:
            self._save_model(model)
        metrics = self.metrics()
        fields = {"iteration": self.done, "checkpoint": str(checkpoint), "model": str(model), "metrics": metrics}
        if status == "stopped":
            self.stop.acknowledge()
            self._emit("stopped", reason=reason, **fields)
        else:
            self._emit("finished", **fields)
        return TrainResult(status, self.done, self.config.run_dir, checkpoint, model, metrics, self.config,
                           self.history, self.method)

    # -- events ----------------------------------------------------------------------------------------

    def _emit(self, event: str, **fields) -> None:
        if self.context.is_main:
            self.events.emit(event, **fields)

    def _emit_start(self) -> None:
        config = self.config
        self._emit("start", iteration=self.done, iterations=config.iterations, method=self.method.name,
                   method_params=self.method.params_dict(), card=config.card.name, device=str(self.context.device),
                   world_size=self.context.world_size, run_dir=str(config.run_dir),
                   resumed_from=config.resume_from, n_labeled=len(self.data.labeled),
                   n_unlabeled=len(self.data.unlabeled) if self.uses_unlabeled else 0,
                   n_validation=len(self.data.validation), precision=self.compute.precision,
                   deterministic=self.compute.deterministic, channels_last=self.compute.channels_last,
                   num_workers=self.num_workers, compile=bool(config.compile and self.context.device.type == "cuda"))


__all__ = ["TrainResult", "train"]
