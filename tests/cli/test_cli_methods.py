"""``semiseg methods`` and the method names in ``semiseg train --help``, as a user runs them:
both come from the methods registry, never from a list in the CLI.

The command lines run in this process (``semiseg_here``), whose registry may hold probe methods
other tests registered: the table must list them too. A plug-in's method is registered in a
child process, so that this one's registry stays as it was."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from napari_semiseg.engine.methods import get_method, list_methods
from cli_support import cli_environment, ok, semiseg_here


def _rows(table: str) -> dict[str, list[str]]:
    """The table's rows by method name, cells split on runs of two or more spaces."""
    import re

    lines = table.strip().splitlines()
    assert lines[0].split() == ["method", "unlabelled", "optimiser", "lr", "iterations", "summary"]
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:-1])}


def test_methods_lists_every_registered_method_with_its_published_recipe():
    result = ok(semiseg_here("methods"))
    rows = _rows(result.stdout)
    assert list(rows) == list_methods()
    assert rows["mean-teacher"][1:5] == ["yes", "sgd", "0.01", "6000"]
    assert rows["crossmatch"][1:5] == ["yes", "adamw", "0.001", "14000"]
    # No published recipe of its own: the model card's is used, and the table says so.
    assert rows["supervised"][1:5] == ["no", "card's", "card's", "card's"]
    # PLC-KD reads the unlabelled cases' soft labels itself: it does learn from them.
    assert rows["plc-kd"][1] == "yes"
    assert rows["ua-mt"][5] == get_method("ua-mt").description
    assert result.stdout.strip().splitlines()[-1].startswith(f"{len(list_methods())} methods")


def test_methods_json_carries_the_whole_recipe():
    records = json.loads(ok(semiseg_here("methods", "--json")).stdout)
    by_name = {record["name"]: record for record in records}
    assert list(by_name) == list_methods()
    assert by_name["ss-net"]["recipe"] == get_method("ss-net").recommended_training()
    assert by_name["supervised"] == {"name": "supervised", "summary": get_method("supervised").description,
                                     "uses_unlabelled": False, "recipe": {}}


def test_train_help_names_the_methods_the_registry_holds():
    """A method registered by a plug-in appears in ``train --help`` without the CLI knowing it."""
    script = textwrap.dedent("""
        import sys
        from napari_semiseg.cli import main
        from napari_semiseg.engine.methods import Supervised, list_methods, register_method

        print("shipped:", *list_methods(), file=sys.stderr)  # the registry before the plug-in's method

        @register_method
        class Probe(Supervised):
            name = "probe-method"

        raise SystemExit(main(["train", "--help"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=cli_environment(), timeout=300)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split()).replace("- ", "-")  # undo argparse's line wrapping
    assert "see the methods registry" not in help_text
    (shipped,) = [line.split()[1:] for line in result.stderr.splitlines() if line.startswith("shipped:")]
    assert "supervised" in shipped and "probe-method" not in shipped
    for name in [*shipped, "probe-method"]:
        assert name in help_text, name


def test_train_help_documents_labelled_and_keeps_labeled_as_an_unlisted_alias():
    help_text = ok(semiseg_here("train", "--help")).stdout
    assert "--labelled N" in help_text and "--labeled" not in help_text
    assert "--activate-anyway" in help_text
