"""The project: a folder holding ``project.db`` and the files the catalogue points to.

Layout::

    PROJECT/
      project.db                      SQLite catalogue (WAL: -wal and -shm files beside it)
      images/<case>/<unique>/<file>   images copied in (``add_case(copy=True)``); the others
                                      are referenced where they lie
      images/<case>/<unique>-dicom-headers.json
                                      a DICOM series' headers, no pixels (DICOM-SEG export)
      labels/<case>/<unique>.nii.gz   every label version, one file each
      labels/<case>/soft-<unique>.npz every soft label (8-bit class probabilities)
      models/<unique>/<checkpoint>    every model version's weights
      runs/...                        what long jobs keep (logs, resumable state)
      exports/...                     files written for the user
      trash/<time>/...                what garbage collection took away, until emptied

Paths inside the folder are stored relative to it (see ``_portable``): a project can be moved,
copied or mounted elsewhere, and a copy never reads or writes its original's files.

Every write puts its file in place atomically first, then records it in one transaction, both
under the catalogue's write lock (see ``_db.Database.write``). A process killed at any moment
therefore leaves at worst a file that no row names, which ``collect_garbage`` puts aside; a row
whose file is missing cannot arise.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from ..errors import ProjectError
from ._cases import CaseStore
from ._db import Database
from ._dicom_sources import DicomSourceStore
from ._files import FOLDERS
from ._labels import LabelStore
from ._maintenance import Maintenance
from ._models import ModelStore
from ._ownership import APPLICATION_ID, check_catalogue_file, stamp
from ._portable import PortablePaths
from ._runs import RunStore
from ._schema import SCHEMA_VERSION, migrate
from ._soft_labels import SoftLabelStore

DB_NAME = "project.db"


class Project(CaseStore, DicomSourceStore, LabelStore, SoftLabelStore, ModelStore, RunStore, Maintenance,
              PortablePaths):
    """A project folder and its catalogue. Safe to share between threads and processes.

    Use ``Project.create(folder)`` or ``Project.open(folder)``, not the constructor. A project
    is also a context manager that closes its connection.
    """

    def __init__(self, root: Path, db: Database):
        self.root = root
        self._db = db

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def create(cls, folder: str | Path) -> "Project":
        """Make a new project in ``folder`` (created if absent; it must be empty otherwise).

        Raises:
            ProjectError: ``folder`` is already a project, or a non-empty folder, or a file.
        """
        root = Path(folder).expanduser().resolve()
        if (root / DB_NAME).exists():
            raise ProjectError(f"{root}: is already a napari-semiseg project")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root}: is a file, not a folder")
        if root.is_dir() and any(root.iterdir()):
            # The project deletes unreferenced files in its managed folders (collect_garbage):
            # it must never adopt a folder holding the user's own files.
            raise ProjectError(f"{root}: folder is not empty; give a new or empty folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ProjectError(f"{root}: cannot create the project folder "
                               f"({error.strerror})") from None
        return cls._connect(root)

    @classmethod
    def open(cls, folder: str | Path) -> "Project":
        """Open an existing project, bringing its catalogue to the current schema.

        Raises:
            ProjectError: ``folder`` does not exist or holds no project; its catalogue is empty,
                another program's database, or damaged (nothing is written to it then).
        """
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise ProjectError(f"{root}: no such project folder")
        if not (root / DB_NAME).is_file():
            raise ProjectError(f"{root}: is not a napari-semiseg project (no {DB_NAME}); "
                               f"create one with `semiseg init {root}`")
        check_catalogue_file(root / DB_NAME)
        return cls._connect(root)

    @classmethod
    def _connect(cls, root: Path) -> "Project":
        db = Database(root / DB_NAME)
        try:
            if db.schema_version() != SCHEMA_VERSION:
                with db.write() as conn:
                    migrate(conn, str(root))
                    stamp(conn)
            elif db.application_id() != APPLICATION_ID:
                _stamp_if_writable(db)
        except sqlite3.DatabaseError as error:
            db.close()
            raise ProjectError(f"{root / DB_NAME}: not a readable project catalogue "
                               f"({error})") from None
        except BaseException:
            db.close()
            raise
        return cls(root, db)

    def close(self) -> None:
        """Close the catalogue connection; the object is unusable afterwards."""
        self._db.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    # -- files ---------------------------------------------------------------------------------

    def path_for(self, kind: str, name: str) -> Path:
        """Where a new file or folder called ``name`` of ``kind`` goes inside the project.

        Args:
            kind: one of ``images``, ``labels``, ``models``, ``runs``, ``exports`` (the singular
                works too).
            name: a relative path inside that folder (``"run-12/log.jsonl"``).

        Returns:
            The absolute path; its parent folder exists.
        """
        folder = kind if kind in FOLDERS else f"{kind}s"
        if folder not in FOLDERS:
            raise ProjectError(f"{self.root}: no project folder for {kind!r}; "
                               f"use one of {', '.join(FOLDERS)}")
        base = (self.root / folder).resolve()
        path = (base / name).resolve()
        if base != path and base not in path.parents:
            raise ProjectError(f"{self.root}: {name!r} leaves the project's {folder} folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _relative(self, path: Path) -> str:
        """How the catalogue stores a path inside the project."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def _absolute(self, stored: str) -> Path:
        """The absolute path of a stored one (relative ones are inside the project)."""
        return self.resolve_path(stored)

    def integrity_check(self) -> list[str]:
        """SQLite's integrity and foreign-key checks: ``["ok"]`` or the problems found."""
        return self._db.integrity_check()


def _stamp_if_writable(db: Database) -> None:
    """Mark an earlier release's catalogue (already recognised as ours) with our application id.

    A read-only project still opens: it is recognised by its tables again next time.
    """
    with contextlib.suppress(ProjectError), db.write() as conn:
        stamp(conn)
