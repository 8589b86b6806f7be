"""Training in a child process: the GUI's way to train without ever freezing.

``run_training_subprocess(config)`` writes the config to ``<run_dir>/config.json`` and starts
``python -m napari_semiseg.engine.training <run_dir>/config.json`` (or the same under
``torch.distributed.run`` with ``nproc`` > 1). The child writes JSON-lines events to
``<run_dir>/events.jsonl``; the parent tails them without blocking (``poll_events``). The
child's output goes to ``<run_dir>/train.log``, never to a pipe that could fill up.

``stop()`` is graceful (a ``STOP`` file: the child saves its weights and a checkpoint, writes
a ``stopped`` event and exits 0); ``kill()`` ends it at once (the weights of the last
checkpoint stay). A child isolated this way is truly cancellable and gives back all its
(GPU) memory when it exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ._config import CONFIG_FILE, TrainConfig
from ._events import EVENTS_FILE, EventTail
from ._loop import TrainResult
from ._stop import request_stop

LOG_FILE = "train.log"
ENTRY_MODULE = "napari_semiseg.engine.training"


def free_port() -> int:
    """A TCP port free right now on this host (for the DDP rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TrainingProcess:
    """Handle of a training child process.

    Attributes:
        run_dir: the run folder (config, events, log, checkpoint, model).
        process: the ``subprocess.Popen`` of the child (the launcher under DDP).
    """

    def __init__(self, process: subprocess.Popen, run_dir: Path):
        self.process = process
        self.run_dir = run_dir
        self._tail = EventTail(run_dir / EVENTS_FILE)

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def poll_events(self) -> list[dict]:
        """Events written since the last call (never blocks)."""
        return self._tail.poll()

    def iter_events(self, poll_interval: float = 0.2) -> Iterator[dict]:
        """Yield events as they come until the child has exited and all are read."""
        while True:
            alive = self.running
            yield from self.poll_events()
            if not alive:
                yield from self.poll_events()
                return
            time.sleep(poll_interval)

    def stop(self, timeout: float | None = None) -> int | None:
        """Ask for a graceful stop (weights and checkpoint kept); wait up to ``timeout`` s.

        Returns:
            The exit code when the child ended within ``timeout``, else None.
        """
        request_stop(self.run_dir)
        if timeout is None:
            return self.returncode
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        """End the child (and, under DDP, its ranks) now; returns its exit code."""
        if self.running:
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit; returns its exit code (raises ``TimeoutExpired``)."""
        return self.process.wait(timeout)

    def result(self) -> TrainResult:
        """The run's result once it finished or stopped (``TrainResult.from_run_dir``)."""
        return TrainResult.from_run_dir(self.run_dir)

    def log_tail(self, characters: int = 4000) -> str:
        """The end of the child's output (what to show when it failed without an event)."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return ""


def run_training_subprocess(config: TrainConfig, *, nproc: int = 1, python: str | None = None,
                            env: dict[str, str] | None = None) -> TrainingProcess:
    """Start a run in a child process and return its handle at once.

    Args:
        config: the run; it must name its cases in ``config.data`` (files), since the
            child cannot receive in-memory data.
        nproc: processes (GPUs) under ``torch.distributed.run``; 1 runs plainly.
        python: the interpreter (this one by default).
        env: extra environment variables for the child.

    Raises:
        TrainingError: the config is invalid.
    """
    config.check()
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = config.write(run_dir / CONFIG_FILE)
    python = python or sys.executable
    if nproc > 1:
        command = [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                   "--master_port", str(free_port()), "-m", ENTRY_MODULE, str(config_path)]
    else:
        command = [python, "-m", ENTRY_MODULE, str(config_path)]
    child_env = {**os.environ, **(env or {})}
    with open(run_dir / LOG_FILE, "ab") as log:
        # A session of its own: kill() can end the launcher and all its ranks together, and
        # a Ctrl+C in the parent's terminal does not reach the child.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=child_env, start_new_session=True)
    return TrainingProcess(process, run_dir)


__all__ = ["LOG_FILE", "TrainingProcess", "free_port", "run_training_subprocess"]
