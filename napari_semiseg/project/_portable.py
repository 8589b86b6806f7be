"""Paths the catalogue keeps, stored so that a project folder can be moved, copied or mounted.

A path inside the project is stored relative to its folder and read back against the folder
that was opened: a copy (``cp -a P Q``) reads and writes Q's files, never P's. Besides the
path columns (cases, label versions, soft labels, models), the JSON columns (a run's config
and result, a model version's training config) hold paths under the keys ``PATH_KEYS``
(``run_dir``, ``output_dir``, a case's ``image`` and ``label``...): they are stored the same
way, and read back absolute. Paths outside the project stay absolute: they are the user's
files (images referenced where they lie).

Catalogues written before this kept run folders absolute. Such a path, when it lies under the
folder the catalogue was used in then (which the run folders themselves tell,
``<root>/runs/<run>``) and not under the opened one, is read as the same path under the
opened root: a copy never follows an old path back into its original.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ._json import dumps, loads

#: Keys of the JSON columns whose string values are paths.
PATH_KEYS = frozenset({"run_dir", "output_dir", "resume_from", "init_from", "checkpoint", "model",
                       "image", "label"})
#: Keys that name a run folder, which is always made as ``<project root>/runs/<run>``.
RUN_FOLDER_KEYS = ("run_dir", "output_dir")


def root_of_run_folder(run_dir: str | Path | None) -> Path | None:
    """The project root an absolute run folder was made in (``<root>/runs/<run>``), or None."""
    if not isinstance(run_dir, (str, Path)) or not run_dir:
        return None
    path = Path(run_dir)
    return path.parent.parent if path.is_absolute() and path.parent.name == "runs" else None


def map_paths(value, convert: Callable[[str], str]):
    """``value`` (plain JSON data) with ``convert`` applied to every string under a path key."""
    if isinstance(value, dict):
        return {key: convert(item) if key in PATH_KEYS and isinstance(item, str) and item
                else map_paths(item, convert) for key, item in value.items()}
    if isinstance(value, list):
        return [map_paths(item, convert) for item in value]
    return value


class PortablePaths:
    """The path half of ``Project`` (uses ``self.root``, ``self._db``)."""

    def stored_path(self, path: str | Path) -> str:
        """How the catalogue stores ``path``: relative when inside the project, else absolute."""
        path = Path(path)
        if path.is_absolute() and path.is_relative_to(self.root):
            return path.relative_to(self.root).as_posix()
        return str(path)

    def resolve_path(self, stored: str | Path, former_root: Path | None = None) -> Path:
        """The absolute path, in the opened project, of a path the catalogue (or a run) stored.

        Args:
            stored: a relative path (inside the project) or an absolute one.
            former_root: a folder the project was used in before (where a run's own files
                say it was made); the roots the catalogue's old run folders tell are tried too.
        """
        path = Path(stored)
        if not path.is_absolute():
            return self.root / path
        if path.is_relative_to(self.root):
            return path
        for old_root in ([former_root] if former_root is not None else []) + self._former_roots():
            if path.is_relative_to(old_root):
                return self.root / path.relative_to(old_root)
        return path

    def portable_run_config(self, config: dict) -> dict:
        """A run's config as its run folder or checkpoint recorded it, its paths in this project.

        The trainer writes absolute paths (it knows no project): a run copied with its project
        names the original's files. Paths under the root its ``output_dir`` was made in are
        taken under this project's root.
        """
        if not isinstance(config, dict):
            return config  # not a config at all: TrainConfig.from_dict says so
        former = root_of_run_folder(config.get("output_dir"))
        return map_paths(config, lambda text: str(self.resolve_path(text, former)))

    # -- the JSON columns ---------------------------------------------------------------------

    def _dumps_paths(self, value) -> str:
        """``dumps(value)`` with the paths under ``PATH_KEYS`` stored relative when inside."""
        return dumps(map_paths(loads(dumps(value)), self.stored_path))

    def _loads_paths(self, text: str | None):
        """``loads(text)`` with the paths under ``PATH_KEYS`` absolute in the opened project."""
        return map_paths(loads(text), lambda stored: str(self.resolve_path(stored)))

    def _former_roots(self) -> list[Path]:
        """Folders this catalogue was used in before, as its absolute run folders tell."""
        cached = getattr(self, "_former_roots_cache", None)
        if cached is None:
            rows = self._db.query("SELECT config, result FROM runs UNION ALL SELECT config, NULL FROM models")
            roots = {root for row in rows for text in row for root in _run_folder_roots(text)}
            cached = self._former_roots_cache = sorted(roots - {self.root}, key=lambda p: -len(p.parts))
        return cached


def _run_folder_roots(text: str | None) -> list[Path]:
    data = loads(text) if text else None
    if not isinstance(data, dict):
        return []
    return [root for key in RUN_FOLDER_KEYS if (root := root_of_run_folder(data.get(key))) is not None]
