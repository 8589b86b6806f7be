"""``semiseg train|infer|evaluate|models`` as a user runs them, on a tiny LA-style project (four
24×48×48 h5 volumes, the first three labelled), the cpu-small card and a few iterations.

The command lines run in this process (``semiseg_here``: what they print and their exit status,
without a fresh interpreter's imports each time); Ctrl-C is sent to a real ``semiseg`` process."""

from __future__ import annotations

import csv
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cli_support import SHAPE, blob, cli_environment, image_of, la_root, new_project, ok, semiseg_here  # noqa: F401 (fixture)
from data_factory import make_volume
from napari_semiseg.engine.metrics import CSV_COLUMNS
from napari_semiseg.io import read_volume, write_label, write_volume
from napari_semiseg.project import Project

@pytest.fixture(scope="module")
def trained(tmp_path_factory, la_root):
    """A project with one model: 2 iterations on case0..case1, case2 carved out to validate."""
    project = new_project(tmp_path_factory.mktemp("trained") / "proj", la_root)
    result = ok(semiseg_here("train", project, "--card", "cpu-small", "--method", "supervised",
                             "--iterations", 2, "--validation-count", 1, "--device", "cpu"))
    return project, result


def test_train_registers_and_activates_a_model(trained):
    project, result = trained
    assert "registered model version 1 (active)" in result.stdout
    assert "validation (1): case2 [carved: the last 1 of the labelled cases]" in result.stderr
    (progress,) = [line for line in result.stderr.splitlines() if line.startswith("iteration 2/2")]
    # The logged "dice" is the Dice loss: shown under that name, never as a bare "dice 0.55".
    assert re.search(r"\bdice loss \d", progress) and not re.search(r"\bdice \d", progress), progress
    with Project.open(project) as store:
        model = store.active_model()
        assert model is not None and model.id == 1 and model.method == "supervised"
        assert model.card["name"] == "cpu-small"
        assert [c["case_id"] for c in model.config["data"]["labeled"]] == ["case0", "case1"]
        assert [c["case_id"] for c in model.config["data"]["validation"]] == ["case2"]
        assert model.metrics["iterations"] == 2
        assert 0.0 <= model.metrics["validation_dice"] <= 1.0
        run = store.runs("train")[-1]
        assert run.status == "completed" and run.result["model_id"] == 1
        assert run.config["cases"]["validation_rule"].startswith("carved")
        assert run.config["cases"]["unlabeled"] == [], "supervised learns from no unlabelled case: none is loaded"


def test_validation_cases_may_be_held_out_h5_references(tmp_path, la_root):
    """An unlabelled LA case validates with the label its h5 file carries, without becoming
    labelled or being trained on as unlabelled."""
    project = new_project(tmp_path / "proj", la_root)
    ok(semiseg_here("train", project, "--card", "cpu-small", "--iterations", 1, "--labelled", 2,
                    "--validation-cases", "case3", "--device", "cpu"))
    with Project.open(project) as store:
        model = store.active_model()
        data = model.config["data"]
        assert [c["case_id"] for c in data["labeled"]] == ["case0", "case1"]
        assert [(c["case_id"], Path(c["label"]).name) for c in data["validation"]] == [("case3", "mri_norm2.h5")]
        assert data["unlabeled"] == [], "supervised learns from no unlabelled case (the Fine-tune panel's rule)"
        assert model.metrics["validation_per_case"].keys() == {"case3"}
        assert store.latest_label("case3") is None  # still no label version


def test_a_run_nothing_validated_is_registered_but_made_active_only_when_asked(tmp_path, la_root):
    project = new_project(tmp_path / "proj", la_root)
    common = ("--card", "cpu-small", "--iterations", 1, "--validation-count", 0, "--device", "cpu")
    asked = ok(semiseg_here("train", project, *common, "--activate-anyway"))
    assert "registered model version 1 (active)" in asked.stdout
    unvalidated = ok(semiseg_here("train", project, *common, "--labeled", 2))  # the alias of --labelled
    assert "labelled (2): case0, case1" in unvalidated.stderr
    assert "registered model version 2:" in unvalidated.stdout
    assert "not made active: no validation case measured it" in unvalidated.stdout
    assert f"semiseg models {project} --activate 2" in unvalidated.stdout
    with Project.open(project) as store:
        assert [m.id for m in store.models()] == [1, 2]
        assert store.active_model().id == 1  # predictions keep coming from the model that was active


def test_infer_stores_prediction_versions_with_soft_labels(trained):
    project, _ = trained
    result = ok(semiseg_here("infer", project, "--case", "case3", "case0", "--device", "cpu"))
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == ["[1/2] case3", "[2/2] case0"]
    with Project.open(project) as store:
        for case_id in ("case3", "case0"):
            version = store.latest_label(case_id)
            assert version.kind == "prediction" and version.model_id == 1
            soft = store.soft_label_for(version.id)
            assert soft is not None and soft.model_id == 1 and soft.num_classes == 2
            probabilities = store.load_soft_label(soft)
            assert probabilities.shape == (2, *SHAPE)
            # the stored hard label is the soft label's argmax (the codec keeps the side of 0.5)
            labels = store.load_label(version.id)
            np.testing.assert_array_equal(labels, probabilities.argmax(axis=0))
            assert f"{case_id}" in result.stdout
        assert store.latest_label("case0", kinds="gold") is not None  # gold kept, not replaced


def test_infer_overlap_chooses_a_finer_grid_and_records_it(trained):
    project, _ = trained
    ok(semiseg_here("infer", project, "--case", "case3", "--overlap", 0.625, "--device", "cpu"))
    with Project.open(project) as store:
        soft = store.soft_label_for(store.latest_label("case3").id)
        assert soft.details["grid"].startswith("overlap 0.625")
    both = semiseg_here("infer", project, "--case", "case3", "--overlap", 0.5, "--paper-grid")
    assert both.returncode == 2 and "give one" in both.stderr


def test_infer_file_writes_label_soft_label_uncertainty_on_the_source_grid(trained, tmp_path):
    project, _ = trained
    label = blob(1)
    source = make_volume(shape=SHAPE).with_array(image_of(label, 7))
    path = write_volume(tmp_path / "scan.nii.gz", source)
    out = tmp_path / "out"
    result = ok(semiseg_here("infer", project, "--file", path, "--out", out, "--mc", 2, "--device", "cpu"))
    assert "scan" in result.stdout
    written = {p.name for p in out.iterdir()}
    assert written == {"scan_label.nii.gz", "scan_softlabel.nii.gz", "scan_uncertainty.nii.gz",
                       "scan_mcvariance.nii.gz"}
    hard, soft, uncertainty = (read_volume(out / f"scan_{kind}.nii.gz")
                               for kind in ("label", "softlabel", "uncertainty"))
    for volume in (hard, soft, uncertainty):
        assert volume.geometry.matches(source.geometry)
    assert set(np.unique(hard.array)) <= {0, 1}
    assert soft.array.dtype == np.float32 and 0.0 <= soft.array.min() and soft.array.max() <= 1.0
    # The label is the argmax of the probabilities whose foreground share is the soft label; at
    # p ≈ 0.5 float32 rounding (p0 + p1 ≠ 1 after blending and resampling) may tip either way.
    decided = np.abs(soft.array - 0.5) > 1e-5
    np.testing.assert_array_equal((hard.array == 1)[decided], (soft.array > 0.5)[decided])
    assert 0.0 <= uncertainty.array.min() and uncertainty.array.max() <= 1.0


def test_evaluate_prints_the_table_and_writes_the_csv(trained, tmp_path):
    project, _ = trained
    ok(semiseg_here("infer", project, "--case", "case0", "--device", "cpu"))
    table_csv = tmp_path / "metrics.csv"
    result = ok(semiseg_here("evaluate", project, "--cases", "case0", "case3", "--stored", "--csv", table_csv,
                             "--device", "cpu"))
    header = result.stdout.splitlines()[0].split()
    assert header == ["case", "Dice", "%", "Jaccard", "%", "95HD", "ASD", "95HD", "mm", "ASD", "mm", "flags"]
    assert "against gold label version" in result.stderr and "against the label stored in" in result.stderr
    with open(table_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [row["case"] for row in rows] == ["case0", "case3", "mean"]
    # case0 was scored from its stored prediction against its gold label: check by hand
    with Project.open(project) as store:
        prediction = store.load_label(store.latest_label("case0", kinds="prediction").id) == 1
        gold = store.load_label(store.latest_label("case0", kinds="gold").id) == 1
        expected = 2 * (prediction & gold).sum() / (prediction.sum() + gold.sum())
        assert float(rows[0]["dice"]) == pytest.approx(expected)
        evaluation = store.model(1).metrics["evaluation"]
        assert evaluation["cases"] == ["case0", "case3"]
        assert evaluation["dice"] == pytest.approx(float(rows[2]["dice"]))


def test_evaluate_defaults_to_cases_the_model_did_not_train_on(trained):
    project, _ = trained
    result = ok(semiseg_here("evaluate", project, "--device", "cpu"))
    scored = [line.split()[0] for line in result.stdout.splitlines()[2:] if not line.startswith(("-", "mean"))]
    assert scored == ["case2", "case3"]  # case0, case1 trained on; case3's reference is its h5 label


def test_evaluate_compares_two_folders_by_case_name(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    geometry = make_volume(shape=(10, 12, 12)).geometry
    reference = np.zeros((10, 12, 12), np.uint8)
    reference[2:8, 2:8, 2:8] = 1                      # 216 voxels
    prediction = np.zeros_like(reference)
    prediction[2:8, 2:8, 4:10] = 1                    # 216 voxels, 144 shared
    write_label(ref_dir / "a.nii.gz", reference, geometry)
    write_label(pred_dir / "a_label.nii.gz", prediction, geometry)
    write_volume(pred_dir / "a_softlabel.nii.gz", make_volume(shape=(10, 12, 12)))  # infer's: skipped
    write_label(ref_dir / "b.nii.gz", reference, geometry)  # no prediction
    table_csv = tmp_path / "t.csv"
    result = ok(semiseg_here("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--csv", table_csv))
    assert "b: no prediction" in result.stderr
    with open(table_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["case"] for row in rows] == ["a", "mean"]
    assert float(rows[0]["dice"]) == pytest.approx(2 * 144 / (216 + 216))
    assert float(rows[0]["jaccard"]) == pytest.approx(144 / (216 + 216 - 144))


# -- stop, resume, rollback --------------------------------------------------------------------------------

def _start_stoppable_training(project: Path) -> tuple[subprocess.Popen, queue.Queue]:
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_semiseg.cli", "train", str(project), "--card", "cpu-small",
         "--iterations", "500", "--validation-count", "0", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_environment())
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    return process, lines


@pytest.fixture(scope="module")
def stopped_and_resumed(tmp_path_factory, la_root):
    """Ctrl-C a run after its first step, then resume it to 2 steps beyond where it stopped."""
    project = new_project(tmp_path_factory.mktemp("resume") / "proj", la_root)
    process, lines = _start_stoppable_training(project)
    seen = []
    try:
        while not any(line.startswith("iteration 1/500") for line in seen):
            seen.append(lines.get(timeout=300))
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    with Project.open(project) as store:
        run = store.runs("train")[-1]
    # Nothing validates this run: only --activate-anyway makes its version the active one.
    resumed = semiseg_here("train", project, "--resume", run.id, "--iterations", run.result["iteration"] + 2,
                           "--activate-anyway")
    return project, process.returncode, stdout, run, resumed


def test_ctrl_c_stops_keeping_weights_and_resume_continues(stopped_and_resumed):
    project, returncode, stdout, run, resumed = stopped_and_resumed
    assert returncode == 130
    assert f"--resume {run.id}" in stdout
    assert run.status == "stopped"
    stopped_at = run.result["iteration"]
    assert 1 <= stopped_at < 500
    assert Path(run.result["checkpoint"]).is_file() and Path(run.result["model"]).is_file()
    ok(resumed)
    assert f"resumed at step {stopped_at}" in resumed.stderr
    # what this process trained, not the run's total
    assert f"trained 2 iterations (steps {stopped_at + 1}-{stopped_at + 2} of the run" in resumed.stdout
    with Project.open(project) as store:
        model = store.active_model()
        assert model.metrics["iterations"] == stopped_at + 2
        assert model.config["resume_from"] == run.result["checkpoint"]
    events = [json.loads(line) for line in (Path(run.config["run_dir"]) / "events.jsonl").read_text().splitlines()]
    steps = [e["iteration"] for e in events if e["event"] == "iteration"]
    assert steps == list(range(1, stopped_at + 3))  # every step once, none repeated or skipped


def test_models_lists_versions_and_activate_rolls_back(stopped_and_resumed, la_root):
    project = stopped_and_resumed[0]
    ok(semiseg_here("train", project, "--card", "cpu-small", "--iterations", 1, "--validation-count", 0,
                    "--init-from", "active", "--device", "cpu", "--activate-anyway"))
    listed = ok(semiseg_here("models", project))
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["active", "id", "name", "method", "parent", "created", "iterations", "val",
                                "Dice", "%", "eval", "Dice", "%"]
    assert lines[-1] == "2 model versions; active: 2"
    first, second = lines[2].split(), lines[3].split()
    assert first[:4] == ["1", "cpu-small", "supervised", "-"]          # not active: no mark
    assert second[:5] == ["*", "2", "cpu-small", "supervised", "1"]    # active, fine-tuned from 1
    rolled = ok(semiseg_here("models", project, "--activate", 1))
    assert "active model: version 1" in rolled.stdout and "was version 2" in rolled.stdout
    with Project.open(project) as store:
        assert store.active_model().id == 1
    ok(semiseg_here("infer", project, "--case", "case1", "--device", "cpu"))
    with Project.open(project) as store:
        assert store.latest_label("case1").model_id == 1  # inference follows the rollback


# -- user errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (("train", "{p}", "--card", "no-such-card"), "no-such-card: no such model card"),
    (("train", "{p}", "--card", "cpu-small", "--method", "no-such-method"), "unknown training method"),
    (("train", "{p}", "--card", "cpu-small", "--param", "dice=cubic"), "dice must be one of"),
    (("train", "{p}", "--card", "cpu-small", "--validation-cases", "nope"), "no case 'nope'"),
    (("train", "{p}", "--resume", "999"), "no run 999"),
    (("infer", "{p}", "--case", "nope"), "no case 'nope'"),
    (("infer", "{p}", "--all", "--model", "99"), "no model version 99"),
    (("infer", "{p}"), "say what to predict"),
    (("infer", "{p}", "--file", "{p}/none.nii.gz", "--out", "{p}/o"), "none.nii.gz: no such file"),
    (("evaluate", "{p}", "--model", "42"), "no model version 42"),
    (("evaluate", "--pred", "{p}"), "--pred DIR and --ref DIR go together"),
    (("models", "{p}", "--activate", "7"), "no model version 7"),
])
def test_user_errors_exit_2_with_one_line(trained, args, fragment):
    project, _ = trained
    result = semiseg_here(*(str(a).format(p=project) for a in args))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("semiseg: error:"), result.stderr
    assert fragment in message[0]


def test_infer_without_any_model_is_a_user_error(tmp_path, la_root):
    project = new_project(tmp_path / "proj", la_root)
    result = semiseg_here("infer", project, "--all")
    assert result.returncode == 2 and "has no model yet" in result.stderr
