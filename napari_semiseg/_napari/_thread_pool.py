"""Keep a thread of Qt's global pool free for Qt itself while napari workers run.

napari's generator workers are ``QRunnable``s on ``QThreadPool.globalInstance()``, whose
size is the number of cores (2 on the development machines). Qt uses the same pool from the
GUI thread, e.g. to convert a large window image in parallel while flushing the backing
store, and then waits for those tasks — with the GIL held, because PyQt5 keeps it across
``QMainWindow.event``. When every pool thread runs a Python worker, the conversion tasks
never start and the workers never get the GIL: the window freezes for good. Observed with
pseudo-labelling and the case ranking running side by side on 2 cores.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from qtpy.QtCore import QThreadPool

#: Niceness of a pool thread while it runs a worker (as the fine-tune child: ``_finetune_job.CHILD_NICENESS``).
WORKER_NICENESS = 10


def reserve_pool_thread() -> None:
    """Before starting a worker: let the pool hold every running worker, the new one and one spare."""
    pool = QThreadPool.globalInstance()
    needed = pool.activeThreadCount() + 2
    if pool.maxThreadCount() < needed:
        pool.setMaxThreadCount(needed)


@contextlib.contextmanager
def lowered_thread_priority() -> Iterator[None]:
    """Run the block with this thread niced, so that the GUI thread wins the cores when both want them.

    Linux schedules threads one by one (``setpriority`` with a thread id); torch's compute
    threads, started by the first worker that uses them, inherit the lower priority. The
    thread's priority is restored afterwards, from whichever thread ends the block: pool threads
    are reused, and Qt's own tasks on them must not be slowed. Elsewhere this does nothing.
    """
    thread = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, thread)
        if not _may_renice_back_to(before):
            yield
            return
        os.setpriority(os.PRIO_PROCESS, thread, max(before, WORKER_NICENESS))
    except (AttributeError, OSError):  # not on this platform, or not permitted
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # raising a priority back may need a privilege
            os.setpriority(os.PRIO_PROCESS, thread, before)


def _may_renice_back_to(niceness: int) -> bool:
    """Whether this process may lower a thread's niceness back to ``niceness`` (root, or RLIMIT_NICE)."""
    try:
        import resource
        soft, _hard = resource.getrlimit(resource.RLIMIT_NICE)
    except (ImportError, AttributeError, OSError):
        return False
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or 20 - soft <= niceness


__all__ = ["WORKER_NICENESS", "lowered_thread_priority", "reserve_pool_thread"]
