"""The layer rule of docs/DESIGN.md, made mechanical.

io and project never import torch, napari or Qt; engine and cli never import napari or Qt.
Checked twice: statically (every import statement in the source, lazy ones inside functions
included) and at run time (importing each layer in a fresh interpreter and looking at
``sys.modules``), so neither a hidden import nor a transitive one slips through.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import napari_semiseg

PACKAGE = Path(napari_semiseg.__file__).resolve().parent
GUI = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}
FORBIDDEN = {
    "io": GUI | {"torch", "monai"},
    "project": GUI | {"torch", "monai"},
    "engine": GUI,
    "cli": GUI,
    "samples": GUI | {"torch", "monai"},
}


def imported_roots(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_sources_do_not_import_upper_layers(layer):
    offenders = {}
    for source in sorted((PACKAGE / layer).rglob("*.py")):
        bad = imported_roots(source) & FORBIDDEN[layer]
        if bad:
            offenders[str(source.relative_to(PACKAGE))] = sorted(bad)
    assert not offenders, f"layer {layer!r} imports what it must not: {offenders}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_importing_a_layer_loads_nothing_forbidden(layer):
    modules = sorted(
        "napari_semiseg." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in (PACKAGE / layer).rglob("*.py")
        if p.name not in {"__main__.py"})
    modules = [m.removesuffix(".__init__") for m in modules]
    probe = ("import importlib, json, sys\n"
             f"for m in {modules!r}: importlib.import_module(m)\n"
             "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not loaded & FORBIDDEN[layer], f"importing {layer} loaded {sorted(loaded & FORBIDDEN[layer])}"


def test_the_check_itself_catches_a_violation(tmp_path):
    offending = tmp_path / "bad.py"
    offending.write_text("def f():\n    from napari import Viewer\n    import torch.nn\n")
    assert imported_roots(offending) == {"napari", "torch"}
