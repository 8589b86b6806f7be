"""What a user's non-editable ``pip install napari-semiseg`` gets.

The manifest and the model cards live at the repository root (the layout is fixed by the
design card) and reach the package through symlinks; these tests build a real wheel and
check that real files, not dangling links, are inside it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, cwd=out)
    (path,) = out.glob("napari_semiseg-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_manifest_and_every_model_card(wheel):
    names = set(wheel.namelist())
    assert "napari_semiseg/napari.yaml" in names
    manifest = wheel.read("napari_semiseg/napari.yaml").decode()
    assert manifest == (REPO / "napari.yaml").read_text()
    for card in sorted((REPO / "models").glob("*.yaml")):
        assert f"napari_semiseg/models/{card.name}" in names, f"{card.name} missing from the wheel"
        assert wheel.read(f"napari_semiseg/models/{card.name}").decode() == card.read_text()


def test_wheel_ships_the_icon_the_manifest_names(wheel):
    """An icon left out of the wheel would leave napari-hub and napari's plugin list with none."""
    (icon_line,) = [line for line in wheel.read("napari_semiseg/napari.yaml").decode().splitlines()
                    if line.startswith("icon: ")]
    package, resource = icon_line.removeprefix("icon: ").split(":")
    folder = package.replace(".", "/")
    names = set(wheel.namelist())
    assert f"{folder}/__init__.py" in names, "importlib.resources finds the icon through its package"
    svg = wheel.read(f"{folder}/{resource}")
    assert svg == (REPO / folder / resource).read_bytes()
    assert ElementTree.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"


def test_wheel_declares_the_console_script_and_napari_entry_point(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "semiseg = napari_semiseg.cli:main" in text
    assert "napari-semiseg = napari_semiseg:napari.yaml" in text


def test_requirements_carry_no_qt_binding(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith("METADATA")]
    requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist")]
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not [r for r in unconditional if any(q in r for q in ("PyQt", "PySide"))]
    assert any(r.startswith("Requires-Dist: torch>=2.1") for r in unconditional)


def _metadata(wheel: zipfile.ZipFile) -> list[str]:
    (name,) = [n for n in wheel.namelist() if n.endswith("METADATA")]
    return wheel.read(name).decode().splitlines()


def test_metadata_tells_the_napari_hub_who_made_it_for_which_systems(wheel):
    """What napari-hub shows on the plugin's page comes from these fields."""
    lines = _metadata(wheel)
    assert "Author: napari-semiseg developers" in lines
    classifiers = {line.removeprefix("Classifier: ") for line in lines if line.startswith("Classifier: ")}
    assert {"Framework :: napari", "Development Status :: 3 - Alpha", "Operating System :: POSIX :: Linux",
            "Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.11"} <= classifiers
    # The oldest Python version named is the oldest the package accepts.
    (requires_python,) = [line for line in lines if line.startswith("Requires-Python: ")]
    assert requires_python == "Requires-Python: >=3.10"


def test_magicgui_is_not_required_since_no_module_uses_it(wheel):
    sources = [wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".py")]
    assert not any("magicgui" in source for source in sources)
    requires = [line for line in _metadata(wheel) if line.startswith("Requires-Dist")]
    assert not [r for r in requires if "magicgui" in r.lower()]
