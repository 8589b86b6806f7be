"""A model version's card reaches the faces as a ``ModelCard``; a damaged one is named, never a crash."""

from __future__ import annotations

import dataclasses

import pytest

from napari_semiseg._napari._model_rows import ModelRow
from napari_semiseg.engine.cards import load_card
from napari_semiseg.errors import SemisegError
from napari_semiseg.project import Project
from napari_semiseg.workflows.models import card_name, card_of, trained_with_network
from napari_panel_support import build_project, register_model


def test_a_model_version_s_card_is_a_model_card_and_a_damaged_one_is_named(tmp_path):
    small, vnet = load_card("cpu-small"), load_card("la-vnet")
    with Project.open(build_project(tmp_path / "project")) as project:
        version = register_model(project, tmp_path, card=small)
    assert card_of(version) == small
    assert trained_with_network(version, small) and not trained_with_network(version, vnet)
    assert ModelRow.of(version).card == "cpu-small"
    damaged = dataclasses.replace(version, card={"name": "cpu-small", "network": "a text, not a network"})
    with pytest.raises(SemisegError, match=f"model version {version.id}: card"):
        card_of(damaged)
    assert card_name(damaged) == version.name and not trained_with_network(damaged, small)
