"""The data files a MetaImage or NRRD header sends ITK to, kept inside the header's folder.

A MetaImage header names its voxels' file in ``ElementDataFile`` and an NRRD header in
``data file``: ``LOCAL`` (MetaImage: the voxels follow the header), one file name, ``LIST``
followed by one name per line, or a printf pattern with a number range
(``slice%03d.raw 1 40 1``). ITK opens whatever is named, so a header received from someone
else could make it read any file the user can read (``/etc/passwd``, ``../../notes.raw``) and
show its bytes as an image. Every named file must therefore lie in the header's folder or below
it, symbolic links followed, and that is checked here on the raw header before ITK reads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import VolumeError
from ._formats import METAIMAGE, NRRD

#: No real header comes near this; a file whose header does not end within it is refused,
#: so that a header cannot hide a data file name after megabytes of padding.
MAX_HEADER_BYTES = 16 << 20
#: At most this many files a pattern may expand to (a slice per file: far beyond any scan).
MAX_PATTERN_FILES = 100_000


def external_data_files(path: Path, fmt: str) -> list[Path]:
    """The files holding the voxels of the MetaImage/NRRD file ``path`` when not ``path`` itself.

    Returns:
        The named data files that exist, resolved, in the header's order; empty when the
        voxels are stored in ``path`` itself (or ``fmt`` is not MetaImage/NRRD). Every name is
        checked, also the words of a name with spaces, since readers differ in splitting them.

    Raises:
        VolumeError: a named file lies outside ``path``'s folder (absolute, ``..``, or a link
            leading out), the header does not end within ``MAX_HEADER_BYTES``, or it names a
            pattern that cannot be expanded.
    """
    if fmt not in (METAIMAGE, NRRD):
        return []
    try:
        with open(path, "rb") as stream:
            lines = _header_lines(stream, path)
            names = _metaimage_names(lines) if fmt == METAIMAGE else _nrrd_names(lines)
    except OSError:
        return []  # ITK then reports the unreadable file in its own words
    folder = path.parent.resolve()
    targets = [_inside(folder, name, path) for name in _expand(names, path)]
    return list(dict.fromkeys(target for target in targets if target.is_file()))


def _header_lines(stream, path: Path) -> Iterator[str]:
    """The file's lines as text, refusing to scan past ``MAX_HEADER_BYTES``."""
    read = 0
    while line := stream.readline(MAX_HEADER_BYTES - read + 1):
        read += len(line)
        if read > MAX_HEADER_BYTES:
            raise VolumeError(path, f"header does not end within its first {MAX_HEADER_BYTES} "
                              "bytes; it is not a volume header we read")
        yield line.decode("latin-1").rstrip("\r\n")


def _metaimage_names(lines: Iterator[str]) -> list[str]:
    """The names of ``ElementDataFile`` (the header's last field); [] for ``LOCAL``."""
    for line in lines:
        key, separator, value = line.partition("=")
        if not separator or key.strip().lower() != "elementdatafile":
            continue
        return _names_of(value.strip(), lines, local="LOCAL")
    return []  # no data file named: ITK refuses the header itself


def _nrrd_names(lines: Iterator[str]) -> list[str]:
    """The names of the ``data file`` field; [] when the voxels follow the header."""
    if not next(lines, "").startswith("NRRD"):
        return []  # not an NRRD header: ITK refuses it
    for line in lines:
        if not line.strip():
            return []  # the blank line ending an attached header: the voxels follow it
        if line.startswith("#") or ":=" in line:
            continue  # a comment, or a key/value pair (never a field, as in teem)
        key, separator, value = line.partition(":")
        if separator and key.strip().lower() in ("data file", "datafile"):
            return _names_of(value.strip(), lines, local=None)
    return []


def _names_of(value: str, lines: Iterator[str], local: str | None) -> list[str]:
    if local is not None and value.upper() == local:
        return []
    if value.upper().split()[:1] == ["LIST"]:
        # One name per remaining line; its words too, in case a reader splits on spaces.
        return [name for line in lines if line.strip() for name in _with_words(line.strip())]
    return [value]


def _with_words(text: str) -> list[str]:
    words = text.split()
    return [text] + (words if len(words) > 1 else [])


def _expand(names: list[str], path: Path) -> list[str]:
    """Names with a printf pattern and its range ("s%03d.raw 1 40 1") replaced by each file."""
    expanded: list[str] = []
    for name in names:
        words = name.split()
        if not words:
            continue
        if "%" in words[0] and len(words) >= 3:
            expanded.extend(_pattern_files(words, path))
        else:
            expanded.extend(_with_words(name))
    return expanded


def _pattern_files(words: list[str], path: Path) -> list[str]:
    try:
        first, last = int(words[1]), int(words[2])
        step = int(words[3]) if len(words) > 3 else 1
        if step <= 0 or (last - first) // step >= MAX_PATTERN_FILES:
            raise ValueError("range")
        return [words[0] % number for number in range(first, last + 1, step)]
    except (ValueError, TypeError):
        raise VolumeError(path, f"data file pattern {' '.join(words)!r} cannot be expanded "
                          "(a %d format, then first, last and a positive step)") from None


def _inside(folder: Path, name: str, path: Path) -> Path:
    target = (folder / name).resolve()  # an absolute name replaces the folder
    if not target.is_relative_to(folder):
        named = Path(os.path.normpath(folder / name))  # where the name points, links not followed
        link = ", a link to a file" if named.is_relative_to(folder) else ""
        raise VolumeError(path, f"names data file {name!r}{link} outside its own folder; a "
                          "header may only point to files beside or below it")
    return target
