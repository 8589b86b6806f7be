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

from qtpy.QtCore import QThreadPool


def reserve_pool_thread() -> None:
    """Before starting a worker: let the pool hold every running worker, the new one and one spare."""
    pool = QThreadPool.globalInstance()
    needed = pool.activeThreadCount() + 2
    if pool.maxThreadCount() < needed:
        pool.setMaxThreadCount(needed)


__all__ = ["reserve_pool_thread"]
