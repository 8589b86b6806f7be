"""Errors a user can act on.

Every error that reaches a user (CLI stderr, a napari notification) is a ``SemisegError``
whose message names the file or object and the problem. Deep library tracebacks are
translated into one of these at the boundary where the library is called.
"""

from __future__ import annotations

from pathlib import Path


class SemisegError(Exception):
    """An error with a message meant for the user, not a traceback."""


class VolumeError(SemisegError):
    """A volume file cannot be read or written as asked."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class GeometryMismatchError(VolumeError):
    """A label does not lie on its image's voxel grid."""


class ProjectError(SemisegError):
    """The project folder or catalogue cannot do what was asked."""


class TrainingError(SemisegError):
    """A training run cannot start or continue (bad configuration, data, checkpoint, loss).

    Defined here, not in the trainer, because the layers below it (case data, methods) raise it too."""


class Cancelled(SemisegError):
    """The user asked long work (a prediction, pseudo-labelling) to stop; nothing partial was kept."""
