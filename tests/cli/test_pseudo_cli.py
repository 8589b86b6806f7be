"""``semiseg pseudo-label``, ``next-case`` and ``correct-soft-label`` as a user runs them on a real
project: stdout, stderr and exit status (a real ``semiseg`` process for the user error, the
other command lines in this process, where torch is imported once)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_semiseg.cli import main
from napari_semiseg.engine.pseudo import pseudo_label
from napari_semiseg.project import Project
from cli_support import semiseg, semiseg_here
from pseudo_support import make_project, register_tiny_model


@pytest.fixture
def folder(tmp_path):
    with make_project(tmp_path) as project:
        register_tiny_model(project, tmp_path)
        return project.root


def test_pseudo_label_prints_a_table_and_the_throughput(folder):
    result = semiseg_here("pseudo-label", folder, "--cases", "u1", "u0", "--device", "cpu")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"case\s+foreground voxels\s+mean entropy\s+confidence\s+seconds$", lines[0])
    rows = [line.split() for line in lines[2:4]]
    assert [row[0] for row in rows] == ["u1", "u0"]
    with Project.open(folder) as project:
        for row in rows:
            version = project.latest_label(row[0])
            assert version.kind == "pseudo" and int(row[1]) == version.foreground_voxels
            summary = project.case_uncertainty(row[0])
            assert float(row[2]) == pytest.approx(summary.mean_entropy, abs=1e-4)
            assert float(row[3]) == pytest.approx(summary.mean_confidence, abs=1e-4)
    assert re.fullmatch(r"pseudo-labelled 2/2 cases with model \d+ in [\d.]+ s: [\d.]+ volumes/minute",
                        lines[-1])


def test_pseudo_label_without_a_model_is_a_user_error(tmp_path):
    with make_project(tmp_path, unlabelled=1, labelled=0) as project:
        root = project.root
    result = semiseg("pseudo-label", root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("semiseg: error:") and "no model" in result.stderr


def test_next_case_and_correct_soft_label(folder, capsys):
    # set up through the API; the commands run in process (the user-error test above runs the
    # entry point in a process of its own and reads its exit status)
    with Project.open(folder) as project:
        pseudo_label(project, device="cpu")
        ranked = sorted(("u0", "u1"), key=lambda c: -project.case_uncertainty(c).mean_entropy)
        pseudo = project.latest_label(ranked[0])
        project.save_label(ranked[0], np.zeros(project.case(ranked[0]).geometry.shape, np.uint8),
                           "corrected", parent_id=pseudo.id)

    assert main(["next-case", str(folder), "--all"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["rank", "case", "score", "why"]
    assert [line.split()[1] for line in listing[2:]] == [ranked[1]]
    assert "mean entropy" in listing[2]
    assert main(["next-case", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == ranked[1]

    assert main(["correct-soft-label", str(folder), ranked[0]]) == 0
    corrected = capsys.readouterr().out
    assert "reconstructed" in corrected
    for step in ("false-pixel assistant", "boundary assistant", "similarity correction",
                 "final forcing"):
        assert step in corrected
    assert re.search(r"\d+ of \d+ voxels crossed 0.5; stored as soft label \d+", corrected)
    with Project.open(folder) as project:
        (soft,) = project.soft_labels(ranked[0], kind="corrected")
        assert (project.load_soft_label(soft)[1] < 0.5).all()   # the clinician said: no foreground

    assert main(["correct-soft-label", str(folder), ranked[1]]) == 2
    assert "no corrected or gold label" in capsys.readouterr().err
