"""Soft labels: a model's class probabilities for a case, kept beside the hard label they go with.

Each soft label is a compressed 8-bit file (see ``_soft_codec``: error ≤ 1/510 per stored
channel) plus one catalogue row that links it to a label version and to the model version
that made it, and holds its uncertainty summary (entropy, confidence, foreground fraction),
so that ranking cases never has to open the files. Like label versions, soft labels are never
overwritten: a corrected soft label is a new row whose ``parent_id`` names the original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ProjectError
from ._files import sha256_of, unique_stem, utc_now
from ._json import dumps, loads
from ._records import LabelVersion, SoftLabel, UncertaintySummary
from ._schema import SOFT_LABEL_KINDS
from ._soft_codec import (ENCODING, SOFT_LABEL_SUFFIX, as_class_probabilities, decode, encode,
                          read_soft_label, summarise, write_soft_label)


class SoftLabelStore:
    """The soft-label half of ``Project`` (uses ``self._db``, ``self.case``, the label store)."""

    def save_soft_label(self, case_id: str, probabilities: np.ndarray, *, label_version_id: int,
                        model_id: int | None = None, kind: str = "teacher",
                        parent_id: int | None = None, details: dict | None = None) -> SoftLabel:
        """Keep a soft label of a case, linked to a label version and a model version.

        Args:
            case_id: the case.
            probabilities: (K, z, y, x) class probabilities summing to 1 per voxel, or a
                (z, y, x) foreground probability of a binary task; the case's grid.
            label_version_id: the hard label it goes with (a version of the same case).
            model_id: the model version that made the probabilities.
            kind: "teacher" (as the model made them) or "corrected".
            parent_id: for a corrected soft label, the soft label it was corrected from.
            details: how it was made (JSON-able), e.g. the correction's parameters and steps.

        Returns:
            The new record, with its summary computed from the stored (quantised) values.

        Raises:
            ProjectError: unknown case, label version (or one of another case), model, parent
                or kind; probabilities that are not probabilities on the case's grid.
        """
        prepared = self._prepare_soft_label(case_id, probabilities, label_version_id, model_id,
                                            kind, parent_id)
        with self._db.write() as conn:
            soft_id, _path = self._write_soft_label(conn, prepared, label_version_id, details)
        return self.soft_label(soft_id)

    def save_label_with_soft_label(self, case_id: str, labels: np.ndarray, kind: str,
                                   probabilities: np.ndarray, *, model_id: int | None = None,
                                   parent_id: int | None = None, author: str | None = None,
                                   note: str | None = None, details: dict | None = None
                                   ) -> tuple[LabelVersion, SoftLabel]:
        """Save a hard label version and its soft label in one transaction: both or neither.

        Arguments as for ``save_label`` and ``save_soft_label`` (the soft label is a "teacher"
        one made by ``model_id``). A pseudo-labelling run interrupted at any moment therefore
        never leaves a pseudo-label without its probabilities.
        """
        label = self._prepare_label(case_id, labels, kind, parent_id, model_id)
        soft = self._prepare_soft_label(case_id, probabilities, None, model_id, "teacher", None)
        with self._db.write() as conn:
            version_id, _label_path = self._write_label(conn, label, author, note)
            soft_id, _path = self._write_soft_label(conn, soft, version_id, details)
        return self.label_version(version_id), self.soft_label(soft_id)

    def _prepare_soft_label(self, case_id, probabilities, label_version_id, model_id, kind,
                            parent_id) -> dict:
        if kind not in SOFT_LABEL_KINDS:
            raise ProjectError(f"unknown soft-label kind {kind!r}; use one of "
                               f"{', '.join(SOFT_LABEL_KINDS)}")
        case = self.case(case_id)
        if label_version_id is not None:
            version = self.label_version(label_version_id)
            if version.case_id != case_id:
                raise ProjectError(f"label version {label_version_id} belongs to case "
                                   f"{version.case_id!r}, not {case_id!r}")
        if model_id is not None:
            self.model(model_id)
        if parent_id is not None and self.soft_label(parent_id).case_id != case_id:
            raise ProjectError(f"soft label {parent_id} belongs to another case than {case_id!r}")
        array = as_class_probabilities(probabilities, case.geometry.shape,
                                       f"soft label for case {case_id!r}")
        codes = encode(array)
        del array
        return {"case_id": case_id, "codes": codes, "model_id": model_id, "kind": kind,
                "parent_id": parent_id, "stats": summarise(decode(codes))}

    def _write_soft_label(self, conn, prepared: dict, label_version_id: int,
                          details: dict | None) -> tuple[int, Path]:
        """Write the file, then its row, inside the caller's write transaction."""
        case_id, codes, stats = prepared["case_id"], prepared["codes"], prepared["stats"]
        path = self.path_for("labels", f"{case_id}/{unique_stem('soft-')}{SOFT_LABEL_SUFFIX}")
        write_soft_label(path, codes)
        self._db.undo_on_rollback(lambda: path.unlink(missing_ok=True))
        cursor = conn.execute(
            "INSERT INTO soft_labels (case_id, label_version_id, model_id, parent_id, kind, "
            "num_classes, encoding, path, sha256, created, mean_entropy, max_entropy, "
            "mean_confidence, foreground_fraction, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (case_id, label_version_id, prepared["model_id"], prepared["parent_id"],
             prepared["kind"], codes.shape[0] + 1, ENCODING, self._relative(path),
             sha256_of(path), utc_now(), stats.mean_entropy, stats.max_entropy,
             stats.mean_confidence, stats.foreground_fraction, dumps(details or {})))
        return cursor.lastrowid, path

    # -- reading -------------------------------------------------------------------------------

    def soft_label(self, soft_label_id: int) -> SoftLabel:
        """One soft label record by id.

        Raises:
            ProjectError: no such soft label.
        """
        row = self._db.query_one("SELECT * FROM soft_labels WHERE id = ?", (int(soft_label_id),))
        if row is None:
            raise ProjectError(f"{self.root}: no soft label {soft_label_id}")
        return self._soft_from_row(row)

    def soft_labels(self, case_id: str | None = None, *, kind: str | None = None,
                    model_id: int | None = None) -> list[SoftLabel]:
        """Soft labels, oldest first: of one case, one kind, one model, or all."""
        clauses, values = [], []
        if case_id is not None:
            self.case(case_id)
            clauses.append("case_id = ?")
            values.append(case_id)
        if kind is not None:
            clauses.append("kind = ?")
            values.append(kind)
        if model_id is not None:
            clauses.append("model_id = ?")
            values.append(int(model_id))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self._db.query(f"SELECT * FROM soft_labels {where}ORDER BY id", values)
        return [self._soft_from_row(row) for row in rows]

    def soft_label_for(self, label_version_id: int) -> SoftLabel | None:
        """The newest soft label linked to a label version, or None."""
        self.label_version(label_version_id)
        row = self._db.query_one("SELECT * FROM soft_labels WHERE label_version_id = ? "
                                 "ORDER BY id DESC LIMIT 1", (int(label_version_id),))
        return None if row is None else self._soft_from_row(row)

    def load_soft_label(self, soft_label: int | SoftLabel) -> np.ndarray:
        """The probabilities of a soft label: float32 (K, z, y, x) on its case's grid.

        Values are the stored 8-bit ones (within 1/510 of what was saved).

        Raises:
            ProjectError: no such soft label, or its file is missing or damaged.
        """
        record = soft_label if isinstance(soft_label, SoftLabel) else self.soft_label(soft_label)
        shape = self.case(record.case_id).geometry.shape
        return read_soft_label(record.path, shape, record.num_classes)

    def case_uncertainty(self, case_id: str, *, model_id: int | None = None,
                         kind: str = "teacher") -> UncertaintySummary | None:
        """The uncertainty summary of a case's newest soft label (of ``model_id`` if given).

        Returns:
            None when the case has no such soft label yet.
        """
        labels = self.soft_labels(case_id, kind=kind, model_id=model_id)
        return labels[-1].summary if labels else None

    def _soft_from_row(self, row) -> SoftLabel:
        summary = UncertaintySummary(
            case_id=row["case_id"], soft_label_id=row["id"], model_id=row["model_id"],
            kind=row["kind"], mean_entropy=row["mean_entropy"], max_entropy=row["max_entropy"],
            mean_confidence=row["mean_confidence"],
            foreground_fraction=row["foreground_fraction"])
        return SoftLabel(id=row["id"], case_id=row["case_id"],
                         label_version_id=row["label_version_id"], model_id=row["model_id"],
                         parent_id=row["parent_id"], kind=row["kind"],
                         num_classes=row["num_classes"], encoding=row["encoding"],
                         path=self._absolute(row["path"]), sha256=row["sha256"],
                         created=row["created"], summary=summary, details=loads(row["details"]))
