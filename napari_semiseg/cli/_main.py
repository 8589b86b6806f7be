"""The ``semiseg`` entry point: build the parser from the command groups, run, map errors.

Adding a group of subcommands: write ``napari_semiseg/cli/_<group>.py`` with a function
``register(subparsers)`` that adds its parsers with ``subparsers.add_parser(...)`` and sets
``parser.set_defaults(handler=fn)``, where ``fn(args) -> int`` returns the exit status; then add
the module's name to ``COMMAND_GROUPS``. Import heavy libraries (torch, monai) inside the
handler, not at module level, so that ``semiseg cases`` stays quick.

Exit status: 0 success, 1 the command ran but found problems (``check``), 2 a user error (a
``SemisegError`` or bad arguments) or a refusal of the machine (a full disk, a read-only folder,
the file-size limit: an ``OSError`` or ``sqlite3.Error`` that reached this far): the message goes
to stderr as "PATH: problem", without a traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sqlite3
import sys

from .. import __version__
from ..errors import SemisegError
from ._common import PROJECT_ENV

#: Modules of this package that register subcommands, in the order ``--help`` lists them.
COMMAND_GROUPS: tuple[str, ...] = ("_project_commands", "_split", "_train", "_methods", "_infer", "_predict",
                                   "_export", "_evaluate", "_models", "_pseudo", "_atso")

USER_ERROR = 2
INTERRUPTED = 130

#: What a user can do about the machine's refusals that need more than their own words.
_ERRNO_HINTS = {
    errno.EFBIG: "the file-size limit (ulimit -f) or the file system's largest file",
    errno.ENOSPC: "free some space and run the command again",
    errno.EDQUOT: "free some space or raise the quota, and run the command again",
    errno.EROFS: "the folder is on a read-only file system",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``semiseg`` parser with every command group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="semiseg",
        description="Semi-supervised segmentation of 3D medical volumes: projects of cases, "
                    "label versions, models.")
    parser.add_argument("--version", action="version", version=f"napari-semiseg {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMAND_GROUPS:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``semiseg`` with ``argv`` (``sys.argv[1:]`` by default); return the exit status."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except SystemExit as done:  # argparse: --help, --version, bad arguments
        return done.code if isinstance(done.code, int) else (0 if done.code is None else USER_ERROR)
    except SemisegError as error:
        print(f"semiseg: error: {error}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("semiseg: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `semiseg cases | head`: the reader left, nothing to report
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, sqlite3.Error) as error:
        print(f"semiseg: error: {machine_refusal(error, _named_project(args))}", file=sys.stderr)
        return USER_ERROR


def machine_refusal(error: OSError | sqlite3.Error, given: str | None) -> str:
    """"PATH: problem" for a failure of the machine rather than of the command.

    PATH is the file the system names (``OSError.filename``), else the project the command was
    given; the problem is the system's own words, with a hint where one helps.
    """
    if isinstance(error, OSError):
        where = error.filename if error.filename is not None else given
        problem = error.strerror or str(error) or type(error).__name__
        if error.filename2 is not None:
            problem += f" (with {error.filename2})"
        hint = _ERRNO_HINTS.get(error.errno)
    else:
        where, problem = given, f"the project catalogue failed: {error}"
        hint = None
    text = f"{problem}; {hint}" if hint else problem
    return f"{os.fsdecode(where)}: {text}" if where is not None else text


def _named_project(args: argparse.Namespace | None) -> str | None:
    named = getattr(args, "project", None) or os.environ.get(PROJECT_ENV)
    return named or None
