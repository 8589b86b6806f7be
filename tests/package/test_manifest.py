"""The npe2 manifest: valid, named like the distribution, every command importable."""

from __future__ import annotations

import importlib
import importlib.resources
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from xml.etree import ElementTree

import npe2
import pytest

from napari_semiseg.io import SUFFIX_FORMATS, WRITABLE_SUFFIXES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manifest() -> npe2.PluginManifest:
    return npe2.PluginManifest.from_file(REPO / "napari.yaml")


def test_npe2_validates_the_installed_plugin_with_its_imports():
    npe2_cli = Path(sys.executable).parent / "npe2"
    result = subprocess.run([str(npe2_cli), "validate", "napari-semiseg", "--imports"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout + result.stderr


def test_manifest_with_its_icon_validates_and_the_icon_is_an_svg_of_the_package(manifest):
    """napari-hub and napari's plugin manager show the plugin with this icon; npe2 takes it as
    ``package:resource`` and finds it with ``importlib.resources``."""
    npe2_cli = Path(sys.executable).parent / "npe2"
    result = subprocess.run([str(npe2_cli), "validate", str(REPO / "napari.yaml")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "valid" in result.stdout + result.stderr, result.stdout + result.stderr
    package, resource = manifest.icon.split(":")
    icon = importlib.resources.files(package).joinpath(resource)
    assert icon.is_file(), f"{manifest.icon} is not a file of the package"
    svg = ElementTree.fromstring(icon.read_bytes())
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("viewBox"), svg.tag


def test_manifest_name_is_the_distribution_name_and_napari_finds_it(manifest):
    assert manifest.name == metadata.distribution("napari-semiseg").metadata["Name"]
    plugin_manager = npe2.PluginManager()
    plugin_manager.discover()
    assert plugin_manager.get_manifest("napari-semiseg").name == "napari-semiseg"


def test_package_copy_of_the_manifest_is_the_root_one():
    import napari_semiseg

    assert (Path(napari_semiseg.__file__).parent / "napari.yaml").read_text() == \
        (REPO / "napari.yaml").read_text()


def test_manifest_names_the_napari_hub_categories_of_what_the_plugin_does(manifest):
    assert [str(c.value if hasattr(c, "value") else c) for c in manifest.categories] == [
        "Segmentation", "Annotation", "IO", "Dataset"]


def test_every_command_resolves_to_a_callable(manifest):
    for command in manifest.contributions.commands:
        module_name, attribute = command.python_name.split(":")
        target = getattr(importlib.import_module(module_name), attribute)
        assert callable(target), command.id


def test_reader_writer_widget_and_samples_point_at_declared_commands(manifest):
    declared = {c.id for c in manifest.contributions.commands}
    contributions = manifest.contributions
    used = [c.command for group in (contributions.readers, contributions.writers,
                                     contributions.widgets, contributions.sample_data)
            for c in group]
    assert set(used) <= declared
    assert [w.display_name for w in contributions.widgets] == ["Project", "Predict", "Fine-tune", "Pseudo-label",
                                                                   "Soft-label correction"]
    assert {s.key for s in contributions.sample_data} == {
        "hippocampus-001", "hippocampus-004", "abdomen-ct", "la-phantom"}


def test_reader_claims_every_format_io_reads_and_writer_only_what_io_writes(manifest):
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories, "DICOM series come as folders"
    assert {f"*{suffix}" for suffix in SUFFIX_FORMATS} <= set(reader.filename_patterns)
    (writer,) = manifest.contributions.writers
    assert [t.value if hasattr(t, "value") else str(t) for t in writer.layer_types] == ["labels"]
    assert set(writer.filename_extensions) <= set(WRITABLE_SUFFIXES)
