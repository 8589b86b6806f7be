"""Progress as JSON lines: one small object per event, appended to ``events.jsonl``.

The same dicts go to an optional callback (in-process callers) and, one per line, to the
run's ``events.jsonl`` (a child process's parent tails it; a GUI plots it). Each line is a
JSON object flushed as soon as it is written, so a reader sees whole lines only (a last line
without its newline is still being written).

Every event has ``event`` (its type) and ``time`` (Unix seconds). Per type:

=============  ==========================================================================
``start``      ``iteration`` (first step to run, 0 unless resumed), ``iterations`` (total),
               ``method``, ``method_params``, ``card``, ``device``, ``world_size``,
               ``run_dir``, ``resumed_from`` (path or null), ``n_labeled``,
               ``n_unlabeled``, ``n_validation``, ``precision`` ("bf16"/"fp32"),
               ``deterministic``, ``channels_last``, ``num_workers``, ``compile``
               (the run's settings with "auto" resolved on its device)
``iteration``  ``iteration`` (steps done, 1-based), ``losses`` {name: float}, ``lr``,
               ``eta_s`` (seconds left at the current pace), ``elapsed_s``,
               ``data_wait`` (share 0..1 of the steps since the last event spent
               waiting for their batch)
``validation`` ``iteration``, ``dice`` (mean over cases and foreground classes),
               ``per_case`` {case_id: dice}, ``best_dice``, ``best_iteration``
``checkpoint`` ``iteration``, ``path``
``stopped``    ``iteration``, ``checkpoint``, ``model``, ``reason``, ``metrics``
``finished``   ``iteration``, ``checkpoint``, ``model``, ``metrics``
``error``      ``message``, ``error_type``, ``iteration`` (last step done, or null)
=============  ==========================================================================

Losses are those of rank 0 under DDP. Non-finite numbers are written as null (strict JSON).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
EVENT_TYPES = ("start", "iteration", "validation", "checkpoint", "stopped", "finished", "error")
#: Fields each event type carries besides ``event`` and ``time``.
EVENT_FIELDS = {
    "start": ("iteration", "iterations", "method", "method_params", "card", "device", "world_size", "run_dir",
              "resumed_from", "n_labeled", "n_unlabeled", "n_validation", "precision", "deterministic",
              "channels_last", "num_workers", "compile"),
    "iteration": ("iteration", "losses", "lr", "eta_s", "elapsed_s", "data_wait"),
    "validation": ("iteration", "dice", "per_case", "best_dice", "best_iteration"),
    "checkpoint": ("iteration", "path"),
    "stopped": ("iteration", "checkpoint", "model", "reason", "metrics"),
    "finished": ("iteration", "checkpoint", "model", "metrics"),
    "error": ("message", "error_type", "iteration"),
}

ProgressCallback = Callable[[dict[str, Any]], None]


def json_safe(value):
    """Plain JSON: NaN/inf become None, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class EventLog:
    """Writes events to a JSON-lines file and/or hands them to a callback.

    Args:
        path: the file to append to (None: no file, e.g. on DDP ranks other than 0).
        callback: called with each event dict after it is written.
    """

    def __init__(self, path: Path | None, callback: ProgressCallback | None = None):
        self.path = path
        self.callback = callback
        self._handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event; returns it as written."""
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}")
        record = json_safe({"event": event, "time": time.time(), **fields})
        if self._handle is not None:
            self._handle.write(json.dumps(record, allow_nan=False) + "\n")
            self._handle.flush()
        if self.callback is not None:
            self.callback(record)
        return record

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Every complete event of a JSON-lines file (a partial last line is skipped)."""
    tail = EventTail(path)
    return tail.poll()


class EventTail:
    """Reads the events appended to a file since the last ``poll`` (non-blocking)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offset = 0

    def poll(self) -> list[dict[str, Any]]:
        """New complete events, oldest first; [] when none (or no file yet)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        return [json.loads(line) for line in chunk[:end].decode("utf-8").splitlines() if line.strip()]


__all__ = ["EVENTS_FILE", "EVENT_FIELDS", "EVENT_TYPES", "EventLog", "EventTail", "ProgressCallback",
           "read_events"]
