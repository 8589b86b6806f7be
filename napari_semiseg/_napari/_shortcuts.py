"""Keyboard shortcuts of the panels, bound on the viewer (they work while the canvas has focus).

napari 0.9 does not act on an npe2 manifest's ``keybindings``, so each panel binds its own
actions with ``viewer.bind_key``. The keys avoid napari's own (``napari.utils.shortcuts``: the
Labels tools use plain letters and digits, the viewer Ctrl combinations) and are named in the
buttons' tooltips and the README.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

#: Action → key, in napari's spelling.
SAVE_CORRECTION, NEXT_CASE, TOGGLE_RESULTS = "Shift-S", "Shift-N", "Shift-R"


def shown(key: str) -> str:
    """A key as a tooltip names it: "Shift+S"."""
    return key.replace("-", "+")


def with_key(tooltip: str, key: str) -> str:
    """A tooltip that names its shortcut."""
    return f"{tooltip} (shortcut: {shown(key)})"


def bind(viewer, key: str, owner, action: Callable[[object], None]) -> None:
    """Bind ``key`` on ``viewer`` to ``action(owner)``; the panel is held weakly, so a closed
    panel is neither kept alive nor called."""
    panel = weakref.ref(owner)

    def pressed(_viewer) -> None:
        alive = panel()
        if alive is not None:
            action(alive)

    viewer.bind_key(key, pressed, overwrite=True)


__all__ = ["NEXT_CASE", "SAVE_CORRECTION", "TOGGLE_RESULTS", "bind", "shown", "with_key"]
