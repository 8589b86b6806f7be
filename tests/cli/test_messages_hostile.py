"""Hostile files and a refusing machine end in "PATH: problem" and leave the project as it was.

The machine's refusals are real: the file-size limit (``RLIMIT_FSIZE``, what ``ulimit -f`` sets;
Python ignores SIGXFSZ, so a write past it fails with EFBIG), a full disk (a small tmpfs filled
up) and a read-only catalogue or folder (a read-only bind mount: ``chmod`` does not stop root).
The last two need ``mount``; where the tests run without that right they are skipped. Files are
crafted the way a careless or hostile user would: cards of the wrong type or absurd size, a card
that is not UTF-8, a catalogue whose schema version is not a number, a run configuration whose
learning rate is "fast".
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_factory import folder_snapshot, write_la_h5
from napari_semiseg.cli import main
from napari_semiseg.engine.cards import load_card
from napari_semiseg.project import Project, import_la

REPOSITORY = Path(__file__).resolve().parents[2]
SHAPE = (16, 32, 32)
CASES = ("case0", "case1", "case2")
#: Big enough for the catalogue (~80 kB), its WAL and SQLite's 32 kB shared-memory file; far
#: too small for a cpu-small checkpoint (~1 MB) or model file (~370 kB).
FILE_SIZE_LIMIT = 200_000


def semiseg(*args, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """``semiseg ARGS`` in a child process, optionally under a file-size limit."""
    env = {k: v for k, v in os.environ.items() if k != "SEMISEG_PROJECT"}
    env["PYTHONPATH"] = str(REPOSITORY)
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "napari_semiseg.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600,
                          preexec_fn=limit if file_size_limit is not None else None)


def assert_message(returncode: int, stderr: str, expected: int, *fragments: str) -> None:
    """The exit status, no traceback, and each fragment ("PATH: problem") on stderr."""
    assert "Traceback" not in stderr, stderr
    assert returncode == expected, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".part" in p.name]


# -- projects ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def la_root(tmp_path_factory) -> Path:
    """Three LA-layout cases (image and label in one h5) and their list."""
    root = tmp_path_factory.mktemp("la")
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    for index, case_id in enumerate(CASES):
        label = ((((z - 8) * 1.5) ** 2 + (y - 15 - index) ** 2 + (x - 16) ** 2) < 36).astype(np.uint8)
        image = (2.0 * label + np.random.default_rng(index).normal(0.0, 0.7, SHAPE)).astype(np.float32)
        (root / case_id).mkdir()
        write_la_h5(root / case_id / "mri_norm2.h5", image, label)
    (root / "train.list").write_text("\n".join(CASES) + "\n")
    return root


def new_project(folder: Path, la_root: Path) -> Path:
    """case0 and case1 labelled (gold), case2 unlabelled."""
    with Project.create(folder) as project:
        import_la(project, la_root, la_root / "train.list", 2)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, la_root) -> Path:
    """A project with one model version (one iteration of cpu-small)."""
    project = new_project(tmp_path_factory.mktemp("trained") / "proj", la_root)
    assert main(["train", str(project), "--card", "cpu-small", "--iterations", "1", "--validation-count", "0",
                 "--device", "cpu", "--activate-anyway"]) == 0
    return project


def copy_of(project: Path, destination: Path) -> Path:
    shutil.copytree(project, destination)
    return destination


# -- the file-size limit (ulimit -f) -------------------------------------------------------------

def test_the_file_size_limit_stops_training_with_a_message_and_keeps_labels_and_models(tmp_path, la_root):
    project = new_project(tmp_path / "proj", la_root)
    kept = {p: b for p, b in folder_snapshot(project).items() if not p.startswith(("runs", "project.db"))}
    result = semiseg("train", project, "--card", "cpu-small", "--iterations", 2, "--validation-count", 0,
                     "--device", "cpu", file_size_limit=FILE_SIZE_LIMIT)
    assert_message(result.returncode, result.stderr, 2, "File too large")
    problem = result.stderr.strip().splitlines()[-1]
    assert problem.startswith(f"semiseg: error: {project / 'runs'}")  # PATH: the file it could not write
    assert ".pt: cannot be written, nothing was saved: File too large" in problem
    assert temporary_files(project) == []
    assert {p: b for p, b in folder_snapshot(project).items() if not p.startswith(("runs", "project.db"))} == kept
    with Project.open(project) as store:
        assert store.models() == []
        run = store.runs("train")[-1]
        assert run.status == "failed" and "File too large" in run.result["error"]


def test_the_file_size_limit_during_an_import_copy_leaves_the_project_unchanged(tmp_path):
    from napari_semiseg.io import Volume, write_volume

    images = tmp_path / "images"
    images.mkdir()
    noise = np.random.default_rng(0).normal(size=(32, 64, 64)).astype(np.float32)  # ~0.5 MB gzipped
    write_volume(images / "big.nii.gz", Volume.from_array(noise, spacing=(1.0, 1.0, 1.0)))
    project = tmp_path / "proj"
    Project.create(project).close()
    before = folder_snapshot(project)
    result = semiseg("import", project, images, "--copy", file_size_limit=300_000)
    assert_message(result.returncode, result.stderr, 2,
                   f"cannot copy {images / 'big.nii.gz'} into the project, nothing was added: File too large")
    assert result.stderr.startswith(f"semiseg: error: {project / 'images' / 'big'}")
    assert folder_snapshot(project) == before
    assert not any(p.is_dir() for p in (project / "images" / "big").iterdir())  # no half-made copy folder


# -- a file where a folder belongs, and the reverse -----------------------------------------------

@pytest.mark.parametrize("option, make, expected", [
    ("--out", lambda tmp: _file(tmp / "out.txt"), "out.txt: is a file, not a folder (--out names the folder"),
    ("--out", lambda tmp: _file(tmp / "out.txt") / "sub", "out.txt: is a file, not a folder (--out"),
])
def test_infer_refuses_an_out_folder_that_is_a_file_before_predicting(tmp_path, trained, capsys, option, make,
                                                                      expected):
    project = copy_of(trained, tmp_path / "proj")
    target = make(tmp_path)
    before = folder_snapshot(project)
    code = main(["infer", str(project), "--case", "case2", option, str(target), "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, expected)
    assert folder_snapshot(project) == before


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: _folder(tmp / "scores"), "scores: is a folder, not a file (--csv names the file to write)"),
    (lambda tmp: _file(tmp / "scores.txt") / "scores.csv", "scores.txt: is a file, not a folder (--csv"),
])
def test_evaluate_refuses_a_csv_path_it_cannot_write_before_scoring(tmp_path, trained, capsys, make, expected):
    project = copy_of(trained, tmp_path / "proj")
    target = make(tmp_path)
    before = folder_snapshot(project)
    code = main(["evaluate", str(project), "--cases", "case2", "--csv", str(target), "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, expected)
    assert folder_snapshot(project) == before  # nor is the evaluation recorded with the model


# -- cards, run settings and configurations of the wrong type ---------------------------------------

def _card(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(Path(load_card("cpu-small").source).read_text())
    edit(data)
    path = tmp_path / f"card-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d["network"].update(dropout="yes please"), "network.dropout: must be true or false, got 'yes please'"),
    (lambda d: d["training"].update(lr="fast"), "training.lr: must be a number, got 'fast'"),
    (lambda d: d["network"].update(base_filters=8.5), "network.base_filters: must be an integer, got 8.5"),
    (lambda d: d["network"].update(num_classes=True), "network.num_classes: must be an integer, got True"),
    (lambda d: d.update(patch_size=[100000, 100000, 100000]), "patch_size: must be in 8..1024, got 100000"),
    (lambda d: d.update(patch_size=[512, 512, 512]), "patch_size: [512, 512, 512] is 134,217,728 voxels"),
    (lambda d: d["network"].update(base_filters=4096), "network.base_filters: must be in 1..128, got 4096"),
    (lambda d: d["inference"].update(window_batch=100000), "inference.window_batch: must be in 1..256"),
    (lambda d: d["preprocessing"].update(target_spacing=[1e-6, 1.0, 1.0]),
     "preprocessing.target_spacing (mm): must be in 0.01..100.0, got 1e-06"),
])
def test_a_card_of_the_wrong_type_or_an_absurd_size_is_refused_before_anything_starts(
        tmp_path, la_root, capsys, edit, problem):
    project = new_project(tmp_path / "proj", la_root)
    card = _card(tmp_path, edit)
    before = folder_snapshot(project)
    code = main(["train", str(project), "--card", str(card), "--iterations", "1", "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, f"semiseg: error: {card}: {problem}")
    assert folder_snapshot(project) == before


def test_a_card_that_is_not_utf8_is_refused_with_its_path(tmp_path, la_root, capsys):
    project = new_project(tmp_path / "proj", la_root)
    card = tmp_path / "latin1.yaml"
    card.write_bytes(Path(load_card("cpu-small").source).read_bytes().replace(
        b"description:", "description: Caf\u00e9 ".encode("latin-1") + b"#", 1))
    before = folder_snapshot(project)
    code = main(["train", str(project), "--card", str(card), "--iterations", "1", "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, f"semiseg: error: {card}: not a text file in UTF-8")
    assert folder_snapshot(project) == before


@pytest.mark.parametrize("param, problem", [
    ("lr=fast", "lr: must be a number, got 'fast'"),
    ("batch_labeled=true", "batch_labeled: must be an integer, got True"),
    ("ema_decay=fast", "method 'mean-teacher': ema_decay: must be a number, got 'fast'"),
])
def test_a_run_setting_of_the_wrong_type_is_refused(tmp_path, la_root, capsys, param, problem):
    project = new_project(tmp_path / "proj", la_root)
    before = folder_snapshot(project)
    code = main(["train", str(project), "--card", "cpu-small", "--method", "mean-teacher", "--param", param,
                 "--iterations", "1", "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, problem)
    assert folder_snapshot(project) == before


def test_a_checkpoint_whose_configuration_has_the_wrong_type_is_refused(tmp_path, trained, capsys):
    project = copy_of(trained, tmp_path / "proj")
    checkpoint = next((trained / "runs").glob("train-*/checkpoint.pt"))
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["config"]["lr"] = "fast"
    crafted = tmp_path / "crafted.pt"
    torch.save(payload, crafted)
    before = folder_snapshot(project)
    code = main(["train", str(project), "--resume", str(crafted), "--iterations", "3", "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, f"{crafted}: config: lr: must be a number, got 'fast'")
    assert folder_snapshot(project) == before


@pytest.mark.parametrize("version", ["'two'", "2.5", "-1", "NULL"])
def test_a_schema_version_that_is_not_a_number_is_refused(tmp_path, la_root, capsys, version):
    project = new_project(tmp_path / "proj", la_root)
    with contextlib.closing(sqlite3.connect(project / "project.db")) as conn, conn:
        conn.execute("DROP TABLE schema_version")  # its NOT NULL would refuse NULL
        conn.execute("CREATE TABLE schema_version (version)")
        conn.execute(f"INSERT INTO schema_version VALUES ({version})")
    before = folder_snapshot(project)
    code = main(["cases", str(project)])
    assert_message(code, capsys.readouterr().err, 2,
                   f"{project / 'project.db'}: its schema_version table holds", "not one version number")
    assert folder_snapshot(project) == before


# -- a full disk and a read-only project (mount: root only) ---------------------------------------

def _can_mount() -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(f"/tmp/semiseg-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                                 capture_output=True).returncode == 0
        if mounted:
            subprocess.run(["umount", str(probe)], check=True)
        return mounted
    finally:
        probe.rmdir()


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs mount (root): a tmpfs, a read-only bind mount")


@contextlib.contextmanager
def mounted(*arguments: str, target: Path):
    subprocess.run(["mount", *arguments, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a file or a folder) read-only for everyone, root included: a read-only bind mount."""
    with mounted("--bind", str(path), target=path):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
        yield path


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def project_state(folder: Path) -> dict[str, bytes]:
    """Every file of a project, less SQLite's shared-memory index and an empty write-ahead log.

    A connection to a read-only or full catalogue cannot tidy those two away when it closes;
    they hold no content (the next connection rebuilds or removes them).
    """
    state = folder_snapshot(folder)
    state.pop("project.db-shm", None)
    if state.get("project.db-wal") == b"":
        del state["project.db-wal"]
    return state


def _new_files(folder: Path, before: dict) -> dict[str, int]:
    return {p: len(b) for p, b in folder_snapshot(folder).items() if p not in before}


@needs_mount
def test_a_full_disk_ends_in_a_message_and_leaves_the_project_unchanged(tmp_path, trained, capsys):
    # How much the prediction of case2 writes, measured on a scratch copy on the ordinary disk.
    scratch = copy_of(trained, tmp_path / "scratch")
    before = folder_snapshot(scratch)
    assert main(["infer", str(scratch), "--case", "case2", "--device", "cpu"]) == 0
    written = [size for name, size in _new_files(scratch, before).items() if name.startswith("labels")]
    assert len(written) == 2  # the label version and its soft label
    pages = sum(-(-size // 4096) for size in written)
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs", target=disk):
        project = copy_of(trained, disk / "proj")
        shutil.rmtree(project / "runs")
        # Fill the disk, then free room for SQLite's shared memory (8 pages) and both files, with
        # 2 pages to spare: the catalogue's write-ahead log (9 pages or more) no longer fits.
        filler = disk / "filler"
        fill(filler)
        os.truncate(filler, filler.stat().st_size - (8 + pages + 2) * 4096)
        before = project_state(project)
        capsys.readouterr()
        code = main(["infer", str(project), "--case", "case2", "--device", "cpu"])
        # infer reports a case it could not save and goes on with the others: exit status 1
        assert_message(code, capsys.readouterr().err, 1,
                       f"{project / 'project.db'}: the project catalogue cannot be used here (database or disk "
                       "is full); nothing was changed; the disk is full")
        assert project_state(project) == before  # no label file without its row
        assert temporary_files(project) == []


@needs_mount
def test_a_read_only_catalogue_ends_in_a_message_and_leaves_the_project_unchanged(tmp_path, trained, capsys):
    project = copy_of(trained, tmp_path / "proj")
    before = project_state(project)
    with read_only(project / "project.db"):
        predicted = main(["infer", str(project), "--case", "case2", "--device", "cpu"])
        assert_message(predicted, capsys.readouterr().err, 1,
                       f"{project / 'project.db'}: the project catalogue cannot be used here (attempt to write a "
                       "readonly database); nothing was changed; project.db is read-only")
        activated = main(["models", str(project), "--activate", "1"])
        assert_message(activated, capsys.readouterr().err, 2, "attempt to write a readonly database")
    assert project_state(project) == before  # the label and soft-label files went again


@needs_mount
def test_a_read_only_project_folder_ends_in_a_message(tmp_path, trained, capsys):
    project = copy_of(trained, tmp_path / "proj")
    before = folder_snapshot(project)
    with read_only(project):
        listed = main(["cases", str(project)])
    assert_message(listed, capsys.readouterr().err, 2,
                   f"{project / 'project.db'}: cannot open the project catalogue (unable to open database file); "
                   "SQLite cannot create its files beside project.db: the project folder may be read-only")
    assert folder_snapshot(project) == before


@needs_mount
def test_a_read_only_runs_folder_stops_training_with_a_message(tmp_path, trained, capsys):
    project = copy_of(trained, tmp_path / "proj")
    before = folder_snapshot(project)
    with read_only(project / "runs"):
        code = main(["train", str(project), "--card", "cpu-small", "--iterations", "1", "--device", "cpu"])
    assert_message(code, capsys.readouterr().err, 2, f"semiseg: error: {project / 'runs'}",
                   "Read-only file system")
    assert {p: b for p, b in folder_snapshot(project).items() if not p.startswith("project.db")} == \
        {p: b for p, b in before.items() if not p.startswith("project.db")}


# -- helpers -----------------------------------------------------------------------------------------

def _file(path: Path) -> Path:
    path.write_text("not a folder\n")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path
