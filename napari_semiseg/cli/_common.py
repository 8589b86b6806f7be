"""What several subcommands share: the project argument and plain-text tables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import SemisegError

#: Environment variable naming the project when the PROJECT argument is left out.
PROJECT_ENV = "SEMISEG_PROJECT"


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    """An optional positional PROJECT, defaulting to ``$SEMISEG_PROJECT``."""
    parser.add_argument("project", nargs="?", metavar="PROJECT",
                        help=f"the project folder (default: ${PROJECT_ENV})")


def add_labelled_count_argument(parser: argparse.ArgumentParser, *, type, help: str) -> None:
    """``--labelled N`` (the product's spelling, as in ``--split labelled``) and, unlisted in
    the help, its alias ``--labeled N`` (the LA papers' and earlier releases' spelling)."""
    parser.add_argument("--labelled", dest="labeled", type=type, metavar="N", help=help)
    parser.add_argument("--labeled", dest="labeled", type=type, metavar="N", help=argparse.SUPPRESS)


def project_folder(given: str | None) -> str:
    """The project folder given on the command line, else ``$SEMISEG_PROJECT``.

    Raises:
        SemisegError: neither is set.
    """
    folder = given or os.environ.get(PROJECT_ENV)
    if not folder:
        raise SemisegError(f"no project given: name the PROJECT folder or set ${PROJECT_ENV}")
    return folder


def open_project(given: str | None):
    """Open the project named on the command line (or by ``$SEMISEG_PROJECT``)."""
    from ..project import Project
    return Project.open(project_folder(given))


def writable_folder(given: str, option: str) -> Path:
    """The folder an option names for output, checked before any work is spent on what goes there.

    Raises:
        SemisegError: the path (or one of its parents) is a file, not a folder.
    """
    folder = Path(given)
    if folder.exists() and not folder.is_dir():
        raise SemisegError(f"{folder}: is a file, not a folder ({option} names the folder to write into)")
    _parents_are_folders(folder, option)
    return folder


def writable_file(given: str, option: str) -> Path:
    """The file an option names for output, checked before any work is spent on it.

    Raises:
        SemisegError: the path is a folder, or one of its parents is a file.
    """
    path = Path(given)
    if path.is_dir():
        raise SemisegError(f"{path}: is a folder, not a file ({option} names the file to write)")
    _parents_are_folders(path, option)
    return path


def _parents_are_folders(path: Path, option: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise SemisegError(f"{parent}: is a file, not a folder ({option} {path} would go inside it)")
            return


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 right_aligned: Sequence[int] = ()) -> str:
    """A plain-text table: a header line, a rule, then one line per row."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells])
              for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [value.rjust(width) if i in right_aligned else value.ljust(width)
                 for i, (value, width) in enumerate(zip(values, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(list(headers)), rule, *(line(row) for row in cells)])


def progress_printer(verb: str):
    """A ``progress(done, total, name)`` callback: "VERB 40% 4/10 NAME: elapsed ..., ETA ..." on
    stderr, redrawn on a terminal, a line every 5 % in a log (``_progress.EtaProgress``)."""
    from ._engine_common import StatusLine
    from ._progress import EtaProgress

    progress = EtaProgress(verb, StatusLine())

    def report(done: int, total: int, name: str) -> None:
        progress.report(done / max(1, total), f"{done}/{total} {name}")

    return report
