"""``semiseg atso`` on a tiny real project: two generations, models registered, the report printed,
progress with an ETA in a log."""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from napari_semiseg.cli import main
from napari_semiseg.project import Project
from atso_support import REFERENCE, make_project, write_tiny_card


@pytest.fixture
def project_folder(tmp_path):
    with make_project(tmp_path) as project:
        return project.root


@dataclass(frozen=True)
class AtsoRun:
    status: int
    out: str
    err: str
    project: Path
    report_copy: Path


@pytest.fixture(scope="module")
def two_generations(tmp_path_factory) -> AtsoRun:
    """One tiny two-generation run, its stdout and stderr kept as a log would keep them (not a terminal)."""
    folder = tmp_path_factory.mktemp("atso")
    with make_project(folder) as project:
        root = project.root
    card = write_tiny_card(folder / "tiny.yaml")
    report_copy = folder / "report.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["atso", str(root), "--card", str(card), "--generations", "2", "--iterations-m0", "3",
                       "--iterations-gen", "1", "--batch", "2", "--device", "cpu", "--folds-seed", "5",
                       "--param", "validate_every=0", "--param", "checkpoint_every=0", "--per-case",
                       "--report", str(report_copy)])
    return AtsoRun(status, out.getvalue(), err.getvalue(), root, report_copy)


def test_atso_command_runs_two_generations_and_registers_the_models(two_generations):
    atso, out = two_generations, two_generations.out
    assert atso.status == 0, out + atso.err
    with Project.open(atso.project) as project:
        models = project.models()
        names = [m.name.split("-", 1)[1] for m in models]
        assert names == ["G0-M0", "G1-student-1", "G1-student-2", "G2-student-1", "G2-student-2", "final"]
        assert [m.active for m in models] == [False] * 5 + [True]
        assert all(m.parent_id == models[0].id for m in models[1:])
        run = project.runs("atso")[-1]
        assert run.status == "completed" and run.config["folds"]["seed"] == 5
    report = json.loads(atso.report_copy.read_text())
    assert set(report["pseudo_label_dice"]) == {"G0", "G1", "G2"}
    assert set(report["pseudo_label_dice"]["G2"]["per_case"]) == set(REFERENCE)
    assert "pseudo-label Dice %" in out and "same weights" in out
    assert all(case in out for case in REFERENCE)            # the --per-case table
    assert f"final model version {models[-1].id}" in out


def test_atso_progress_in_a_log_shows_elapsed_and_eta_lines(two_generations):
    """In a log (stderr not a terminal) the run's share done comes with elapsed time and ETA, about
    every 5 %, up to 100 %; whole lines, never a redrawn terminal line."""
    err = two_generations.err
    lines = [line for line in err.splitlines() if re.match(r"atso \d+% ", line)]
    assert lines and all("% " in line and ": elapsed " in line and ", ETA " in line for line in lines), err
    shares = [int(line.split()[1].rstrip("%")) for line in lines]
    assert shares == sorted(shares) and len(shares) >= 10 and shares[-1] == 100, lines
    assert "\r" not in err and "\033[K" not in err
    # the step lines stay: a stored pseudo-label with its Dice, the run's end
    assert "pseudo-label Dice" in err and "atso run " in err.splitlines()[-1]


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
