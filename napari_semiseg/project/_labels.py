"""Label versions: every save is a new file and a new row, never an overwrite."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ProjectError
from ..io import read_label, validate_label, write_label
from ..io._volume import Geometry
from ._files import sha256_of, unique_stem, utc_now
from ._records import LabelVersion
from ._schema import LABEL_KINDS

#: Label files are gzipped NIfTI on the case's grid.
LABEL_SUFFIX = ".nii.gz"


class _PreparedLabel(NamedTuple):
    """A checked label save, ready to be written inside a transaction."""

    case_id: str
    kind: str
    labels: np.ndarray
    geometry: Geometry
    parent_id: int | None
    model_id: int | None
    changed: int


class LabelStore:
    """The label half of ``Project`` (uses ``self._db``, ``self.case``, ``self.path_for``)."""

    def save_label(self, case_id: str, array: np.ndarray, kind: str, *,
                   parent_id: int | None = None, model_id: int | None = None,
                   author: str | None = None, note: str | None = None) -> LabelVersion:
        """Save a label map of a case as a new version.

        Args:
            case_id: the case it labels.
            array: integer labels >= 0, (z, y, x), the case's shape.
            kind: one of ``LABEL_KINDS``.
            parent_id: the version this one was derived from (what the clinician corrected).
            model_id: the model version that produced it.
            author: who saved it.
            note: free text.

        Returns:
            The new version; ``voxels_changed`` counts voxels differing from the parent (from
            an all-zero map without a parent).

        Raises:
            ProjectError: unknown case, kind, parent (or a parent of another case) or model.
            VolumeError: the array is not a valid label map for the case's grid.
        """
        prepared = self._prepare_label(case_id, array, kind, parent_id, model_id)
        with self._db.write() as conn:
            version_id, _path = self._write_label(conn, prepared, author, note)
        return self.label_version(version_id)

    def _prepare_label(self, case_id: str, array: np.ndarray, kind: str,
                       parent_id: int | None, model_id: int | None) -> "_PreparedLabel":
        """Check a label save's arguments and count its changes (no write yet)."""
        if kind not in LABEL_KINDS:
            raise ProjectError(f"unknown label kind {kind!r}; use one of {', '.join(LABEL_KINDS)}")
        case = self.case(case_id)
        labels = validate_label(np.asarray(array), None, case.geometry,
                                f"label for case {case_id!r}")
        reference = self._parent_labels(case_id, parent_id)
        changed = int(np.count_nonzero(labels != reference)) if reference is not None \
            else int(np.count_nonzero(labels))
        if model_id is not None:
            self.model(model_id)
        return _PreparedLabel(case_id, kind, labels, case.geometry, parent_id, model_id, changed)

    def _write_label(self, conn, prepared: "_PreparedLabel", author: str | None,
                     note: str | None) -> tuple[int, Path]:
        """Write the label file, then its row, inside the caller's write transaction.

        Returns:
            The new version's id and its file (removed again if the transaction does not commit).
        """
        case_id, kind = prepared.case_id, prepared.kind
        path = self.path_for("labels", f"{case_id}/{unique_stem(kind + '-')}{LABEL_SUFFIX}")
        write_label(path, prepared.labels, prepared.geometry)
        # If the transaction does not commit, no row will name the file: remove it then.
        self._db.undo_on_rollback(lambda: path.unlink(missing_ok=True))
        cursor = self._insert_label_row(conn, (
            case_id, kind, prepared.parent_id, prepared.model_id, author, utc_now(),
            prepared.changed, int(np.count_nonzero(prepared.labels)), self._relative(path),
            note, sha256_of(path)))
        return cursor.lastrowid, path

    @staticmethod
    def _insert_label_row(conn, values):
        return conn.execute(
            "INSERT INTO label_versions (case_id, kind, parent_id, model_id, author, created, "
            "voxels_changed, foreground_voxels, path, note, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def _parent_labels(self, case_id: str, parent_id: int | None) -> np.ndarray | None:
        if parent_id is None:
            return None
        parent = self.label_version(parent_id)
        if parent.case_id != case_id:
            raise ProjectError(f"label version {parent_id} belongs to case {parent.case_id!r}, "
                               f"not {case_id!r}")
        return self.load_label(parent_id)

    def label_version(self, version_id: int) -> LabelVersion:
        """One label version by id.

        Raises:
            ProjectError: no such version.
        """
        row = self._db.query_one("SELECT * FROM label_versions WHERE id = ?", (int(version_id),))
        if row is None:
            raise ProjectError(f"{self.root}: no label version {version_id}")
        return self._label_from_row(row)

    def label_versions(self, case_id: str | None = None) -> list[LabelVersion]:
        """A case's label versions, oldest first (every case's when ``case_id`` is None)."""
        if case_id is None:
            rows = self._db.query("SELECT * FROM label_versions ORDER BY id")
        else:
            self.case(case_id)
            rows = self._db.query("SELECT * FROM label_versions WHERE case_id = ? ORDER BY id",
                                  (case_id,))
        return [self._label_from_row(row) for row in rows]

    def latest_label(self, case_id: str, kinds: str | tuple[str, ...] | list[str] | None = None
                     ) -> LabelVersion | None:
        """The newest version of a case, optionally among some kinds only; None if none."""
        self.case(case_id)
        if kinds is None:
            row = self._db.query_one("SELECT * FROM label_versions WHERE case_id = ? "
                                     "ORDER BY id DESC LIMIT 1", (case_id,))
        else:
            kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
            marks = ", ".join("?" * len(kinds))
            row = self._db.query_one(f"SELECT * FROM label_versions WHERE case_id = ? AND kind "
                                     f"IN ({marks}) ORDER BY id DESC LIMIT 1", (case_id, *kinds))
        return None if row is None else self._label_from_row(row)

    def load_label(self, version_id: int) -> np.ndarray:
        """The voxels of a label version: integer (z, y, x) on its case's grid.

        Raises:
            ProjectError: no such version.
            VolumeError: its file is missing or damaged.
        """
        version = self.label_version(version_id)
        return read_label(version.path, like=self.case(version.case_id).geometry)

    def _label_from_row(self, row) -> LabelVersion:
        return LabelVersion(id=row["id"], case_id=row["case_id"], kind=row["kind"],
                            parent_id=row["parent_id"], model_id=row["model_id"],
                            author=row["author"], created=row["created"],
                            voxels_changed=row["voxels_changed"],
                            foreground_voxels=row["foreground_voxels"],
                            path=self._absolute(row["path"]), note=row["note"],
                            sha256=row["sha256"])

