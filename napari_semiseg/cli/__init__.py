"""The ``semiseg`` command: ``semiseg init|import|cases|check ...`` (no napari, no Qt).

Each group of subcommands is a module that registers its sub-parsers (see ``_main``), so
later groups (infer, train, evaluate, models, pseudo-label) plug in without touching the
others.
"""

from ._main import COMMAND_GROUPS, build_parser, main

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]
