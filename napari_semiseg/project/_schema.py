"""The catalogue's tables and their migrations.

``MIGRATIONS[n]`` holds the statements that bring a catalogue from schema version ``n`` to
``n + 1``; a new project runs them all. A later release appends to the list and never edits
an entry, so every project can be brought forward, step by step, inside one transaction.

Label versions and the identity of model versions are protected by triggers: normal use can
neither update nor delete them, whatever code path tries.
"""

from __future__ import annotations

import sqlite3

from ..errors import ProjectError

LABEL_KINDS: tuple[str, ...] = ("gold", "prediction", "pseudo", "corrected")
"""Provenance of a label version: imported ground truth, a model's output, a pseudo-label
made for training, a clinician's correction."""

GOLD_KINDS: tuple[str, ...] = ("gold", "corrected")
"""The label kinds a person vouches for: what trains a supervised loss, makes a case "labelled"
and serves as the reference of a validation or an evaluation (the newest such version counts)."""

SPLITS: tuple[str, ...] = ("labelled", "unlabelled", "validation", "test")
"""The role of a case in training and evaluation."""

_KINDS_SQL = ", ".join(f"'{kind}'" for kind in LABEL_KINDS)
_SPLITS_SQL = ", ".join(f"'{split}'" for split in SPLITS)

_VERSION_1 = [
    """CREATE TABLE schema_version (version INTEGER NOT NULL)""",
    """CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)""",
    f"""CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        image_path TEXT NOT NULL,            -- relative to the project when copied in
        geometry TEXT NOT NULL,              -- JSON, Geometry.to_dict()
        modality TEXT NOT NULL,
        split TEXT NOT NULL CHECK (split IN ({_SPLITS_SQL})),
        intensity_stats TEXT,                -- JSON or NULL until computed
        created TEXT NOT NULL
    )""",
    """CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        card TEXT NOT NULL,                  -- JSON
        checkpoint_path TEXT NOT NULL UNIQUE, -- relative to the project
        sha256 TEXT NOT NULL,
        parent_id INTEGER REFERENCES models(id),
        method TEXT NOT NULL,
        config TEXT NOT NULL,                -- JSON
        metrics TEXT NOT NULL,               -- JSON
        created TEXT NOT NULL
    )""",
    f"""CREATE TABLE label_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id TEXT NOT NULL REFERENCES cases(id),
        kind TEXT NOT NULL CHECK (kind IN ({_KINDS_SQL})),
        parent_id INTEGER REFERENCES label_versions(id),
        model_id INTEGER REFERENCES models(id),
        author TEXT,
        created TEXT NOT NULL,
        voxels_changed INTEGER NOT NULL,
        foreground_voxels INTEGER NOT NULL,
        path TEXT NOT NULL UNIQUE,           -- relative to the project
        note TEXT,
        sha256 TEXT NOT NULL
    )""",
    "CREATE INDEX label_versions_by_case ON label_versions (case_id, id)",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        config TEXT NOT NULL,                -- JSON
        result TEXT,                         -- JSON
        started TEXT NOT NULL,
        finished TEXT,
        pid INTEGER,
        host TEXT
    )""",
    """CREATE TRIGGER label_versions_never_updated BEFORE UPDATE ON label_versions
       BEGIN SELECT RAISE(ABORT, 'label versions are never modified'); END""",
    """CREATE TRIGGER label_versions_never_deleted BEFORE DELETE ON label_versions
       BEGIN SELECT RAISE(ABORT, 'label versions are never deleted'); END""",
    """CREATE TRIGGER models_identity_never_updated
       BEFORE UPDATE OF id, card, checkpoint_path, sha256, parent_id, method, config, created
       ON models
       BEGIN SELECT RAISE(ABORT, 'model versions are never modified'); END""",
    """CREATE TRIGGER models_never_deleted BEFORE DELETE ON models
       BEGIN SELECT RAISE(ABORT, 'model versions are never deleted'); END""",
    "INSERT INTO schema_version (version) VALUES (0)",
]

SOFT_LABEL_KINDS: tuple[str, ...] = ("teacher", "corrected")
"""Provenance of a soft label: a model's class probabilities as it made them, or those
probabilities corrected against a gold or clinician-corrected label (the teacher team)."""

_SOFT_KINDS_SQL = ", ".join(f"'{kind}'" for kind in SOFT_LABEL_KINDS)

# Version 2: soft labels (class probabilities, quantised on disk) with their per-case
# uncertainty summary, linked to the hard label version they go with and the model that made
# them. Like label versions, they are never modified or deleted.
_VERSION_2 = [
    f"""CREATE TABLE soft_labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id TEXT NOT NULL REFERENCES cases(id),
        label_version_id INTEGER NOT NULL REFERENCES label_versions(id),
        model_id INTEGER REFERENCES models(id),
        parent_id INTEGER REFERENCES soft_labels(id),   -- what a corrected one was corrected from
        kind TEXT NOT NULL CHECK (kind IN ({_SOFT_KINDS_SQL})),
        num_classes INTEGER NOT NULL,
        encoding TEXT NOT NULL,              -- how the file stores probabilities
        path TEXT NOT NULL UNIQUE,           -- relative to the project
        sha256 TEXT NOT NULL,
        created TEXT NOT NULL,
        mean_entropy REAL NOT NULL,          -- normalised entropy (0..1), mean over voxels
        max_entropy REAL NOT NULL,
        mean_confidence REAL NOT NULL,       -- mean over voxels of the largest class probability
        foreground_fraction REAL NOT NULL,   -- fraction of voxels whose argmax is not background
        details TEXT NOT NULL                -- JSON: how it was made (correction steps...)
    )""",
    "CREATE INDEX soft_labels_by_case ON soft_labels (case_id, id)",
    "CREATE INDEX soft_labels_by_label_version ON soft_labels (label_version_id)",
    """CREATE TRIGGER soft_labels_never_updated BEFORE UPDATE ON soft_labels
       BEGIN SELECT RAISE(ABORT, 'soft labels are never modified'); END""",
    """CREATE TRIGGER soft_labels_never_deleted BEFORE DELETE ON soft_labels
       BEGIN SELECT RAISE(ABORT, 'soft labels are never deleted'); END""",
]

# Version 3: a run records when its process started, so that a later process that reuses the
# pid of a killed run is not taken for it (the run is then shown as interrupted, resumable).
_VERSION_3 = [
    "ALTER TABLE runs ADD COLUMN process_start TEXT",
]

# Version 4: the source series of a case read from DICOM: its UID and the headers of its files
# without pixel data (one DICOM JSON file in the project), which a DICOM-SEG export references
# even after the series has moved or been deleted.
_VERSION_4 = [
    """CREATE TABLE dicom_sources (
        case_id TEXT PRIMARY KEY REFERENCES cases(id),
        series_uid TEXT NOT NULL,
        instances INTEGER NOT NULL,
        headers_path TEXT NOT NULL UNIQUE,   -- relative to the project
        sha256 TEXT NOT NULL
    )""",
]

MIGRATIONS: list[list[str]] = [_VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection, where: str = "project catalogue") -> int:
    """The catalogue's schema version; 0 for an empty database.

    Raises:
        ProjectError: the table holds anything but one whole number ≥ 0 (another program wrote
            it): migrating from a guess could run the wrong statements on the user's data.
    """
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    version = rows[0][0] if len(rows) == 1 else None
    if not isinstance(version, int) or version < 0:
        found = [row[0] for row in rows]
        raise ProjectError(f"{where}: its schema_version table holds {found!r}, not one version number; "
                           "the catalogue was changed by another program: restore it from a backup")
    return version


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring the catalogue to ``SCHEMA_VERSION``; call inside a write transaction.

    Raises:
        ProjectError: the catalogue was written by a newer release.
    """
    current = schema_version(conn, where)
    if current > SCHEMA_VERSION:
        raise ProjectError(f"{where}: the project has schema version {current}, this "
                           f"napari-semiseg knows up to {SCHEMA_VERSION}; upgrade napari-semiseg "
                           "to open it")
    if current == SCHEMA_VERSION:
        return
    for statements in MIGRATIONS[current:]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
