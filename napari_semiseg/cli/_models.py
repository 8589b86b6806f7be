"""``semiseg models``: list a project's model versions; make any of them active (rollback)."""

from __future__ import annotations

import argparse
import json

from ._common import add_project_argument, format_table, open_project

ACTIVE_MARK = "*"


def register(subparsers) -> None:
    """Add ``semiseg models`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "models", help="list model versions, or make one active (rollback)",
        description="List the project's model versions: id, name, method, parent, created, "
                    "validation Dice (and the last evaluation's Dice), the active one marked "
                    f"{ACTIVE_MARK}. --activate ID makes any version the one inference uses.")
    add_project_argument(parser)
    parser.add_argument("--activate", type=int, metavar="ID",
                        help="make model version ID the active one (an older one: a rollback)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        if args.activate is not None:
            previous = project.active_model()
            model = project.activate_model(args.activate)
            was = "none" if previous is None else f"version {previous.id}"
            print(f"active model: version {model.id} ({model.name}, {model.method}); was {was}")
            return 0
        models = project.models()
    if args.json:
        print(json.dumps([_model_dict(m) for m in models], indent=1))
        return 0
    if models:
        print(models_table(models))
    active = next((m.id for m in models if m.active), None)
    print(f"{len(models)} model version{'s' if len(models) != 1 else ''}"
          + (f"; active: {active}" if active is not None else ""))
    return 0


def models_table(models) -> str:
    """The ``semiseg models`` table (Dice in percent; "-" where not measured)."""
    headers = ("active", "id", "name", "method", "parent", "created", "iterations", "val Dice %",
               "eval Dice %")
    rows = [(ACTIVE_MARK if m.active else "", m.id, m.name, m.method,
             "-" if m.parent_id is None else m.parent_id, m.created[:19].replace("T", " "),
             m.metrics.get("iterations", "-"), _percent(m.metrics.get("validation_dice")),
             _percent((m.metrics.get("evaluation") or {}).get("dice")))
            for m in models]
    return format_table(headers, rows, right_aligned=(1, 4, 6, 7, 8))


def _model_dict(model) -> dict:
    return {"id": model.id, "name": model.name, "method": model.method, "parent": model.parent_id,
            "created": model.created, "active": model.active, "iterations": model.metrics.get("iterations"),
            "validation_dice": model.metrics.get("validation_dice"),
            "evaluation_dice": (model.metrics.get("evaluation") or {}).get("dice")}


def _percent(value) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"
