"""Nothing run, nothing swapped, nothing left "running": what a crafted file or a kill -9 tries.

``semiseg`` command lines on the tiny LA-style project of ``test_cli_engine``: a checkpoint that
names code to run, a model file replaced by another valid one, a training run killed with
SIGKILL (a real ``semiseg`` process), a process that reuses a dead run's pid, a case id with a
trailing newline. The others run in this process (``semiseg_here``), without an interpreter's
start each.
"""

from __future__ import annotations

import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_semiseg.engine.training import CHECKPOINT_FILE, load_checkpoint
from napari_semiseg.errors import ProjectError
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project
from cli_support import cli_environment, la_root, new_project, ok, semiseg_here  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, la_root):  # noqa: F811 (the imported fixture)
    """A project with model versions 1 and 2 (2 fine-tuned from 1), one step each."""
    project = new_project(tmp_path_factory.mktemp("integrity") / "proj", la_root)
    ok(semiseg_here("train", project, "--card", "cpu-small", "--iterations", 1, "--validation-count", 1,
                    "--device", "cpu"))
    ok(semiseg_here("train", project, "--iterations", 1, "--validation-count", 1, "--device", "cpu",
                    "--init-from", "1"))
    return project


def _crafted_checkpoint(project: Path, folder: Path, factory: str) -> Path:
    """The project's first run's checkpoint, its config made to name ``factory``."""
    with Project.open(project) as store:
        run_dir = Path(store.runs("train")[0].config["run_dir"])
        run_dir = run_dir if run_dir.is_absolute() else project / run_dir
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    payload["config"]["network_factory"] = factory
    crafted = folder / "crafted.pt"
    torch.save(payload, crafted)
    return crafted


@pytest.mark.parametrize("factory", ["marker_factory:build", "builtins:print"])
def test_a_checkpoint_naming_code_is_refused_and_the_code_never_runs(two_models, tmp_path, factory, monkeypatch):
    marker = tmp_path / "ran.txt"
    (tmp_path / "marker_factory.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "def build(spec):\n    raise SystemExit('called')\n")
    crafted = _crafted_checkpoint(two_models, tmp_path, factory)
    with Project.open(two_models) as store:
        models_before = len(store.models())
    monkeypatch.syspath_prepend(str(tmp_path))  # the named module is importable: only a refusal stops it
    result = semiseg_here("train", two_models, "--resume", crafted, "--iterations", 3, "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "names code to run" in result.stderr and "Traceback" not in result.stderr
    assert str(crafted) in result.stderr
    assert not marker.exists() and "marker_factory" not in sys.modules
    with Project.open(two_models) as store:
        assert len(store.models()) == models_before


def test_a_model_file_replaced_by_another_valid_one_is_refused(two_models, tmp_path):
    project = tmp_path / "proj"
    shutil.copytree(two_models, project, symlinks=True)
    with Project.open(project) as store:
        first, second = store.model(1), store.model(2)
        first_file = first.checkpoint_path
    shutil.copyfile(second.checkpoint_path, first_file)   # a valid model file, but not version 1's
    infer = semiseg_here("infer", project, "--case", "case3", "--model", 1, "--device", "cpu")
    assert infer.returncode == 2 and "SHA-256" in infer.stderr and str(first_file) in infer.stderr
    activate = semiseg_here("models", project, "--activate", 1)
    assert activate.returncode == 2 and "SHA-256" in activate.stderr
    finetune = semiseg_here("train", project, "--init-from", 1, "--iterations", 1, "--device", "cpu")
    assert finetune.returncode == 2 and "SHA-256" in finetune.stderr
    with Project.open(project) as store:
        assert store.active_model().id == 2                      # unchanged
        assert store.latest_label("case3", kinds=("prediction",)) is None
        assert len(store.models()) == 2


def test_a_run_killed_with_sigkill_reads_interrupted_and_resumes(tmp_path, la_root):  # noqa: F811
    project = new_project(tmp_path / "proj", la_root)
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_semiseg.cli", "train", str(project), "--card", "cpu-small",
         "--iterations", "40", "--validation-count", "0", "--device", "cpu", "--param", "checkpoint_every=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_environment())
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        # Off a terminal the trainer prints step 1, then every 40 // 20 = 2nd; a checkpoint follows
        # each step, so step 1's is written before step 2 is printed.
        while not lines.get(timeout=300).startswith("iteration 2/40"):
            pass
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    with Project.open(project) as store:
        run = store.runs("train")[-1]
    assert run.status == "interrupted"
    run_dir = Path(run.config["run_dir"])
    saved = load_checkpoint((run_dir if run_dir.is_absolute() else project / run_dir) / CHECKPOINT_FILE)["iteration"]
    assert saved >= 1
    resumed = ok(semiseg_here("train", project, "--resume", run.id, "--iterations", saved + 1))
    assert f"resumed at step {saved}" in resumed.stderr


def test_a_new_process_reusing_a_dead_runs_pid_is_not_taken_for_it(tmp_path):
    with Project.create(tmp_path / "p") as store:
        run_id = store.start_run("train", {})
        assert store.run(run_id).status == "running"            # this process: alive, same start
    with sqlite3.connect(tmp_path / "p" / "project.db") as conn:  # as if our pid had been reused
        conn.execute("UPDATE runs SET process_start = 'another-boot:1' WHERE id = ?", (run_id,))
    with Project.open(tmp_path / "p") as store:
        assert store.run(run_id).status == "interrupted"


@pytest.mark.parametrize("case_id", ["case\n", "case\nother", "/etc", "..", ""])
def test_case_ids_that_could_name_other_folders_are_refused(tmp_path, case_id):
    image = tmp_path / "a.nii.gz"
    write_volume(image, Volume.from_array(np.zeros((8, 8, 8), np.float32)))
    with Project.create(tmp_path / "p") as store:
        with pytest.raises(ProjectError, match="case id"):
            store.add_case(case_id, image)
        assert store.cases() == []
