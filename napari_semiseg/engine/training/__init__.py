"""The trainer: every method (``engine.methods``) over one loop, one process or ``torchrun``.

Usage, in process::

    config = TrainConfig.from_card(load_card("cpu-small"), "runs/first", iterations=200)
    result = train(config, TrainingData(labeled=[CaseSource.from_files("la_001", "a.h5", "a.h5")]))

or in a child process that the GUI tails and can stop::

    handle = run_training_subprocess(config)      # config.data names the files
    for event in handle.iter_events(): ...
    handle.stop()                                 # weights kept; resume_from=handle.run_dir/"checkpoint.pt"

Pieces: ``_config`` (TrainConfig), ``_sampling`` / ``_batches`` (``engine.data``'s cases →
batches), ``_schedule``, ``_checkpoint``, ``_events``, ``_stop``,
``_ddp``, ``_validation``, ``_loop`` (the trainer), ``_subprocess``, ``_project``.
"""

from ..data import (CaseSource, CaseSpec, DataSpec, LoadedCase, PreparedCase, TrainingData, VolumeCache,
                    crop_padding, la_augment, prepare_case)
from ._batches import BatchDataset
from ._checkpoint import (BEST_MODEL_FILE, CHECKPOINT_FILE, MODEL_FILE, TrainedModel, load_checkpoint, load_model,
                          load_model_weights)
from ._config import CONFIG_FILE, TrainConfig, TrainingError
from ._ddp import DistributedContext, resolve_device
from ._events import EVENT_FIELDS, EVENT_TYPES, EVENTS_FILE, EventLog, EventTail, read_events
from ._loop import TrainResult, train
from ._project import TRAINING_LABEL_KINDS, data_spec_from_project, register_run_in_project
from ._sampling import TwoStreamSchedule
from ._schedule import build_optimizer, learning_rate
from ._stop import STOP_FILE, request_stop
from ._subprocess import LOG_FILE, TrainingProcess, run_training_subprocess
from ._validation import ValidationResult, case_dice, validate, validate_method

__all__ = [
    "BEST_MODEL_FILE", "BatchDataset", "CHECKPOINT_FILE", "CONFIG_FILE", "CaseSource", "CaseSpec", "DataSpec",
    "DistributedContext", "EVENTS_FILE", "EVENT_FIELDS", "EVENT_TYPES", "EventLog", "EventTail", "LOG_FILE",
    "LoadedCase", "MODEL_FILE", "PreparedCase", "STOP_FILE", "TRAINING_LABEL_KINDS", "TrainConfig", "TrainResult",
    "TrainedModel", "TrainingData", "TrainingError", "TrainingProcess", "TwoStreamSchedule", "ValidationResult",
    "VolumeCache", "build_optimizer", "case_dice", "crop_padding", "data_spec_from_project", "la_augment",
    "learning_rate", "load_checkpoint", "load_model", "load_model_weights", "prepare_case",
    "read_events", "register_run_in_project", "request_stop", "resolve_device", "run_training_subprocess",
    "train", "validate", "validate_method",
]
