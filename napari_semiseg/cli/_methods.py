"""``semiseg methods``: the registered training methods and their published recipes.

The list comes from the methods registry (``engine.methods``), so a method registered there
appears here and in ``semiseg train --help`` without anyone editing the CLI. Importing the
registry imports torch (seconds), so it happens only when the list is really shown.
"""

from __future__ import annotations

import argparse
import json

from ._common import format_table

#: Written into a help text where the registered method names belong (see ``MethodNamesHelp``).
METHOD_NAMES = "{method names}"
#: Shown where a method publishes no recipe of its own: the model card's is used.
CARD_RECIPE = "card's"


def register(subparsers) -> None:
    """Add ``semiseg methods`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "methods", help="list the training methods (names for semiseg train --method)",
        description="List the registered training methods: name, whether unlabelled volumes "
                    "shape the model, the published recipe (optimiser, learning rate, "
                    f"iterations; {CARD_RECIPE!r} where the method keeps the model card's) and a "
                    "one-line summary.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_methods)


class MethodNamesHelp(argparse.HelpFormatter):
    """Fills ``METHOD_NAMES`` in an option's help with the registry's names when help is shown.

    Building every parser must not import torch (``semiseg cases`` stays quick); formatting
    ``--help`` may.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and METHOD_NAMES in text:
            text = text.replace(METHOD_NAMES, ", ".join(method_names()))
        return text


def method_names() -> list[str]:
    from ..engine.methods import list_methods
    return list_methods()


def method_rows() -> list[dict]:
    """One plain record per registered method (what ``--json`` prints)."""
    from ..engine.methods import get_method

    records = []
    for name in method_names():
        method = get_method(name)
        records.append({"name": name, "summary": method.description,
                        "uses_unlabelled": method.learns_from_unlabeled(),
                        "recipe": method.recommended_training()})
    return records


def methods_table(records: list[dict]) -> str:
    """The ``semiseg methods`` table; the summary goes last, where a long line may wrap."""
    headers = ("method", "unlabelled", "optimiser", "lr", "iterations", "summary")
    rows = [(r["name"], "yes" if r["uses_unlabelled"] else "no",
             r["recipe"].get("optimizer", CARD_RECIPE), _number(r["recipe"].get("lr")),
             r["recipe"].get("iterations", CARD_RECIPE), r["summary"]) for r in records]
    return format_table(headers, rows, right_aligned=(3, 4))


def _number(value) -> str:
    return CARD_RECIPE if value is None else f"{value:g}"


def run_methods(args: argparse.Namespace) -> int:
    records = method_rows()
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(methods_table(records))
    print(f"{len(records)} methods ({CARD_RECIPE}: the model card's recipe is used); "
          "train one with: semiseg train PROJECT --card CARD --method NAME")
    return 0
