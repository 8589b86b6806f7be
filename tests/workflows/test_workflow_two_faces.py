"""The same request through both faces gives the same run and the same prediction (issue 16).

``semiseg train`` (its command line, run in this process) and the Fine-tune panel's job path
(``FineTuneRun``, whose trainer is a child process; no window needed: the panel hands it a
``TrainRequest``) train on one tiny project; their saved ``config.json`` agree but for the run
folder, and both runs are recorded alike (kind "train", one folder naming). ``semiseg infer``
and the Predict panel's job path (``predict_steps``) then predict the same case with the same
model, voxel for voxel.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from napari_semiseg._napari._finetune_job import FineTuneRun
from napari_semiseg._napari._predict_job import PredictRequest, predict_steps
from napari_semiseg.project import DB_NAME, Project
from napari_semiseg.workflows.train import TrainRequest
from napari_panel_support import LABELLED, UNLABELLED, build_project
from cli_support import semiseg_here

#: The folder name every training run gets, whichever face starts it.
RUN_FOLDER = re.compile(r"train-\d{8}-\d{6}-\d+(-\d+)?")
ITERATIONS = 1


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def finish(run: FineTuneRun) -> FineTuneRun:
    """Poll the child as the panel's timer does, then conclude."""
    while not run.ended:
        run.poll()
        time.sleep(0.2)
    run.conclude()
    return run


def comparable(config_file: Path) -> dict:
    """A run's saved configuration without what differs by nature: its folder."""
    config = json.loads(config_file.read_text())
    config.pop("output_dir")
    return config


@pytest.fixture(scope="module")
def both_faces(tmp_path_factory):
    """One project, one run per face from the same request: (folder, CLI model, GUI run)."""
    folder = build_project(tmp_path_factory.mktemp("two-faces") / "project")
    ok(semiseg_here("train", folder, "--card", "cpu-small", "--method", "mean-teacher", "--iterations", ITERATIONS,
                    "--param", "lr=0.002", "--device", "cpu"))
    with Project.open(folder) as project:
        cli_model = project.models()[-1]
        request = TrainRequest(card="cpu-small", method="mean-teacher", iterations=ITERATIONS,
                               settings={"lr": 0.002}, labelled=LABELLED, unlabelled=UNLABELLED, device="cpu")
        gui_run = finish(FineTuneRun.start(project, request))
    assert gui_run.status == "finished", gui_run.error
    return folder, cli_model, gui_run


def test_both_faces_make_the_same_run_from_the_same_request(both_faces):
    folder, cli_model, gui_run = both_faces
    with Project.open(folder) as project:
        runs = project.runs()
        gui_model = project.model(gui_run.model.id)
    assert [run.kind for run in runs] == ["train", "train"], "one run kind"
    cli_dir, gui_dir = (Path(run.config["run_dir"]) for run in runs)
    assert RUN_FOLDER.fullmatch(cli_dir.name) and RUN_FOLDER.fullmatch(gui_dir.name), "one folder naming"
    assert cli_dir != gui_dir
    assert comparable(cli_dir / "config.json") == comparable(gui_dir / "config.json")
    # The user's settings are recorded with each model version, alike.
    assert cli_model.metrics["user_overrides"] == gui_model.metrics["user_overrides"] == {
        "lr": 0.002, "iterations": ITERATIONS}


def test_both_faces_predict_the_same_voxels_with_the_same_model(both_faces):
    folder, cli_model, _gui_run = both_faces
    case_id = UNLABELLED[0]
    ok(semiseg_here("infer", folder, "--case", case_id, "--model", cli_model.id, "--device", "cpu"))
    with Project.open(folder) as project:
        from_cli = project.load_label(project.latest_label(case_id, kinds="prediction").id)
        steps = predict_steps(project.model(cli_model.id), project.load_image(case_id),
                              PredictRequest(model_id=cli_model.id, device="cpu"))
        while True:
            try:
                next(steps)
            except StopIteration as done:
                from_panel, _kept = done.value
                break
    np.testing.assert_array_equal(from_panel.labels, from_cli)


def test_a_run_the_earlier_panel_recorded_as_training_resumes_in_its_own_folder(both_faces):
    """Earlier releases' Fine-tune panel recorded kind "training" and its folder in the result."""
    folder, _cli_model, gui_run = both_faces
    run_dir = gui_run.config.run_dir
    with sqlite3.connect(folder / DB_NAME) as conn:
        conn.execute("UPDATE runs SET kind = 'training', config = json_remove(config, '$.run_dir') WHERE id = ?",
                     (gui_run.run_id,))
    conn.close()
    ok(semiseg_here("train", folder, "--resume", gui_run.run_id, "--iterations", ITERATIONS + 1))
    with Project.open(folder) as project:
        resumed = project.runs()[-1]
    assert resumed.kind == "train" and resumed.config["resumed_run"] == gui_run.run_id
    assert Path(resumed.config["run_dir"]) == run_dir, "a resumed run continues in its own folder"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == list(range(1, ITERATIONS + 2))
