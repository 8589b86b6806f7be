"""Names, hashes and times for the files a project keeps.

Every file a project writes gets a new name that no earlier write used (time + random
token), so a save can never land on top of an existing version, even one left by a process
killed before its catalogue row was committed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ProjectError

# Matched whole (fullmatch): "$" would also accept a trailing newline, and a folder named so.
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")

#: The managed sub-folders of a project; ``path_for`` accepts these names and their singulars.
FOLDERS: tuple[str, ...] = ("images", "labels", "models", "runs", "exports")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string with microseconds (sorts as it reads)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def unique_stem(prefix: str = "") -> str:
    """A name part that sorts by time and is unique: ``20250101T120000123456Z-1f2e3d4c``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}{stamp}-{secrets.token_hex(4)}"


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` if it can name a folder safely, else raise ProjectError."""
    if not isinstance(case_id, str) or not _CASE_ID.fullmatch(case_id):
        raise ProjectError(f"case id {case_id!r}: use letters, digits and . _ + - only "
                           "(starting with a letter or digit)")
    return case_id


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is an atomic write's temporary file (``.name.XXXX.part.suffix``)."""
    return ".part" in path.name and path.name.startswith(".")
