"""Checking a project and removing what interrupted writes left behind."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ._files import is_temporary, sha256_of

#: Folders whose every file the catalogue names (written only under the write lock).
_CATALOGUED = ("images", "labels", "models")


class Maintenance:
    """The maintenance half of ``Project`` (uses ``self._db``, ``self.root``)."""

    def collect_garbage(self, stale_after_s: float = 3600.0) -> list[Path]:
        """Remove files no catalogue row names, and temporary files of interrupted writes.

        In ``images/``, ``labels/`` and ``models/`` every file is written under the catalogue's
        write lock, which this method holds too: whatever is unreferenced there is left by a
        killed process. ``runs/`` belongs to jobs that may be running (in another process): only
        temporary files older than ``stale_after_s`` seconds are removed there.

        Returns:
            The files and folders removed.
        """
        removed: list[Path] = []
        with self._db.write():
            referenced = self._referenced_paths()
            for folder in _CATALOGUED:
                removed += _remove_unreferenced(self.root / folder, referenced)
        removed += _remove_stale_temporaries(self.root / "runs", time.time() - stale_after_s)
        return removed

    def _referenced_paths(self) -> set[Path]:
        rows = self._db.query("SELECT path FROM label_versions UNION ALL "
                              "SELECT path FROM soft_labels UNION ALL "
                              "SELECT checkpoint_path FROM models UNION ALL "
                              "SELECT image_path FROM cases")
        return {self._absolute(row[0]) for row in rows}

    def check(self) -> list[str]:
        """Everything wrong with the project, as messages; empty when all is well.

        Checks the catalogue (SQLite integrity, foreign keys), that every label version, soft
        label and model version file exists with the recorded SHA-256, and that every image
        exists.
        """
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
        return problems


def _file_problem(path: Path, sha256: str, what: str) -> list[str]:
    if not path.is_file():
        return [f"{path}: file of {what} is missing"]
    if sha256_of(path) != sha256:
        return [f"{path}: file of {what} differs from the recorded SHA-256"]
    return []


def _remove_unreferenced(folder: Path, referenced: set[Path]) -> list[Path]:
    """Remove files (and temporary folders) under ``folder`` that no row names."""
    if not folder.is_dir():
        return []
    removed = []
    for current, dirs, files in os.walk(folder, topdown=True):
        here = Path(current)
        for name in list(dirs):
            path = here / name
            if path in referenced:
                dirs.remove(name)  # a DICOM folder copied in: kept whole
            elif is_temporary(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
                dirs.remove(name)
        for name in files:
            path = here / name
            if path not in referenced:
                path.unlink(missing_ok=True)
                removed.append(path)
    _remove_empty_folders(folder)
    return removed


def _remove_empty_folders(folder: Path) -> None:
    for current, _dirs, _files in os.walk(folder, topdown=False):
        path = Path(current)
        if path != folder and not any(path.iterdir()):
            path.rmdir()


def _remove_stale_temporaries(folder: Path, older_than: float) -> list[Path]:
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*"):
        if path.is_file() and is_temporary(path) and path.stat().st_mtime < older_than:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
