"""A project meets hostile files: an emptied, foreign or scribbled catalogue, and a copied folder.

Real SQLite files, the real ``semiseg`` command in a child process (training and predicting in
this process, ``semiseg_here``: the same command lines without an interpreter's start each).
What a user must never see: a catalogue that lost its rows taken at its word (garbage
collection deleting the gold labels and models as "leftovers"), tables added to another
program's database, a traceback, or a copy of a project writing into the original.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_semiseg.errors import ProjectError
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import DB_NAME, Project, import_la
from napari_semiseg.project._ownership import APPLICATION_ID
from napari_semiseg.project._schema import MIGRATIONS
from cli_support import semiseg_here

REPOSITORY = Path(__file__).resolve().parents[2]
SHAPE = (4, 6, 8)


def semiseg(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SEMISEG_PROJECT"}
    env["PYTHONPATH"] = str(REPOSITORY)
    return subprocess.run([sys.executable, "-m", "napari_semiseg.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


def refused(result: subprocess.CompletedProcess, fragment: str) -> str:
    """The one-line message of a command that must end with exit status 2 and no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semiseg: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path, but SQLite's scratch files.

    Reading a WAL catalogue leaves an empty ``-wal`` and a ``-shm`` index beside it: neither
    holds data (what a WAL holds is checkpointed into ``project.db`` when a project closes).
    """
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()
            and not path.name.endswith("-shm") and not (path.name.endswith("-wal") and not path.stat().st_size)}


def tables_of(path: Path) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


@pytest.fixture
def project(tmp_path) -> Path:
    """A closed project with copied-in images, gold labels and a model: what GC must never eat."""
    image = tmp_path / "scan.nii.gz"
    write_volume(image, Volume.from_array(np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)))
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"trained weights")
    with Project.create(tmp_path / "proj") as store:
        for index in range(3):
            store.add_case(f"case{index}", image, copy=True)
            store.save_label(f"case{index}", np.full(SHAPE, index % 2, np.uint8), "gold")
        store.register_model({"name": "tiny"}, weights, method="supervised", config={}, metrics={})
    return tmp_path / "proj"


# -- item 2: an emptied or foreign catalogue never loses data ----------------------------------

def test_an_emptied_catalogue_is_refused_and_no_file_is_removed(project):
    (project / DB_NAME).write_bytes(b"")  # `: > P/project.db`
    before = snapshot(project)
    for args in (("cases", project), ("check", project), ("check", project, "--collect-garbage")):
        refused(semiseg(*args), f"{project / DB_NAME}: the project catalogue is empty (0 bytes)")
    assert snapshot(project) == before
    assert len([name for name in before if name.startswith("labels/")]) == 3


@pytest.mark.parametrize("how", ["other tables", "other application id", "no tables"])
def test_a_foreign_sqlite_file_is_refused_and_left_as_it_was(tmp_path, how):
    folder = tmp_path / "theirs"
    folder.mkdir()
    with sqlite3.connect(folder / DB_NAME) as conn:
        if how == "other tables":
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        elif how == "other application id":
            conn.execute("PRAGMA application_id = 42")
            conn.execute("CREATE TABLE cases (id TEXT)")  # a name of ours does not make it ours
        else:
            conn.execute("PRAGMA user_version = 7")  # a valid SQLite file without tables
    conn.close()
    tables, before = tables_of(folder / DB_NAME), snapshot(folder)
    refused(semiseg("cases", folder), f"{folder / DB_NAME}: is ")
    refused(semiseg("check", folder, "--collect-garbage"), "napari-semiseg catalogue")
    with pytest.raises(ProjectError, match="refused, nothing was changed"):
        Project.open(folder)
    assert tables_of(folder / DB_NAME) == tables
    assert snapshot(folder) == before


def test_a_catalogue_of_an_earlier_release_opens_and_is_marked_as_ours(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / DB_NAME) as conn:  # as the first release wrote it: no id
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = 1")
    conn.close()
    with Project.open(folder) as store:
        assert store.cases() == []
    with sqlite3.connect(folder / DB_NAME) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_a_scribbled_catalogue_ends_in_a_message_and_nothing_is_moved(project):
    with Project.open(project) as store:  # enough rows for the tables to span many pages
        for index in range(3, 60):
            store.add_case(f"case{index}", project.parent / "scan.nii.gz")
    database = project / DB_NAME
    with sqlite3.connect(database) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # The pages where the cases and label versions start; schema_version's page stays
        # intact, so opening works and only the later queries meet the damage.
        roots = [row[0] for row in conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name IN ('cases', 'label_versions')")]
    conn.close()
    data = bytearray(database.read_bytes())  # closed: the WAL was checkpointed into the file
    for root in roots:
        start = (root - 1) * page_size
        data[start:start + page_size] = (b"scribbled!" * page_size)[:page_size]
    database.write_bytes(bytes(data))
    before = snapshot(project)
    for args in (("cases", project), ("check", project), ("check", project, "--collect-garbage")):
        refused(semiseg(*args), f"{database}: the project catalogue is damaged")
    assert snapshot(project) == before


def test_garbage_collection_moves_leftovers_to_the_trash_and_empty_trash_deletes_them(project):
    gold = sorted((project / "labels").rglob("*.nii.gz"))[0]
    leftover = gold.with_name("corrected-20200101T000000000000Z-deadbeef.nii.gz")
    leftover.write_bytes(gold.read_bytes())
    partial = project / "models" / "20200101-dead" / ".checkpoint.ab12.part.pt"
    partial.parent.mkdir()
    partial.write_bytes(b"half a model")
    kept = {name: digest for name, digest in snapshot(project).items()
            if name not in (leftover.relative_to(project).as_posix(), partial.relative_to(project).as_posix())}

    collected = semiseg("check", project, "--collect-garbage")
    assert collected.returncode == 0, collected.stderr
    assert f"moved 2 files no catalogue row names to {project / 'trash'}" in collected.stdout
    assert not leftover.exists() and not partial.exists()
    trashed = {path.relative_to(project).as_posix() for path in (project / "trash").rglob("*") if path.is_file()}
    batch = next((project / "trash").iterdir()).name
    assert trashed == {f"trash/{batch}/{leftover.relative_to(project).as_posix()}",
                       f"trash/{batch}/{partial.relative_to(project).as_posix()}"}
    assert (project / "trash" / batch / leftover.relative_to(project)).read_bytes() == gold.read_bytes()
    assert {name: digest for name, digest in snapshot(project).items() if not name.startswith("trash/")} == kept

    checked = semiseg("check", project)  # the trash is not a problem of the project
    assert checked.returncode == 0 and "0 problems found" in checked.stdout
    assert "the trash holds 2 files" in checked.stdout and "--empty-trash" in checked.stdout

    emptied = semiseg("check", project, "--empty-trash")
    assert emptied.returncode == 0 and "deleted 2 files from the trash" in emptied.stdout
    assert not (project / "trash").exists()
    assert snapshot(project) == kept


def test_garbage_collection_refuses_a_catalogue_that_names_nothing(project, tmp_path):
    # A valid catalogue of ours, but empty: project.db replaced by a fresh project's.
    with Project.create(tmp_path / "fresh"):
        pass
    (project / DB_NAME).write_bytes((tmp_path / "fresh" / DB_NAME).read_bytes())
    before = snapshot(project)
    message = refused(semiseg("check", project, "--collect-garbage"), "names no case, label or model")
    assert "hold 7 file(s)" in message  # 3 images, 3 gold labels, 1 model
    assert snapshot(project) == before
    assert not (project / "trash").exists()


# -- item 3: a copied project never writes into the original -----------------------------------

LA_SHAPE = (24, 48, 48)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def trained_original(tmp_path_factory) -> Path:
    """A project of four LA-style h5 cases (three gold) with one finished 1-step run (cpu-small)."""
    from data_factory import write_la_h5

    la_root = tmp_path_factory.mktemp("la")
    z, y, x = np.mgrid[:LA_SHAPE[0], :LA_SHAPE[1], :LA_SHAPE[2]]
    for index in range(4):
        label = ((((z - 12) * 1.5) ** 2 + (y - 22 - index) ** 2 + (x - 25) ** 2) < 64).astype(np.uint8)
        image = (2.0 * label + np.random.default_rng(index).normal(0.0, 0.7, LA_SHAPE)).astype(np.float32)
        (la_root / f"case{index}").mkdir()
        write_la_h5(la_root / f"case{index}" / "mri_norm2.h5", image, label)
    (la_root / "train.list").write_text("".join(f"case{index}\n" for index in range(4)))
    original = tmp_path_factory.mktemp("original") / "proj"
    with Project.create(original) as store:
        import_la(store, la_root, la_root / "train.list", 3)
    ok(semiseg_here("train", original, "--card", "cpu-small", "--iterations", 1, "--validation-count", 1,
                    "--device", "cpu"))
    return original


def test_a_copied_project_resumes_predicts_and_checks_without_touching_the_original(trained_original, tmp_path):
    original = trained_original  # what this test checks is that nothing here changes
    with Project.open(original) as store:
        run = store.runs("train")[0]
    before = snapshot(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)  # `cp -a original copy`
    run_files = ("checkpoint.pt", "model.pt", "events.jsonl")
    copy_run = copy / Path(run.config["run_dir"]).relative_to(original)
    copied = {name: snapshot(copy_run)[name] for name in run_files}

    resumed = ok(semiseg_here("train", copy, "--resume", run.id, "--iterations", 2, "--device", "cpu"))
    ok(semiseg_here("infer", copy, "--case", "case3", "--device", "cpu"))
    checked = ok(semiseg_here("check", copy))

    assert snapshot(original) == before, "the copy wrote into the original"
    assert "resumed at step 1" in resumed.stderr and str(copy_run) in resumed.stdout
    assert all(snapshot(copy_run)[name] != copied[name] for name in run_files)
    assert checked.stdout.strip().endswith("0 problems found")
    with Project.open(copy) as store:
        model = store.active_model()
        assert model.id == 2 and model.checkpoint_path.is_relative_to(copy / "models")
        assert model.config["output_dir"] == str(copy_run)
        assert model.config["resume_from"] == str(copy_run / "checkpoint.pt")
        labelled = model.config["data"]["labeled"]
        assert labelled and all(Path(case["label"]).is_relative_to(copy / "labels") for case in labelled)
        assert [v.model_id for v in store.label_versions("case3")] == [2]
    with sqlite3.connect(copy / DB_NAME) as conn:  # the catalogue names neither folder
        dump = "\n".join(conn.iterdump())
    conn.close()
    assert str(original) not in dump and str(copy) not in dump


def _resume_arguments(project: Path, resume: str | Path):
    from napari_semiseg.cli._main import build_parser
    return build_parser().parse_args(["train", str(project), "--resume", str(resume), "--iterations", "5"])


def test_a_copy_of_an_earlier_release_project_resumes_inside_the_copy(trained_original, tmp_path):
    """Releases before relative paths stored run folders absolute: the copy rebases them."""
    from napari_semiseg.cli._train import resumed_config

    original = tmp_path / "original"
    shutil.copytree(trained_original, original, symlinks=True)
    with Project.open(original) as store:
        run = store.runs("train")[0]
    with sqlite3.connect(original / DB_NAME) as conn:  # as an earlier release stored the run
        conn.execute("UPDATE runs SET config = json_set(config, '$.run_dir', ?), "
                     "result = json_set(result, '$.checkpoint', ?, '$.model', ?) WHERE id = ?",
                     (run.config["run_dir"], run.result["checkpoint"], run.result["model"], run.id))
        assert str(original / "runs") in conn.execute("SELECT config FROM runs").fetchone()[0]
    conn.close()
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    copy_run = copy / Path(run.config["run_dir"]).relative_to(original)
    with Project.open(copy) as store:
        assert Path(store.run(run.id).config["run_dir"]) == copy_run
        config, previous = resumed_config(store, _resume_arguments(copy, run.id))
    assert previous.id == run.id
    assert (config.output_dir, config.resume_from) == (str(copy_run), str(copy_run / "checkpoint.pt"))
    assert all(Path(case.label).is_relative_to(copy / "labels") for case in config.data.labeled)


def test_a_checkpoint_from_outside_the_project_resumes_in_a_new_run_folder_of_it(trained_original, tmp_path):
    from napari_semiseg.cli._train import resumed_config

    with Project.open(trained_original) as store:
        run_dir = Path(store.runs("train")[0].config["run_dir"])
    copy = tmp_path / "copy"
    shutil.copytree(trained_original, copy, symlinks=True)
    with Project.open(copy) as store:
        config, previous = resumed_config(store, _resume_arguments(copy, run_dir))  # the original's run
    assert previous is None and config.resume_from == str(run_dir / "checkpoint.pt")  # only read
    assert config.run_dir.parent == copy / "runs" and config.run_dir.name != run_dir.name
    assert all(Path(case.label).is_relative_to(copy / "labels") for case in config.data.labeled)
