"""The SQLite connection of a project: pragmas, write transactions, a lock for threads.

Two processes (the napari window and a CLI training run, say) may write to one project at
once. SQLite serialises writers; what we add is:

- WAL journal, so readers never block the writer and the writer never blocks readers;
- ``busy_timeout``, so a writer waits for the other one instead of failing at once;
- ``BEGIN IMMEDIATE`` for every write transaction, so the write lock is taken up front: a
  deferred transaction that reads first and upgrades later can fail with SQLITE_BUSY without
  the busy handler ever being called;
- one ``RLock`` per connection, so napari worker threads can share the ``Project`` object.

A damaged file (pages scribbled over, a truncated copy) makes SQLite fail only when a query
reaches the damaged page, possibly long after opening: every query and transaction turns that
failure into a ``ProjectError`` naming the file, never an ``sqlite3.DatabaseError``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ProjectError
from ._schema import schema_version

#: How long a writer waits for another process's write transaction before giving up (ms).
BUSY_TIMEOUT_MS = 60_000


#: What to do when SQLite fails because of where the file lies, by its primary result code
#: (by number: the ``sqlite3.SQLITE_*`` names need Python 3.11, and setup.cfg allows 3.10):
#: SQLITE_FULL 13, READONLY 8, CANTOPEN 14, PERM 3, IOERR 10.
_ENVIRONMENT_HINTS = {
    13: "the disk is full: free some space and try again",
    8: "project.db is read-only: make it writable, or copy the project "
                             "to a folder you can write",
    14: "SQLite cannot create its files beside project.db: the project folder "
                             "may be read-only (make it writable, or copy the project elsewhere)",
    3: "permission denied: make the project folder and project.db writable",
    10: "the disk failed to read or write it (full, removed, or failing)",
}


def _primary_code(error: sqlite3.Error) -> int:
    return getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one


def unopenable(path: Path, error: Exception) -> ProjectError:
    hint = _ENVIRONMENT_HINTS.get(_primary_code(error))
    return ProjectError(f"{path}: cannot open the project catalogue ({error})" + (f"; {hint}" if hint else ""))


def unusable(path: Path, error: sqlite3.Error) -> ProjectError:
    """The message of a read or write that the file's surroundings refused (disk, permissions)."""
    return ProjectError(f"{path}: the project catalogue cannot be used here ({error}); nothing was "
                        f"changed; {_ENVIRONMENT_HINTS[_primary_code(error)]}")


#: SQLite's primary result codes of a damaged file, SQLITE_CORRUPT and SQLITE_NOTADB (by number:
#: ``sqlite3.SQLITE_CORRUPT`` and the exceptions' ``sqlite_errorcode`` need Python 3.11).
_DAMAGE_CODES = (11, 26)
#: Their messages, for Python 3.10, whose exceptions carry no code.
_DAMAGE_MESSAGES = ("database disk image is malformed", "file is not a database")


def is_damage(error: sqlite3.Error) -> bool:
    """Whether SQLite failed because the file is damaged (not a busy lock, a constraint...)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return any(message in str(error) for message in _DAMAGE_MESSAGES)
    return (code & 0xFF) in _DAMAGE_CODES  # the primary code of an extended one


def damaged(path: Path, error: sqlite3.Error) -> ProjectError:
    return ProjectError(f"{path}: the project catalogue is damaged ({error}); restore project.db "
                        "from a backup (nothing here can repair it, and nothing was deleted)")


@contextlib.contextmanager
def _damage_as_project_error(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as error:
        if is_damage(error):
            raise damaged(path, error) from None
        if _primary_code(error) in _ENVIRONMENT_HINTS:
            raise unusable(path, error) from None
        raise


class Database:
    """One connection to ``project.db`` in autocommit mode, with explicit transactions.

    Args:
        path: the database file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._undo: list[Callable[[], None]] = []
        # isolation_level=None: no implicit BEGIN; transactions are ours, see write().
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise unopenable(self.path, error) from None
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # FULL makes each commit durable on its own (WAL + NORMAL could lose the last
            # commits on power loss, and a label the clinician saw saved must stay saved).
            self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as error:
            self._conn.close()
            raise (damaged if is_damage(error) else unopenable)(self.path, error) from None
        if mode.lower() != "wal":
            self._conn.close()
            raise ProjectError(f"{self.path}: the file system refuses SQLite's WAL mode ({mode})")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def query(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        """Run a read-only statement and return all its rows."""
        with self._lock, _damage_as_project_error(self.path):
            return self._conn.execute(sql, parameters).fetchall()

    def query_one(self, sql: str, parameters=()) -> sqlite3.Row | None:
        rows = self.query(sql, parameters)
        return rows[0] if rows else None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

        The lock is held from BEGIN on, so callers may write files inside the block knowing
        that no other writer (``collect_garbage`` of another process included) runs meanwhile.
        """
        with self._lock, _damage_as_project_error(self.path):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise ProjectError(f"{self.path}: cannot write to the project catalogue ({error}); "
                                   "another process may hold it") from None
            self._undo = []
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, damage) leaves the transaction open: end it too.
                with contextlib.suppress(sqlite3.Error):  # a damaged file may refuse even this
                    self._conn.execute("ROLLBACK")
                self._undo_files()
                raise
            finally:
                self._undo = []

    def undo_on_rollback(self, action: Callable[[], None]) -> None:
        """Call ``action`` if the current write transaction does not commit.

        A file written inside the transaction registers its removal here: whether the failure
        comes from the caller's block or from the COMMIT itself (a full disk), no file is left
        that no row names.
        """
        self._undo.append(action)

    def _undo_files(self) -> None:
        for action in reversed(self._undo):
            with contextlib.suppress(OSError):  # best effort: collect_garbage removes what is left
                action()

    def schema_version(self) -> int:
        """The catalogue's schema version (0 for a new, empty database)."""
        with self._lock, _damage_as_project_error(self.path):
            return schema_version(self._conn, str(self.path))

    def application_id(self) -> int:
        """The catalogue's ``PRAGMA application_id`` (0 when none was set)."""
        with self._lock, _damage_as_project_error(self.path):
            return int(self._conn.execute("PRAGMA application_id").fetchone()[0])

    def integrity_check(self) -> list[str]:
        """SQLite's own check plus the foreign keys; ``["ok"]`` when all is well."""
        with self._lock, _damage_as_project_error(self.path):
            dangling = self._conn.execute("PRAGMA foreign_key_check").fetchall()
            problems = self.damage_found()
        problems += [f"foreign key: {tuple(row)}" for row in dangling]
        return problems or ["ok"]

    def damage_found(self) -> list[str]:
        """What SQLite's ``integrity_check`` finds wrong with the file's pages; empty when none."""
        with self._lock, _damage_as_project_error(self.path):
            checks = [row[0] for row in self._conn.execute("PRAGMA integrity_check")]
        return [line for line in checks if line != "ok"]
