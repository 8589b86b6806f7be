"""Generator workers: long work off the GUI thread, its reports back on it, cancellable.

``start_generator_job(make_steps, ...)`` runs ``make_steps(should_stop)`` — a generator that
yields small report objects and returns a result — in a napari generator worker. Every
yielded report, the result, an error and a cancellation come back as calls on the GUI
thread, so only those callbacks touch layers and widgets.

Cancel is twofold, because either side may notice first: a flag the generator asks between
steps (``should_stop``; the engine raises ``Cancelled`` there) and ``worker.quit()`` (napari
stops resuming the generator; we then close it, so its ``finally`` clauses run at once).

superqt's worker turns a ``RuntimeError`` raised in the generator into a bare warning (it
takes it for a deleted Qt object), and torch raises plenty of those; the relay re-raises
them as ``WorkerError`` so that they reach the user like any other error.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from napari.qt.threading import create_worker

from ..errors import Cancelled, SemisegError
from ._thread_pool import lowered_thread_priority, reserve_pool_thread


class WorkerError(SemisegError):
    """An unexpected error inside a worker, with the original's type and message."""


def describe_error(error: BaseException) -> str:
    """The message a user sees: ours as written, anything else prefixed by its type."""
    if isinstance(error, SemisegError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _relay(steps: Generator) -> Generator:
    with lowered_thread_priority():
        try:
            return (yield from steps)
        except (Cancelled, SemisegError):
            raise
        except RuntimeError as error:
            raise WorkerError(describe_error(error)) from error


@dataclass
class GeneratorJob:
    """A running generator worker and its cancel switch.

    Attributes:
        worker: napari's ``GeneratorWorker`` (signals: yielded, returned, errored, aborted,
            finished).
        steps: the generator it drives (closed when napari aborts the worker).
        cancel_requested: set by ``cancel``; the generator's ``should_stop`` reads it.
        done: True once the worker has finished, whichever way.
        showing: result pieces the panel is still adding to the viewer, one per event-loop
            turn after the worker finished (``hold`` / ``release``); the job runs until 0.
    """

    worker: Any
    steps: Generator
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    showing: int = 0

    def cancel(self) -> None:
        """Ask the work to stop between two steps (the callbacks then get ``on_cancelled``)."""
        self.cancel_requested.set()
        self.worker.quit()

    def hold(self) -> None:
        """The panel goes on showing the result after the worker ends: still running."""
        self.showing += 1

    def release(self) -> None:
        self.showing -= 1

    @property
    def running(self) -> bool:
        return not self.done or self.showing > 0


def start_generator_job(make_steps: Callable[[Callable[[], bool]], Generator], *,
                        on_report: Callable[[Any], None],
                        on_result: Callable[[Any], None],
                        on_error: Callable[[BaseException], None],
                        on_cancelled: Callable[[str], None],
                        on_finished: Callable[[], None] | None = None) -> GeneratorJob:
    """Run ``make_steps(should_stop)`` in a worker thread; the callbacks run on the GUI thread.

    Args:
        make_steps: builds the generator; it yields reports and returns the result.
        on_report: each yielded item.
        on_result: the generator's return value.
        on_error: an exception raised by the generator (``Cancelled`` excepted).
        on_cancelled: the work stopped because ``cancel`` was called; gets a message.
        on_finished: after any of the above.

    Returns:
        The ``GeneratorJob`` (``cancel()`` stops it; ``worker`` for more signals).
    """
    reserve_pool_thread()  # see _thread_pool: two workers on two cores can freeze Qt
    # Everything alive now (napari, Qt wrappers, torch: ~500 k objects) leaves the cycle
    # collector's reach: a full collection walking it took 300 ms on the GUI thread while the
    # results were shown. Cost: a cycle already garbage now is never reclaimed.
    gc.freeze()
    stop = threading.Event()
    steps = make_steps(stop.is_set)

    def errored(error: BaseException) -> None:
        if isinstance(error, Cancelled):
            on_cancelled(str(error))
        else:
            on_error(error)

    # Connecting "errored" here keeps superqt from re-raising the error in the event loop.
    worker = create_worker(_relay, steps, _start_thread=False, _connect={"errored": errored})
    job = GeneratorJob(worker, steps, stop)

    def aborted() -> None:
        steps.close()  # suspended at a yield: its finally clauses (thread clean-up) run now
        on_cancelled("cancelled")

    def finished() -> None:
        job.done = True
        if on_finished is not None:
            on_finished()

    worker.yielded.connect(on_report)
    worker.returned.connect(on_result)
    worker.aborted.connect(aborted)
    worker.finished.connect(finished)
    worker.start()
    return job


__all__ = ["GeneratorJob", "WorkerError", "describe_error", "start_generator_job"]
