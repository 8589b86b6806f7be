"""How responsive the window stays: a timer that records how late the event loop serves it.

A ``QTimer`` asks to fire every ``interval_ms``; when the GUI thread is busy (a redraw, a
blocking call, a held GIL) the next tick comes late. The gap between two ticks minus the
interval is the stall the user felt: a click or a repaint in that gap waited as long. The
probe keeps every stall, so tests and the benchmark can read the longest one and the 99th
percentile over a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer


@dataclass(frozen=True)
class StallReport:
    """Event-loop stalls over a probed period.

    Attributes:
        ticks: timer ticks recorded.
        seconds: length of the probed period.
        longest_ms: longest stall (gap between ticks beyond the interval), milliseconds.
        p99_ms: 99th percentile of the stalls, milliseconds.
        mean_ms: mean stall, milliseconds.
        interval_ms: the timer's interval.
    """

    ticks: int
    seconds: float
    longest_ms: float
    p99_ms: float
    mean_ms: float
    interval_ms: int

    def describe(self) -> str:
        return (f"longest event-loop stall {self.longest_ms:.0f} ms, 99th percentile {self.p99_ms:.0f} ms "
                f"({self.ticks} ticks of {self.interval_ms} ms over {self.seconds:.1f} s)")


class EventLoopProbe(QObject):
    """Records event-loop stalls on the GUI thread between ``start()`` and ``stop()``.

    Args:
        interval_ms: how often the timer asks to fire (10 ms resolves stalls well below
            what a user notices, about 100 ms).
    """

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.PreciseTimer)
        self._timer.setInterval(self.interval_ms)
        self._timer.timeout.connect(self._tick)
        self._gaps: list[float] = []
        self._ends: list[float] = []
        self._last: float | None = None
        self._started: float | None = None
        self._stopped: float | None = None

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self) -> None:
        """Start a new record (previous stalls are forgotten)."""
        self._gaps.clear()
        self._ends.clear()
        self._started = self._last = time.perf_counter()
        self._stopped = None
        self._timer.start()

    def stop(self) -> StallReport:
        """Stop recording; returns the report of the period."""
        if self._timer.isActive():
            self._timer.stop()
            self._tick()  # the time since the last tick counts too
            self._stopped = time.perf_counter()
        return self.report()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self._gaps.append(now - self._last)
            self._ends.append(now)
        self._last = now

    def stalls_ms(self) -> np.ndarray:
        """Each recorded stall in milliseconds: the gap between ticks beyond the interval."""
        gaps = np.asarray(self._gaps, dtype=float) * 1000.0
        return np.clip(gaps - self.interval_ms, 0.0, None)

    def stalls_longer_than(self, ms: float) -> list[tuple[float, float]]:
        """(seconds since ``start`` when the stall ended, stall in ms) of each stall over ``ms``."""
        stalls = self.stalls_ms()
        return [(self._ends[i] - self._started, float(stalls[i])) for i in range(stalls.size) if stalls[i] > ms]

    def report(self) -> StallReport:
        """The stalls so far (while running, or of the last period)."""
        stalls = self.stalls_ms()
        end = self._stopped if self._stopped is not None else time.perf_counter()
        seconds = 0.0 if self._started is None else end - self._started
        if stalls.size == 0:
            return StallReport(0, seconds, 0.0, 0.0, 0.0, self.interval_ms)
        return StallReport(int(stalls.size), seconds, float(stalls.max()), float(np.percentile(stalls, 99)),
                           float(stalls.mean()), self.interval_ms)


__all__ = ["EventLoopProbe", "StallReport"]
