"""The project store on a real SQLite catalogue and real NIfTI files: cases, label versions and
their provenance, model versions and rollback, runs, garbage collection, damage detection."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from napari_semiseg.errors import GeometryMismatchError, ProjectError, VolumeError
from napari_semiseg.io import Volume, read_label, write_volume
from napari_semiseg.project import DB_NAME, Project

SHAPE = (6, 8, 10)
SPACING = (2.5, 0.8, 0.7)
ORIGIN = (-10.0, 4.0, 3.5)


def write_image(path, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    volume = Volume.from_array(rng.normal(size=shape).astype(np.float32), spacing=SPACING,
                               origin=ORIGIN)
    write_volume(path, volume)
    return volume


def blob(value=1, corner=(1, 2, 3), size=2):
    labels = np.zeros(SHAPE, np.uint8)
    z, y, x = corner
    labels[z:z + size, y:y + size, x:x + size] = value
    return labels


@pytest.fixture
def project(tmp_path):
    write_image(tmp_path / "case1.nii.gz", seed=1)
    write_image(tmp_path / "case2.nii.gz", seed=2)
    with Project.create(tmp_path / "proj") as project:
        project.add_case("case1", tmp_path / "case1.nii.gz")
        project.add_case("case2", tmp_path / "case2.nii.gz", modality="CT", split="labelled")
        yield project


def label_files(project):
    return sorted(p for p in (project.root / "labels").rglob("*") if p.is_file())


# -- creating and opening ---------------------------------------------------------------------

def test_create_then_open_keeps_cases(tmp_path, project):
    reopened = Project.open(project.root)
    assert [c.id for c in reopened.cases()] == ["case1", "case2"]
    case = reopened.case("case2")
    assert case.geometry.shape == SHAPE
    assert case.geometry.spacing == pytest.approx(SPACING)
    assert case.geometry.origin == pytest.approx(ORIGIN)
    assert (case.modality, case.split) == ("CT", "labelled")
    reopened.close()


def test_catalogue_uses_wal_and_foreign_keys(project):
    conn = sqlite3.connect(project.root / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert project._db.query_one("PRAGMA foreign_keys")[0] == 1


def test_open_refuses_what_is_not_a_project(tmp_path):
    with pytest.raises(ProjectError, match="no such project folder"):
        Project.open(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ProjectError, match="not a napari-semiseg project"):
        Project.open(tmp_path / "plain")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / DB_NAME).write_bytes(b"this is no database" * 100)
    with pytest.raises(ProjectError, match="cannot open the project catalogue"):
        Project.open(tmp_path / "broken")


def test_create_refuses_existing_project_and_non_empty_folder(tmp_path, project):
    with pytest.raises(ProjectError, match="already a napari-semiseg project"):
        Project.create(project.root)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("the user's own file")
    with pytest.raises(ProjectError, match="not empty"):
        Project.create(tmp_path / "data")
    assert (tmp_path / "data" / "mine.txt").read_text() == "the user's own file"


def test_newer_schema_is_refused(tmp_path, project):
    with project._db.write() as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ProjectError, match="schema version 99"):
        Project.open(project.root)


# -- cases ------------------------------------------------------------------------------------

def test_add_case_is_idempotent_but_refuses_another_image(tmp_path, project):
    again = project.add_case("case1", tmp_path / "case1.nii.gz")
    assert again == project.case("case1")
    assert len(project.cases()) == 2
    with pytest.raises(ProjectError, match="already in"):
        project.add_case("case1", tmp_path / "case2.nii.gz")


def test_add_case_copy_puts_the_image_inside_the_project(tmp_path, project):
    write_image(tmp_path / "outside.nrrd", seed=3)
    case = project.add_case("copied", tmp_path / "outside.nrrd", copy=True)
    assert project.root in case.image_path.parents
    (tmp_path / "outside.nrrd").unlink()
    image = project.load_image("copied")
    assert image.shape == SHAPE and image.spacing == pytest.approx(SPACING)


def test_add_case_refuses_unsafe_ids_and_unknown_splits(tmp_path, project):
    with pytest.raises(ProjectError, match="case id"):
        project.add_case("../escape", tmp_path / "case1.nii.gz")
    with pytest.raises(ProjectError, match="unknown split"):
        project.add_case("case3", tmp_path / "case1.nii.gz", split="training")
    with pytest.raises(VolumeError, match="does not exist"):
        project.add_case("case3", tmp_path / "missing.nii.gz")
    assert len(project.cases()) == 2


def test_load_image_reports_an_image_changed_after_import(tmp_path, project):
    write_image(tmp_path / "case1.nii.gz", shape=(7, 8, 10))
    with pytest.raises(ProjectError, match="changed since it was imported"):
        project.load_image("case1")


def test_unknown_case_is_named(project):
    with pytest.raises(ProjectError, match="no case 'nope'"):
        project.case("nope")


def test_intensity_stats_are_computed_once_and_recorded(tmp_path, project):
    stats = project.intensity_stats("case1")
    image = project.load_image("case1").array
    assert stats["mean"] == pytest.approx(float(image.mean()), rel=1e-6)
    assert stats["max"] == pytest.approx(float(image.max()))
    assert Project.open(project.root).case("case1").intensity_stats == stats


def test_set_split(project):
    assert project.set_split("case1", "validation").split == "validation"
    assert project.case_ids("validation") == ["case1"]


# -- label versions ---------------------------------------------------------------------------

def test_label_versions_keep_provenance_and_count_changed_voxels(project):
    first = project.save_label("case1", blob(), "prediction", author="model")
    assert first.voxels_changed == 8  # against an empty map
    assert first.foreground_voxels == 8
    corrected_array = blob()
    corrected_array[0, 0, :3] = 2  # the clinician paints 3 voxels
    corrected_array[1, 2, 3] = 0  # and erases one
    corrected = project.save_label("case1", corrected_array, "corrected", parent_id=first.id,
                                   author="dr. who", note="fixed the top")
    assert corrected.voxels_changed == 4
    assert corrected.foreground_voxels == 10
    assert (corrected.parent_id, corrected.author, corrected.note) == (first.id, "dr. who",
                                                                       "fixed the top")
    assert [v.id for v in project.label_versions("case1")] == [first.id, corrected.id]
    assert project.latest_label("case1").id == corrected.id
    assert project.latest_label("case1", kinds=("prediction", "pseudo")).id == first.id
    assert project.latest_label("case1", kinds="gold") is None
    np.testing.assert_array_equal(project.load_label(first.id), blob())
    np.testing.assert_array_equal(project.load_label(corrected.id), corrected_array)
    summary = {c.id: c for c in project.cases()}["case1"]
    assert (summary.latest_kind, summary.n_versions) == ("corrected", 2)


def test_label_file_carries_the_case_geometry(project):
    version = project.save_label("case2", blob(3), "gold")
    assert version.path.name.endswith(".nii.gz")
    like = project.case("case2").geometry
    np.testing.assert_array_equal(read_label(version.path, like=like), blob(3))


def test_saving_never_overwrites_an_earlier_version(project):
    versions = [project.save_label("case1", blob(), "corrected") for _ in range(3)]
    assert len({v.path for v in versions}) == 3
    hashes = [v.sha256 for v in versions]
    project.save_label("case1", blob(2), "corrected", parent_id=versions[-1].id)
    assert [v.sha256 for v in project.label_versions("case1")[:3]] == hashes
    assert project.check() == []


def test_catalogue_refuses_to_modify_or_delete_label_versions(project):
    version = project.save_label("case1", blob(), "gold")
    for statement in ("UPDATE label_versions SET kind = 'pseudo'", "DELETE FROM label_versions"):
        with pytest.raises(sqlite3.IntegrityError, match="never"):
            with project._db.write() as conn:
                conn.execute(statement)
    assert project.label_version(version.id) == version


def test_invalid_labels_write_nothing(project):
    with pytest.raises(GeometryMismatchError):
        project.save_label("case1", np.zeros((6, 8, 9), np.uint8), "corrected")
    with pytest.raises(VolumeError, match="negative"):
        project.save_label("case1", -blob().astype(np.int16), "corrected")
    with pytest.raises(ProjectError, match="unknown label kind"):
        project.save_label("case1", blob(), "guess")
    assert label_files(project) == []
    assert project.label_versions("case1") == []


def test_parent_must_be_a_version_of_the_same_case(project):
    other = project.save_label("case2", blob(), "gold")
    with pytest.raises(ProjectError, match="belongs to case 'case2'"):
        project.save_label("case1", blob(), "corrected", parent_id=other.id)
    with pytest.raises(ProjectError, match="no label version 999"):
        project.save_label("case1", blob(), "corrected", parent_id=999)
    assert project.label_versions("case1") == []


def test_prediction_records_its_model(tmp_path, project):
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"weights")
    model = project.register_model({"name": "cpu-small"}, checkpoint, method="supervised",
                                   config={}, metrics={})
    version = project.save_label("case1", blob(), "prediction", model_id=model.id)
    assert version.model_id == model.id
    with pytest.raises(ProjectError, match="no model version 42"):
        project.save_label("case1", blob(), "prediction", model_id=42)


# -- model versions ---------------------------------------------------------------------------

def checkpoint_file(folder, name, content):
    path = folder / name
    path.write_bytes(content)
    return path


def test_models_register_activate_and_roll_back(tmp_path, project):
    assert project.active_model() is None
    card = {"name": "cpu-small", "network": {"name": "unet-small", "base_filters": 8}}
    v1 = project.register_model(card, checkpoint_file(tmp_path, "a.pt", b"one"),
                                method="supervised", config={"iterations": 10},
                                metrics={"dice": 0.5})
    v2 = project.register_model(card, checkpoint_file(tmp_path, "a.pt", b"two"), parent_id=v1.id,
                                method="uamt", config={"iterations": 20}, metrics={"dice": 0.7})
    assert project.active_model().id == v2.id
    assert (v2.parent_id, v2.method, v2.metrics, v2.card) == (v1.id, "uamt", {"dice": 0.7}, card)
    assert v1.checkpoint_path != v2.checkpoint_path
    assert v1.checkpoint_path.read_bytes() == b"one"  # the second registration copied anew
    rolled_back = project.activate_model(v1.id)
    assert rolled_back.active and project.active_model().id == v1.id
    assert [m.active for m in Project.open(project.root).models()] == [True, False]
    assert project.check() == []


def test_register_model_copies_by_default_and_moves_when_asked(tmp_path, project):
    source = checkpoint_file(tmp_path, "w.pt", b"weights")
    kept = project.register_model({}, source, method="supervised", config={}, metrics={},
                                  activate=False)
    assert source.exists() and kept.name == "model" and project.active_model() is None
    moved = project.register_model({"name": "x"}, source, method="supervised", config={},
                                   metrics={}, name="my model", move=True)
    assert not source.exists()
    assert moved.checkpoint_path.read_bytes() == b"weights" and moved.name == "my model"


def test_register_model_refuses_missing_checkpoint_or_parent(tmp_path, project):
    with pytest.raises(ProjectError, match="checkpoint file does not exist"):
        project.register_model({}, tmp_path / "none.pt", method="m", config={}, metrics={})
    with pytest.raises(ProjectError, match="no model version 7"):
        project.register_model({}, checkpoint_file(tmp_path, "w.pt", b"w"), parent_id=7,
                               method="m", config={}, metrics={})
    assert project.models() == []
    assert not any(p.is_file() for p in (project.root / "models").rglob("*"))


def test_model_identity_is_immutable_but_metrics_can_grow(tmp_path, project):
    model = project.register_model({}, checkpoint_file(tmp_path, "w.pt", b"w"), method="m",
                                   config={"lr": 0.01}, metrics={"dice": 0.8})
    with pytest.raises(sqlite3.IntegrityError, match="never"):
        with project._db.write() as conn:
            conn.execute("UPDATE models SET config = '{}'")
    with pytest.raises(sqlite3.IntegrityError, match="never"):
        with project._db.write() as conn:
            conn.execute("DELETE FROM models")
    updated = project.update_model_metrics(model.id, {"hd95": np.float32(3.5)})
    assert updated.metrics == {"dice": 0.8, "hd95": 3.5}
    assert updated.config == {"lr": 0.01}


# -- runs -------------------------------------------------------------------------------------

def test_runs_record_start_and_finish(project):
    run_id = project.start_run("train", {"method": "uamt", "iterations": 5})
    run = project.run(run_id)
    assert (run.status, run.finished, run.config["method"]) == ("running", None, "uamt")
    finished = project.finish_run(run_id, "completed", {"model_id": 3, "loss": [1.0, 0.5]})
    assert finished.status == "completed" and finished.finished is not None
    assert finished.result == {"model_id": 3, "loss": [1.0, 0.5]}
    assert [r.id for r in project.runs("train")] == [run_id] and project.runs("infer") == []


def test_a_run_whose_process_is_gone_is_marked_interrupted(project):
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = project.start_run("train", {}, pid=child.pid)
    alive = project.start_run("train", {})
    assert project.mark_interrupted_runs() == [dead]
    assert project.run(dead).status == "interrupted" and project.run(alive).status == "running"


# -- files, garbage, damage -------------------------------------------------------------------

def test_path_for_stays_inside_the_project(project):
    path = project.path_for("run", "7/log.jsonl")
    assert path == project.root / "runs" / "7" / "log.jsonl" and path.parent.is_dir()
    with pytest.raises(ProjectError, match="leaves the project"):
        project.path_for("runs", "../../elsewhere")
    with pytest.raises(ProjectError, match="no project folder"):
        project.path_for("secrets", "x")


def test_collect_garbage_removes_leftovers_only(tmp_path, project):
    kept = project.save_label("case1", blob(), "gold")
    model = project.register_model({}, checkpoint_file(tmp_path, "w.pt", b"w"), method="m",
                                   config={}, metrics={})
    orphan = kept.path.with_name("corrected-20200101T000000000000Z-deadbeef.nii.gz")
    orphan.write_bytes(kept.path.read_bytes())
    partial = kept.path.with_name(".corrected-x.abc123.part.nii.gz")
    partial.write_bytes(b"half a file")
    orphan_model = project.path_for("models", "20200101-dead/checkpoint.pt")
    orphan_model.write_bytes(b"w")
    fresh_run_temp = project.path_for("runs", "1/.state.x1.part.pt")
    fresh_run_temp.write_bytes(b"a running job writes this")
    removed = set(project.collect_garbage())
    assert {orphan, partial, orphan_model} <= removed
    assert not orphan.exists() and not partial.exists() and not orphan_model.parent.exists()
    assert kept.path.exists() and model.checkpoint_path.exists()
    assert fresh_run_temp.exists()  # may belong to a job still running
    assert project.collect_garbage(stale_after_s=-1) == [fresh_run_temp]
    assert project.check() == []


def test_check_reports_damaged_or_missing_files(tmp_path, project):
    damaged = project.save_label("case1", blob(), "gold")
    missing = project.save_label("case2", blob(), "gold")
    assert project.check() == []
    damaged.path.write_bytes(damaged.path.read_bytes()[:-3] + b"xyz")
    missing.path.unlink()
    problems = project.check()
    assert len(problems) == 2
    assert "differs from the recorded SHA-256" in problems[0] and "missing" in problems[1]


def test_records_are_json_clean(tmp_path, project):
    run_id = project.start_run("evaluate", {"path": tmp_path, "shape": (1, 2), "nan": float("nan")})
    row = project._db.query_one("SELECT config FROM runs WHERE id = ?", (run_id,))
    assert json.loads(row[0]) == {"nan": None, "path": str(tmp_path), "shape": [1, 2]}


def test_project_is_usable_from_worker_threads(project):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=3) as pool:
        versions = list(pool.map(lambda i: project.save_label("case1", blob(i + 1), "corrected"),
                                 range(6)))
    assert sorted(v.id for v in versions) == [v.id for v in project.label_versions("case1")]
    assert project.check() == []
