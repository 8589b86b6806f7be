"""``semiseg atso`` on a tiny real project: two generations, models registered, the report printed."""

from __future__ import annotations

import json

import pytest

from napari_semiseg.cli import main
from napari_semiseg.project import Project
from atso_support import REFERENCE, make_project, write_tiny_card


@pytest.fixture
def project_folder(tmp_path):
    with make_project(tmp_path) as project:
        return project.root


def test_atso_command_runs_two_generations_and_registers_the_models(project_folder, tmp_path, capsys):
    card = write_tiny_card(tmp_path / "tiny.yaml")
    report_copy = tmp_path / "report.json"

    status = main(["atso", str(project_folder), "--card", str(card), "--generations", "2", "--iterations-m0", "3",
                   "--iterations-gen", "1", "--batch", "2", "--device", "cpu", "--folds-seed", "5",
                   "--param", "validate_every=0", "--param", "checkpoint_every=0", "--per-case",
                   "--report", str(report_copy)])

    out = capsys.readouterr().out
    assert status == 0, out
    with Project.open(project_folder) as project:
        models = project.models()
        names = [m.name.split("-", 1)[1] for m in models]
        assert names == ["G0-M0", "G1-student-1", "G1-student-2", "G2-student-1", "G2-student-2", "final"]
        assert [m.active for m in models] == [False] * 5 + [True]
        assert all(m.parent_id == models[0].id for m in models[1:])
        run = project.runs("atso")[-1]
        assert run.status == "completed" and run.config["folds"]["seed"] == 5
    report = json.loads(report_copy.read_text())
    assert set(report["pseudo_label_dice"]) == {"G0", "G1", "G2"}
    assert set(report["pseudo_label_dice"]["G2"]["per_case"]) == set(REFERENCE)
    assert "pseudo-label Dice %" in out and "same weights" in out
    assert all(case in out for case in REFERENCE)            # the --per-case table
    assert f"final model version {models[-1].id}" in out


def test_user_errors_exit_2_with_a_message(project_folder, capsys):
    assert main(["atso", str(project_folder), "--card", "cpu-small", "--param", "init_from=x"]) == 2
    assert "not a training setting" in capsys.readouterr().err
    assert main(["atso", str(project_folder), "--card", "cpu-small", "--labelled-share", "1.5"]) == 2
    assert main(["atso", str(project_folder)]) == 2
    assert "--card" in capsys.readouterr().err


def test_a_project_without_labels_is_refused_before_any_training(tmp_path, capsys):
    with Project.create(tmp_path / "empty") as project:
        root = project.root
    assert main(["atso", str(root), "--card", "cpu-small", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no case has a gold or corrected label" in err and "Traceback" not in err
