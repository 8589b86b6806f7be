"""Progress of a long command with its elapsed time and ETA, on a terminal and in a log.

On a terminal one stderr line is redrawn in place; written to a log (stderr not a terminal) a
whole line is printed every ``step`` of the work (5 % by default) and at its end, so that a
run of twelve minutes leaves about twenty lines saying how far it got and how long is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._engine_common import StatusLine, duration


def eta_text(elapsed: float, fraction: float) -> str:
    """"elapsed 1 min 02 s, ETA 3 min 10 s" (ETA unknown until some work is done)."""
    if fraction <= 0.0:
        return f"elapsed {duration(elapsed)}, ETA unknown"
    left = elapsed * (1.0 - fraction) / fraction
    return f"elapsed {duration(elapsed)}, ETA {duration(max(0.0, left))}"


class EtaProgress:
    """``report(fraction, detail)``: "VERB 35% DETAIL: elapsed ..., ETA ..." on stderr.

    Args:
        verb: what the command does ("predicting", "pseudo-labelling").
        status: the command's ``StatusLine`` (the lines it prints itself stay in order).
        step: in a log, a line each time this share of the work is done.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, verb: str, status: StatusLine, step: float = 0.05,
                 clock: Callable[[], float] = time.monotonic):
        self.verb, self.status, self.step, self.clock = verb, status, step, clock
        self.started = clock()
        self._bucket = 0

    def report(self, fraction: float, detail: str) -> bool:
        """Show the progress; True when a whole line that stays was printed (a caller printing
        ``detail`` on a line of its own can then leave it out)."""
        fraction = min(1.0, max(0.0, fraction))
        text = f"{self.verb} {100 * fraction:.0f}% {detail}: {eta_text(self.clock() - self.started, fraction)}"
        if self.status.tty:
            if fraction >= 1.0:  # the last report stays on the screen as a whole line
                self.status.line(text)
                return True
            self.status.update(text)
            return False
        bucket = int(fraction / self.step + 1e-9)
        if bucket > self._bucket:
            self._bucket = bucket
            self.status.line(text)
            return True
        return False
