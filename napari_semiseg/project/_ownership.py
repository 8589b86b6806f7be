"""Whether a ``project.db`` is a napari-semiseg catalogue, decided before anything is written.

A project trusts its catalogue: garbage collection moves away every file no row names. A
catalogue emptied by accident (``: > project.db``), replaced by another program's database or
damaged must therefore be refused before it is used, and opening must never add our tables to
a file we did not create. Our catalogues carry ``PRAGMA application_id = APPLICATION_ID``,
set in the transaction that creates their tables; those of earlier releases (id 0) are
recognised by their tables and stamped when opened.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import ProjectError
from ._db import damaged, is_damage, unopenable
from ._schema import MIGRATIONS

#: ``PRAGMA application_id`` of our catalogues: "SSEG" in ASCII.
APPLICATION_ID = 0x53534547

_SQLITE_MAGIC = b"SQLite format 3\x00"
_CREATED = re.compile(r"CREATE TABLE (\w+)")
#: Every table a release of ours ever created, and those the first release already had.
OWN_TABLES = frozenset(name for step in MIGRATIONS for statement in step
                       for name in _CREATED.findall(statement))
FIRST_TABLES = frozenset(name for statement in MIGRATIONS[0] for name in _CREATED.findall(statement))


def check_catalogue_file(path: Path) -> None:
    """Refuse ``path`` unless it is one of our catalogues; only reads it.

    Raises:
        ProjectError: an empty file, not an SQLite file, another program's database (its
            application id, or tables that are not ours), or a damaged one.
    """
    _check_header(path)
    application_id, tables = _identity(path)
    if application_id == APPLICATION_ID:
        return
    if application_id != 0:
        raise ProjectError(f"{path}: is another program's SQLite database (application id "
                           f"{application_id:#x}), not a napari-semiseg catalogue; refused, nothing "
                           "was changed")
    foreign = sorted(name for name in tables - OWN_TABLES if not name.startswith("sqlite_"))
    missing = sorted(FIRST_TABLES - tables)
    if foreign or missing:
        problem = (f"it holds tables napari-semiseg never makes: {', '.join(foreign[:5])}" if foreign
                   else f"it lacks the tables {', '.join(missing)}")
        raise ProjectError(f"{path}: is not a napari-semiseg catalogue ({problem}); refused, "
                           "nothing was changed")


def stamp(conn: sqlite3.Connection) -> None:
    """Mark the catalogue as ours; call inside the write transaction that creates or migrates it."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_MAGIC))
    except OSError as error:
        raise ProjectError(f"{path}: cannot read the project catalogue ({error.strerror})") from None
    if not header:
        # Opening it would make a new, empty catalogue, and every file of the project would
        # then look like garbage: refuse before SQLite touches it (or its -wal file).
        raise ProjectError(f"{path}: the project catalogue is empty (0 bytes): it was truncated or "
                           "replaced; restore it from a backup (nothing was changed)")
    if header != _SQLITE_MAGIC:
        raise ProjectError(f"{path}: cannot open the project catalogue: not an SQLite database file "
                           "(nothing was changed)")


def _identity(path: Path) -> tuple[int, frozenset[str]]:
    """(application id, table names), read through a read-only connection."""
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise unopenable(path, error) from None
    try:
        tables = frozenset(row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        return int(conn.execute("PRAGMA application_id").fetchone()[0]), tables
    except sqlite3.Error as error:
        if is_damage(error):
            raise damaged(path, error) from None
        raise unopenable(path, error) from None
    finally:
        conn.close()
