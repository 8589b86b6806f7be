"""The project panel's logic, free of napari and Qt so that it is tested on its own.

A ``ProjectSession`` holds one open project and the case being corrected: which label version
was opened (the parent of the next correction) and a copy of it, so that unsaved edits can be
counted. The widget turns its results into layers and tables and its errors into notifications.
"""

from __future__ import annotations

import getpass
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ProjectError
from ..io import Volume

#: The kind every save from the panel records.
CORRECTED = "corrected"

#: What a session tells its listeners about (``listen``): another project was opened or closed,
#: a case (or another version of it) was opened, a label version was saved, the models changed,
#: cases were imported or moved to another split.
CHANGES = ("project", "case", "labels", "models", "cases")


@dataclass(frozen=True)
class OpenedCase:
    """A case as shown in the viewer.

    Attributes:
        case_id: the case.
        image: its image volume, (z, y, x) with geometry.
        label: the label version's (z, y, x) array, or zeros when the case has none yet;
            the session keeps this copy as the baseline for unsaved edits.
        version: the label version opened (``LabelVersion``), or None for a blank label.
        modality: "MR", "CT", ... as recorded at import.
    """

    case_id: str
    image: Volume
    label: np.ndarray
    version: object | None
    modality: str | None = None

    @property
    def version_id(self) -> int | None:
        return None if self.version is None else self.version.id


class ProjectSession:
    """One project open in the panel, and the case being corrected in it."""

    def __init__(self, project=None, author: str | None = None):
        self._project = project
        self._opened: OpenedCase | None = None
        self.author = author or _user_name()
        self._listeners: list[Callable[[], Callable | None]] = []

    # -- change notifications (the panels of one viewer share a session) ----------------------

    def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(change)`` after each change, ``change`` being one of ``CHANGES``.

        A bound method is held weakly, so a closed panel does not stay alive through its session.
        """
        try:
            self._listeners.append(weakref.WeakMethod(callback))
        except TypeError:  # a plain function
            self._listeners.append(lambda: callback)

    def notify(self, change: str) -> None:
        """Tell every listener about ``change`` (panels call it after changing the project)."""
        if change not in CHANGES:
            raise ValueError(f"unknown change {change!r}; one of {CHANGES}")
        alive = []
        for reference in self._listeners:
            callback = reference()
            if callback is not None:
                alive.append(reference)
                callback(change)
        self._listeners = alive

    # -- the project ---------------------------------------------------------------------

    def create_project(self, folder: str | Path):
        """Create a new project in ``folder`` and make it the open one."""
        from ..project import Project

        return self._switch_to(Project.create(_folder(folder)))

    def open_project(self, folder: str | Path):
        """Open the existing project in ``folder``.

        Raises:
            ProjectError: the folder is missing or is not a project.
        """
        from ..project import Project

        return self._switch_to(Project.open(_folder(folder)))

    @property
    def project(self):
        if self._project is None:
            raise ProjectError("no project is open: create or open one first")
        return self._project

    @property
    def has_project(self) -> bool:
        return self._project is not None

    def cases(self) -> list:
        """The project's ``CaseSummary`` rows (id, shape, spacing, split, latest kind, versions)."""
        return self.project.cases()

    def set_split(self, case_id: str, split: str):
        """Move a case to another split (``project.SPLITS``), saved at once; returns the ``Case``.

        Raises:
            ProjectError: unknown case or split.
        """
        case = self.project.set_split(case_id, split)
        self.notify("cases")
        return case

    # -- the case being corrected -----------------------------------------------------------

    @property
    def opened(self) -> OpenedCase | None:
        return self._opened

    def open_case(self, case_id: str, version_id: int | None = None) -> OpenedCase:
        """Load a case's image and a label version (its latest one when ``version_id`` is None).

        Raises:
            ProjectError: unknown case, or a version of another case.
            VolumeError: the image or label file is missing or damaged.
        """
        modality = self.project.case(case_id).modality
        image = self.project.load_image(case_id)
        version = (self.project.latest_label(case_id) if version_id is None
                   else self._version_of(case_id, version_id))
        if version is None:
            label = np.zeros(image.shape, dtype=np.uint8)
        else:
            label = self.project.load_label(version.id)
        self._opened = OpenedCase(case_id, image, np.array(label, copy=True), version, modality)
        self.notify("case")
        return self._opened

    def open_version(self, version_id: int) -> OpenedCase:
        """Reopen another label version of the opened case (the image is not reloaded)."""
        opened = self._require_opened()
        version = self._version_of(opened.case_id, version_id)
        label = np.array(self.project.load_label(version.id), copy=True)
        self._opened = replace(opened, label=label, version=version)
        self.notify("case")
        return self._opened

    def next_case_id(self) -> str:
        """The case to annotate next: the top of ``engine.pseudo.rank_cases``.

        That is the unlabelled case whose soft labels are the most uncertain (mean entropy plus
        the disagreement of several models' teachers); cases without a soft label come after
        the scored ones, in project order.

        Raises:
            ProjectError: no project is open, or every case has a gold or corrected label.
        """
        from ..engine.pseudo import next_case

        case_id = next_case(self.project)
        if case_id is None:
            raise ProjectError(f"{self.project.root}: every case has a gold or corrected label; "
                               "no case is left to annotate")
        return case_id

    def history(self) -> list:
        """The opened case's label versions, oldest first (empty when no case is open)."""
        if self._opened is None:
            return []
        return self.project.label_versions(self._opened.case_id)

    def unsaved_voxels(self, labels: np.ndarray) -> int:
        """How many voxels of ``labels`` differ from the version that was opened."""
        if self._opened is None:
            return 0
        labels = np.asarray(labels)
        if labels.shape != self._opened.label.shape:
            return int(labels.size)
        return int(np.count_nonzero(labels != self._opened.label))

    def save_correction(self, labels: np.ndarray, note: str | None = None):
        """Save ``labels`` as a new ``corrected`` version whose parent is the opened version.

        The saved version becomes the opened one, so the next correction builds on it.

        Args:
            labels: the (z, y, x) integer label map, on the case image's grid.
            note: free text stored with the version.

        Returns:
            The new ``LabelVersion`` (its ``voxels_changed`` counts the edits against the parent).

        Raises:
            ProjectError: no case is open, or nothing changed since the opened version.
            VolumeError: wrong shape, negative or non-integer labels.
        """
        opened = self._require_opened()
        labels = np.array(labels, copy=True)
        if labels.shape == opened.label.shape and not np.any(labels != opened.label):
            where = f"version {opened.version_id}" if opened.version else "the empty label"
            raise ProjectError(f"case {opened.case_id}: no voxel differs from {where}; nothing to save")
        version = self.project.save_label(opened.case_id, labels, CORRECTED,
                                          parent_id=opened.version_id, author=self.author, note=note)
        self._opened = replace(opened, label=labels, version=version)
        self.notify("labels")
        return version

    # -- helpers ------------------------------------------------------------------------------

    def _switch_to(self, project):
        if self._project is not None and self._project is not project:
            self._project.close()
        self._project, self._opened = project, None
        self.notify("project")
        return project

    def _require_opened(self) -> OpenedCase:
        if self._opened is None:
            raise ProjectError("no case is open: open a case first")
        return self._opened

    def _version_of(self, case_id: str, version_id: int):
        for version in self.project.label_versions(case_id):
            if version.id == version_id:
                return version
        raise ProjectError(f"label version {version_id} does not belong to case {case_id}")

    def close(self) -> None:
        had_project = self._project is not None
        if had_project:
            self._project.close()
        self._project, self._opened = None, None
        if had_project:
            self.notify("project")


def _folder(folder: str | Path) -> Path:
    text = str(folder).strip()
    if not text:
        raise ProjectError("no folder given: type a project folder or choose one")
    return Path(text).expanduser()


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry inside some containers
        return None
