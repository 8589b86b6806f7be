"""The workflows layer knows no face: no napari, no Qt, no argparse (docs/DESIGN.md's layer table).

Checked on every import statement of its sources, those inside functions included, and on a
fresh interpreter's modules after importing it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import napari_semiseg

WORKFLOWS = Path(napari_semiseg.__file__).resolve().parent / "workflows"
FACES = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy", "argparse"}


def _imported(source: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
            elif node.level >= 2 and (node.module or "").split(".")[0] in ("cli", "_napari"):
                roots.add(node.module.split(".")[0])
    return roots


def test_workflow_sources_import_no_face():
    offenders = {source.name: sorted(_imported(source) & (FACES | {"cli", "_napari"}))
                 for source in sorted(WORKFLOWS.glob("*.py"))}
    assert not any(offenders.values()), offenders


def test_importing_the_workflows_loads_no_gui():
    probe = ("import json, sys\n"
             "import napari_semiseg.workflows.train, napari_semiseg.workflows.predict, napari_semiseg.workflows.pseudo\n"
             "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                           check=True, cwd=WORKFLOWS.parents[1]).stdout))
    assert not loaded & (FACES - {"argparse"}), sorted(loaded & FACES)
