"""Checking a project, and putting aside what interrupted writes left behind.

Garbage collection trusts the catalogue: a file no row names is garbage. An emptied, replaced
or damaged catalogue would make every label and model look so, hence two rules a clinician
who must never lose a correction wants: it refuses to run on a catalogue that fails SQLite's
integrity check or names nothing while the project holds files, and it never deletes. What it
takes away is moved to ``trash/<time>/<its path in the project>``, from where it can be put
back by hand; only ``empty_trash`` deletes, when the user asks.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import ProjectError
from ._files import is_temporary, sha256_of, unique_stem

#: Folders whose every file the catalogue names (written only under the write lock).
_CATALOGUED = ("images", "labels", "models")
#: Where garbage collection moves what it takes away; never scanned, checked or catalogued.
TRASH = "trash"


class Maintenance:
    """The maintenance half of ``Project`` (uses ``self._db``, ``self.root``)."""

    def collect_garbage(self, stale_after_s: float = 3600.0) -> list[Path]:
        """Move files no catalogue row names, and temporary files of interrupted writes, to the trash.

        In ``images/``, ``labels/`` and ``models/`` every file is written under the catalogue's
        write lock, which this method holds too: whatever is unreferenced there is left by a
        killed process. ``runs/`` belongs to jobs that may be running (in another process): only
        temporary files older than ``stale_after_s`` seconds are taken there. Nothing is
        deleted: see the module docstring and ``empty_trash``.

        Returns:
            The files and folders taken away (where they were).

        Raises:
            ProjectError: the catalogue fails SQLite's integrity check, or names no case, label
                or model while those folders hold files; nothing is moved then.
        """
        trash = _Trash(self.root)
        taken: list[Path] = []
        with self._db.write():
            self._refuse_untrusted_catalogue()
            referenced = self._referenced_paths()
            for folder in _CATALOGUED:
                taken += _take_unreferenced(self.root / folder, referenced, trash)
        taken += _take_stale_temporaries(self.root / "runs", time.time() - stale_after_s, trash)
        return taken

    def empty_trash(self) -> list[Path]:
        """Delete for good what garbage collection moved to the trash; returns the files deleted."""
        with self._db.write():  # not while another process's garbage collection fills it
            files = self.trash_files()
            shutil.rmtree(self.trash_folder, ignore_errors=True)
        return files

    @property
    def trash_folder(self) -> Path:
        """Where garbage collection moves what it takes away: ``<time>/<its path in the project>``."""
        return self.root / TRASH

    def trash_files(self) -> list[Path]:
        """The files garbage collection moved to the trash, oldest collection first."""
        folder = self.trash_folder
        return sorted(path for path in folder.rglob("*") if not path.is_dir()) if folder.is_dir() else []

    def _refuse_untrusted_catalogue(self) -> None:
        problems = [problem for problem in self._db.integrity_check() if problem != "ok"]
        if problems:
            raise ProjectError(f"{self._db.path}: the project catalogue fails SQLite's integrity check "
                               f"({problems[0]}); garbage collection refused: every file would be judged "
                               "against a damaged catalogue. Restore project.db from a backup")
        named = self._db.query_one("SELECT (SELECT COUNT(*) FROM cases) + (SELECT COUNT(*) FROM "
                                   "label_versions) + (SELECT COUNT(*) FROM models)")[0]
        files = 0 if named else sum(_count_files(self.root / folder) for folder in _CATALOGUED)
        if files:
            raise ProjectError(f"{self._db.path}: the catalogue names no case, label or model, yet "
                               f"{', '.join(f'{f}/' for f in _CATALOGUED)} hold {files} file(s); garbage "
                               "collection refused (was project.db emptied or replaced? restore it from "
                               "a backup). Nothing was moved")

    def _referenced_paths(self) -> set[Path]:
        rows = self._db.query("SELECT path FROM label_versions UNION ALL "
                              "SELECT path FROM soft_labels UNION ALL "
                              "SELECT checkpoint_path FROM models UNION ALL "
                              "SELECT image_path FROM cases UNION ALL "
                              "SELECT headers_path FROM dicom_sources")
        return {self._absolute(row[0]) for row in rows}

    def check(self) -> list[str]:
        """Everything wrong with the project, as messages; empty when all is well.

        Checks the catalogue (SQLite integrity, foreign keys), that every label version, soft
        label, model version and kept DICOM headers file exists with the recorded SHA-256, and
        that every image exists.

        Raises:
            ProjectError: the catalogue file is damaged: what it lists cannot be trusted.
        """
        damage = self._db.damage_found()
        if damage:
            raise ProjectError(f"{self._db.path}: the project catalogue is damaged ({damage[0]}"
                               f"{f' and {len(damage) - 1} more' if len(damage) > 1 else ''}); "
                               "restore project.db from a backup")
        problems = [p for p in self.integrity_check() if p != "ok"]
        for version in self.label_versions():
            problems += _file_problem(version.path, version.sha256,
                                      f"label version {version.id} of case {version.case_id!r}")
        for soft in self.soft_labels():
            problems += _file_problem(soft.path, soft.sha256,
                                      f"soft label {soft.id} of case {soft.case_id!r}")
        for model in self.models():
            problems += _file_problem(model.checkpoint_path, model.sha256,
                                      f"model version {model.id}")
        for case_id in self.case_ids():
            path = self.case(case_id).image_path
            if not path.exists():
                problems.append(f"{path}: image of case {case_id!r} is missing")
            dicom = self.dicom_source(case_id)
            if dicom is not None:
                problems += _file_problem(dicom.headers_path, dicom.sha256,
                                          f"the DICOM headers of case {case_id!r}")
        return problems


def _file_problem(path: Path, sha256: str, what: str) -> list[str]:
    if not path.is_file():
        return [f"{path}: file of {what} is missing"]
    if sha256_of(path) != sha256:
        return [f"{path}: file of {what} differs from the recorded SHA-256"]
    return []


class _Trash:
    """``trash/<time>-<token>/`` of one garbage collection, made when the first thing arrives."""

    def __init__(self, root: Path):
        self.root = root
        self.batch = root / TRASH / unique_stem()

    def take(self, path: Path) -> Path | None:
        """Move ``path`` (a file or folder of the project) into the trash; None if it vanished."""
        destination = self.batch / path.relative_to(self.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(path, destination)  # a rename; a copy only if a folder is another mount
        except FileNotFoundError:
            return None  # a running job renamed its temporary file meanwhile
        return path


def _count_files(folder: Path) -> int:
    return sum(len(files) for _current, _dirs, files in os.walk(folder))


def _take_unreferenced(folder: Path, referenced: set[Path], trash: _Trash) -> list[Path]:
    """Move files (and temporary folders) under ``folder`` that no row names to the trash."""
    if not folder.is_dir():
        return []
    taken = []
    for current, dirs, files in os.walk(folder, topdown=True):
        here = Path(current)
        for name in list(dirs):
            path = here / name
            if path in referenced:
                dirs.remove(name)  # a DICOM folder copied in: kept whole
            elif is_temporary(path):
                taken.append(trash.take(path))
                dirs.remove(name)
        for name in files:
            path = here / name
            if path not in referenced:
                taken.append(trash.take(path))
    _remove_empty_folders(folder)
    return taken


def _remove_empty_folders(folder: Path) -> None:
    for current, _dirs, _files in os.walk(folder, topdown=False):
        path = Path(current)
        if path != folder and not any(path.iterdir()):
            path.rmdir()


def _take_stale_temporaries(folder: Path, older_than: float, trash: _Trash) -> list[Path]:
    if not folder.is_dir():
        return []
    stale = [path for path in folder.rglob(".*")
             if path.is_file() and is_temporary(path) and path.stat().st_mtime < older_than]
    return [path for path in stale if trash.take(path) is not None]
