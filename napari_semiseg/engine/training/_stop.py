"""Stopping a run at any moment: a callback, a ``STOP`` file in the run folder, or a signal.

The trainer checks between optimiser steps (and between validation cases); when asked, it
saves a checkpoint and the model, writes a ``stopped`` event and returns. A stopped run
resumes from that checkpoint exactly where it left off.

- in-process callers pass ``should_stop`` (e.g. a GUI button's flag);
- anyone may create ``<run_dir>/STOP`` (the child-process runner's ``stop()`` does);
- ``python -m napari_semiseg.engine.training`` also turns SIGTERM and SIGINT into a stop
  (``torchrun`` forwards SIGTERM to every rank).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path

STOP_FILE = "STOP"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Collects the ways a run can be asked to stop.

    Args:
        run_dir: folder whose ``STOP`` file means "stop".
        should_stop: polled between steps; True means "stop".
        handle_signals: turn SIGTERM/SIGINT into a stop while ``installed()`` (main thread only).
    """

    def __init__(self, run_dir: Path, should_stop: Callable[[], bool] | None = None, handle_signals: bool = False):
        self.stop_file = Path(run_dir) / STOP_FILE
        self.should_stop = should_stop
        self.handle_signals = handle_signals
        self._signal_name: str | None = None

    def _on_signal(self, number, frame) -> None:
        self._signal_name = signal.Signals(number).name

    @contextlib.contextmanager
    def installed(self):
        """Install the signal handlers for the duration of the block (and restore them)."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._on_signal) for s in _SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def reason(self) -> str | None:
        """Why the run should stop now ("signal SIGTERM", "stop file", "requested"), or None."""
        if self._signal_name is not None:
            return f"signal {self._signal_name}"
        if self.stop_file.exists():
            return "stop file"
        if self.should_stop is not None and self.should_stop():
            return "requested"
        return None

    def acknowledge(self) -> None:
        """Remove the stop file, so that resuming in the same folder does not stop at once."""
        with contextlib.suppress(FileNotFoundError):
            self.stop_file.unlink()


def request_stop(run_dir: str | Path) -> Path:
    """Ask the run writing into ``run_dir`` to stop (creates its ``STOP`` file)."""
    path = Path(run_dir) / STOP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


__all__ = ["STOP_FILE", "StopSignal", "request_stop"]
