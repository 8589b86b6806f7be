"""A project survives ``kill -9`` in the middle of a save, and two processes writing at once.

Every test here runs real child processes (``python -c ...``) against a real project folder;
the children are killed with SIGKILL, so no ``finally``, no ``atexit``, no SQLite shutdown runs.
After each kill the project is reopened and checked: the earlier versions are intact and
readable, every catalogue row's file exists with its recorded SHA-256, no row dangles, and
``collect_garbage`` removes what the killed process left.
"""

from __future__ import annotations

import inspect
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project

SHAPE = (12, 16, 16)
REPOSITORY = Path(__file__).resolve().parents[2]



def labels_of(seed: int) -> np.ndarray:
    """The label a child saves for ``seed``; the parent rebuilds it from the note "seed=N"."""
    rng = np.random.default_rng(seed)
    return (rng.random(SHAPE) < 0.3).astype(np.uint8) * rng.integers(1, 4)


def child_script(body: str) -> str:
    """A child program: opens the project named by argv[1], then runs ``body``."""
    header = "import sys, time\nimport numpy as np\nfrom napari_semiseg.project import Project\n"
    header += f"SHAPE = {SHAPE}\n" + inspect.getsource(labels_of)
    header += "project = Project.open(sys.argv[1])\n"
    return header + textwrap.dedent(body)


def start_child(body: str, project_root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.Popen([sys.executable, "-c", child_script(body), str(project_root), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_line(child: subprocess.Popen, prefix: str, count: int = 1) -> list[str]:
    """Read the child's stdout until ``count`` lines start with ``prefix``."""
    seen = []
    while len(seen) < count:
        line = child.stdout.readline()
        if not line:
            raise AssertionError(f"child ended before printing {prefix!r}: {child.stderr.read()}")
        if line.startswith(prefix):
            seen.append(line.strip())
    return seen


def kill9(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    child.stdout.close()
    child.stderr.close()


@pytest.fixture
def project(tmp_path):
    rng = np.random.default_rng(0)
    for case_id in ("a", "b"):
        write_volume(tmp_path / f"{case_id}.nii.gz", Volume.from_array(
            rng.normal(size=SHAPE).astype(np.float32), spacing=(1.5, 0.7, 0.7)))
    with Project.create(tmp_path / "proj") as project:
        project.add_case("a", tmp_path / "a.nii.gz")
        project.add_case("b", tmp_path / "b.nii.gz")
        yield project


def assert_consistent(root: Path) -> Project:
    """Reopen after a kill: catalogue sound, every row's file present with its hash, every
    version readable and equal to what its writer saved."""
    project = Project.open(root)
    assert project.integrity_check() == ["ok"]
    assert project.check() == []
    for version in project.label_versions():
        seed = int(version.note.split("=")[1])
        np.testing.assert_array_equal(project.load_label(version.id), labels_of(seed))
    return project


def unreferenced_label_files(project: Project) -> list[Path]:
    referenced = {v.path for v in project.label_versions()}
    return [p for p in (project.root / "labels").rglob("*") if p.is_file() and p not in referenced]


SAVE_FOREVER = """
    seed = int(sys.argv[2])
    parent = None
    while True:
        version = project.save_label("a", labels_of(seed), "corrected", parent_id=parent,
                                     note=f"seed={seed}")
        print("saved", version.id, flush=True)
        parent, seed = version.id, seed + 1
"""


def test_kill9_at_random_moments_during_saves(project):
    rng = random.Random(1234)
    saved_before = []
    for round_ in range(4):
        child = start_child(SAVE_FOREVER, project.root, str(1000 * (round_ + 1)))
        wait_for_line(child, "saved", count=2)
        time.sleep(rng.uniform(0.0, 0.05))  # land anywhere inside the next saves
        kill9(child)
        reopened = assert_consistent(project.root)
        versions = reopened.label_versions("a")
        # Everything committed before stays, untouched.
        assert [(v.id, v.sha256) for v in versions[:len(saved_before)]] == saved_before
        saved_before = [(v.id, v.sha256) for v in versions]
        reopened.collect_garbage()
        assert unreferenced_label_files(reopened) == []
        # Leftover temporaries are in the trash (garbage collection never deletes), nowhere else.
        assert not [p for p in reopened.root.rglob(".*part*") if "trash" not in p.relative_to(reopened.root).parts]
        reopened.close()
    assert len(saved_before) >= 8


def test_kill9_after_the_file_is_written_but_before_its_row(project):
    kept = project.save_label("a", labels_of(1), "gold", note="seed=1")
    child = start_child("""
        from napari_semiseg.project import _labels
        def stuck(conn, values):
            print("file written", flush=True)
            time.sleep(600)
        _labels.LabelStore._insert_label_row = staticmethod(stuck)
        project.save_label("a", labels_of(2), "corrected", parent_id=1, note="seed=2")
    """, project.root)
    wait_for_line(child, "file written")
    kill9(child)
    reopened = assert_consistent(project.root)
    assert [v.id for v in reopened.label_versions("a")] == [kept.id]
    leftovers = unreferenced_label_files(reopened)
    assert len(leftovers) == 1  # the killed save's file: no row names it
    # The write lock the killed process held is gone: others write at once.
    reopened.save_label("b", labels_of(3), "gold", note="seed=3")
    assert leftovers[0] in reopened.collect_garbage()
    assert unreferenced_label_files(reopened) == [] and kept.path.exists()
    assert_consistent(project.root)


def test_kill9_while_the_temporary_file_is_being_written(project):
    kept = project.save_label("a", labels_of(1), "gold", note="seed=1")
    child = start_child("""
        import SimpleITK as sitk
        real_write = sitk.WriteImage
        def half_written(image, path, *args, **kwargs):
            real_write(image, path, *args, **kwargs)
            with open(path, "r+b") as handle:
                handle.truncate(40)
            print("writing", path, flush=True)
            time.sleep(600)
        sitk.WriteImage = half_written
        project.save_label("a", labels_of(2), "corrected", note="seed=2")
    """, project.root)
    line = wait_for_line(child, "writing")[0]
    kill9(child)
    partial = Path(line.split(" ", 1)[1])
    assert partial.exists() and ".part" in partial.name
    reopened = assert_consistent(project.root)
    assert [v.id for v in reopened.label_versions("a")] == [kept.id]
    assert partial in reopened.collect_garbage()
    assert not partial.exists() and unreferenced_label_files(reopened) == []


WRITE_N = """
    name, count = sys.argv[2], int(sys.argv[3])
    start = Path(sys.argv[4])
    while not start.exists():
        time.sleep(0.005)
    for i in range(count):
        seed = (10_000 if name == "one" else 20_000) + i
        case = "a" if i % 2 else "b"
        version = project.save_label(case, labels_of(seed), "corrected", author=name,
                                     note=f"seed={seed}")
    print("done", flush=True)
"""

COLLECT_GARBAGE_LOOP = """
    start = Path(sys.argv[2])
    while not start.exists():
        time.sleep(0.005)
    while True:
        project.collect_garbage()
        time.sleep(0.002)
"""


def test_two_processes_write_at_once_and_lose_nothing(project, tmp_path):
    start = tmp_path / "go"
    body = "from pathlib import Path\n" + textwrap.dedent(WRITE_N)
    writers = [start_child(body, project.root, name, "12", str(start)) for name in ("one", "two")]
    # A third process collects garbage all the while: it must never take a file being saved.
    collector = start_child("from pathlib import Path\n" + textwrap.dedent(COLLECT_GARBAGE_LOOP),
                            project.root, str(start))
    time.sleep(1.0)  # let the children import and open the project
    start.touch()
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        assert "done" in out
    kill9(collector)
    reopened = assert_consistent(project.root)
    versions = reopened.label_versions()
    assert len(versions) == 24
    assert sorted(v.author for v in versions) == ["one"] * 12 + ["two"] * 12
    assert {v.case_id for v in versions} == {"a", "b"}
    assert unreferenced_label_files(reopened) == []
