"""Turn a job that reports through a callback into a generator that yields its reports.

MONAI's ``sliding_window_inference`` is one blocking call whose only hook is the predictor
it calls per window batch. To yield a report per batch (what napari's generator workers
consume) and to stop *between* batches, the job runs in a helper thread in lock-step with
the generator: each ``step(report)`` hands the report over and waits until the consumer
asks for the next one. So the job never runs ahead of its consumer; when the generator is
closed (or raises) while a step waits, that step raises ``_Abandoned`` inside the job,
which unwinds and ends the thread before the generator finishes closing.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generator, TypeVar

T = TypeVar("T")


class _Abandoned(BaseException):
    """Raised inside the job when its consumer went away (BaseException: no ``except Exception`` eats it)."""


def run_stepwise(job: Callable[[Callable[[Any], None]], T], name: str = "semiseg-step"
                 ) -> Generator[Any, None, T]:
    """Run ``job(step)`` in a thread; yield each report it passes to ``step``; return its result.

    Exceptions raised by the job are re-raised here, in the consumer's thread, with their
    traceback. Thread-local state (``torch.inference_mode``) must be entered inside the job.
    """
    to_consumer: queue.Queue = queue.Queue(maxsize=1)
    to_job: queue.Queue = queue.Queue(maxsize=1)

    def step(report) -> None:
        to_consumer.put(("report", report))
        if to_job.get() == "stop":
            raise _Abandoned

    def body() -> None:
        try:
            result = job(step)
        except _Abandoned:
            to_consumer.put(("abandoned", None))
        except BaseException as exc:  # handed to the consumer, raised there
            to_consumer.put(("error", exc))
        else:
            to_consumer.put(("result", result))

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            kind, value = to_consumer.get()
            if kind == "report":
                yield value
                to_job.put("go")
                continue
            finished = True
            if kind == "error":
                raise value
            return value
    finally:
        if not finished:
            to_job.put("stop")
            while to_consumer.get()[0] == "report":  # drain until the job has unwound
                pass
        thread.join()
