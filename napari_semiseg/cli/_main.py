"""The ``semiseg`` entry point: build the parser from the command groups, run, map errors.

Adding a group of subcommands: write ``napari_semiseg/cli/_<group>.py`` with a function
``register(subparsers)`` that adds its parsers with ``subparsers.add_parser(...)`` and sets
``parser.set_defaults(handler=fn)``, where ``fn(args) -> int`` returns the exit status; then add
the module's name to ``COMMAND_GROUPS``. Import heavy libraries (torch, monai) inside the
handler, not at module level, so that ``semiseg cases`` stays quick.

Exit status: 0 success, 1 the command ran but found problems (``check``), 2 a user error (a
``SemisegError`` or bad arguments: the message goes to stderr, without a traceback), 130
interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import SemisegError

#: Modules of this package that register subcommands, in the order ``--help`` lists them.
COMMAND_GROUPS: tuple[str, ...] = ("_project_commands", "_train", "_infer", "_evaluate", "_models",
                                   "_pseudo", "_atso")

USER_ERROR = 2
INTERRUPTED = 130


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
