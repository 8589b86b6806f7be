"""Model versions: each fine-tune registers a new one; any of them can be made active again."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import ProjectError
from ..io._atomic import atomic_path, fsync_directory
from ._files import sha256_of, unique_stem, utc_now
from ._json import dumps, loads
from ._records import ModelVersion

_ACTIVE_KEY = "active_model_id"


class ModelStore:
    """The model half of ``Project`` (uses ``self._db``, ``self.path_for``)."""

    def register_model(self, card, checkpoint_path: str | Path, *, parent_id: int | None = None,
                       method: str, config: dict, metrics: dict, activate: bool = True,
                       name: str | None = None, move: bool = False) -> ModelVersion:
        """Keep a trained checkpoint as a new model version.

        The checkpoint is copied (or moved) into ``models/<unique>/`` first, atomically; the
        row is inserted after, so a crash leaves at worst an unreferenced copy.

        Args:
            card: the model card (``ModelCard`` or its ``to_dict()``).
            checkpoint_path: the weights file to keep.
            parent_id: the model version it was fine-tuned from.
            method: the training method's name.
            config: the training configuration (dict or dataclass).
            metrics: held-out metrics.
            activate: make it the active model.
            name: a human name; the card's ``name`` (or "model") by default.
            move: move the file instead of copying it (the caller's copy disappears).

        Raises:
            ProjectError: the checkpoint is not a file, or ``parent_id`` is unknown.
        """
        source = Path(checkpoint_path).expanduser().resolve()
        if not source.is_file():
            raise ProjectError(f"{source}: checkpoint file does not exist")
        if parent_id is not None:
            self.model(parent_id)
        card_json = dumps(card)
        name = name or loads(card_json).get("name") or "model"
        with self._db.write() as conn:
            destination = self.path_for("models", f"{unique_stem()}/{source.name}")
            renamed = _bring_in(source, destination, move)
            # Unless the transaction commits, give the caller's file back or drop our copy (and
            # its folder): no row will name it.
            self._db.undo_on_rollback(lambda: _take_back(destination, source if renamed else None))
            cursor = conn.execute(
                "INSERT INTO models (name, card, checkpoint_path, sha256, parent_id, method, "
                "config, metrics, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, card_json, self._relative(destination), sha256_of(destination),
                 parent_id, method, self._dumps_paths(config), dumps(metrics), utc_now()))
            if activate:
                _set_active(conn, cursor.lastrowid)
        if move and not renamed:
            source.unlink()
        return self.model(cursor.lastrowid)

    def model(self, model_id: int) -> ModelVersion:
        """One model version by id.

        Raises:
            ProjectError: no such model version.
        """
        row = self._db.query_one("SELECT * FROM models WHERE id = ?", (int(model_id),))
        if row is None:
            raise ProjectError(f"{self.root}: no model version {model_id}")
        return self._model_from_row(row, self._active_id())

    def models(self) -> list[ModelVersion]:
        """Every model version, oldest first."""
        active = self._active_id()
        return [self._model_from_row(row, active)
                for row in self._db.query("SELECT * FROM models ORDER BY id")]

    def active_model(self) -> ModelVersion | None:
        """The model inference uses by default, or None before any was registered."""
        active = self._active_id()
        return None if active is None else self.model(active)

    def activate_model(self, model_id: int) -> ModelVersion:
        """Make any model version the active one (a rollback when it is an older one).

        Raises:
            ProjectError: no such version, or its weights file is missing or was replaced.
        """
        self.verified_model(model_id)
        with self._db.write() as conn:
            _set_active(conn, int(model_id))
        return self.model(model_id)

    def verified_model(self, model_id: int) -> ModelVersion:
        """A model version whose weights file still has the SHA-256 recorded at registration.

        Loading code that reads the file later should pass ``sha256`` to the loader as well
        (``load_model(..., expected_sha256=)``), which checks the very bytes it loads.

        Raises:
            ProjectError: no such version, or its file is missing or differs.
        """
        model = self.model(model_id)
        path = model.checkpoint_path
        if not path.is_file():
            raise ProjectError(f"{path}: the weights file of model version {model.id} is missing")
        if sha256_of(path) != model.sha256:
            raise ProjectError(f"{path}: differs from the weights registered as model version {model.id} "
                               "(SHA-256 mismatch: the file was replaced or damaged); refused")
        return model

    def update_model_metrics(self, model_id: int, metrics: dict) -> ModelVersion:
        """Add or replace metrics of a model version (an evaluation made after training).

        The model's identity (card, weights, config) stays as registered.
        """
        self.model(model_id)
        with self._db.write() as conn:
            row = conn.execute("SELECT metrics FROM models WHERE id = ?", (model_id,)).fetchone()
            merged = {**loads(row[0]), **loads(dumps(metrics))}
            conn.execute("UPDATE models SET metrics = ? WHERE id = ?", (dumps(merged), model_id))
        return self.model(model_id)

    def _active_id(self) -> int | None:
        row = self._db.query_one("SELECT value FROM settings WHERE key = ?", (_ACTIVE_KEY,))
        return None if row is None or row[0] is None else int(row[0])

    def _model_from_row(self, row, active_id: int | None) -> ModelVersion:
        return ModelVersion(id=row["id"], name=row["name"], card=loads(row["card"]),
                            checkpoint_path=self._absolute(row["checkpoint_path"]),
                            sha256=row["sha256"], parent_id=row["parent_id"], method=row["method"],
                            config=self._loads_paths(row["config"]), metrics=loads(row["metrics"]),
                            created=row["created"], active=row["id"] == active_id)


def _set_active(conn, model_id: int) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (_ACTIVE_KEY, str(model_id)))


def _take_back(destination: Path, source: Path | None) -> None:
    """Undo ``_bring_in``: move the file back to ``source``, or remove the copy; then its folder."""
    if source is not None:
        os.replace(destination, source)
    else:
        destination.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: someone else's file is there, keep it
        destination.parent.rmdir()


def _bring_in(source: Path, destination: Path, move: bool) -> bool:
    """Put ``source`` at ``destination`` whole or not at all; True when it was renamed there.

    A move within one file system is a rename; otherwise (or when copying) the bytes are
    copied through a temporary file and the caller removes the source after its commit.
    """
    if move:
        try:
            os.replace(source, destination)
            fsync_directory(destination.parent)
            return True
        except OSError:
            pass  # another file system: copy instead
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)
    return False
