"""The ``semiseg`` command as a user runs it: a real subprocess (``python -m napari_semiseg.cli``),
its stdout, stderr and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_semiseg.cli import main
from napari_semiseg.io import Volume, write_label, write_volume
from napari_semiseg.project import Project

REPOSITORY = Path(__file__).resolve().parents[2]


def semiseg(*args, env_project: Path | None = None, cwd: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k != "SEMISEG_PROJECT"}
    env["PYTHONPATH"] = str(REPOSITORY)
    if env_project is not None:
        env["SEMISEG_PROJECT"] = str(env_project)
    return subprocess.run([sys.executable, "-m", "napari_semiseg.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("semiseg: error:") or result.stderr.startswith("usage:")
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture
def volumes(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        volume = Volume.from_array(rng.normal(size=(4, 6, 8)).astype(np.float32),
                                   spacing=(2.0, 0.5, 0.5))
        write_volume(images / f"img{i}.nii.gz", volume)
        if i == 0:
            labels_array = np.zeros(volume.shape, np.uint8)
            labels_array[1:3, 1:3, 1:3] = 1
            write_label(labels / f"img{i}_seg.nii.gz", labels_array, volume.geometry)
    return images, labels


def table_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.strip().splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}
    return {line.split()[0]: line.split() for line in lines[2:-1]}


def test_init_import_cases_on_a_folder(tmp_path, volumes):
    images, labels = volumes
    project = tmp_path / "proj"
    created = semiseg("init", project)
    assert created.returncode == 0 and "created project" in created.stdout
    imported = semiseg("import", project, images, "--labels", labels, "--modality", "CT")
    assert imported.returncode == 0, imported.stderr
    assert "added 3 cases (1 gold label); 0 already present" in imported.stdout
    listed = semiseg("cases", project)
    assert listed.returncode == 0
    rows = table_rows(listed.stdout)
    assert rows["img0"] == ["img0", "4x6x8", "2x0.5x0.5", "CT", "labelled", "gold", "1"]
    assert rows["img2"] == ["img2", "4x6x8", "2x0.5x0.5", "CT", "unlabelled", "-", "0"]
    assert listed.stdout.strip().splitlines()[-1] == "3 cases: 1 gold, 2 unlabelled"
    again = semiseg("import", project, images, "--labels", labels)
    assert "added 0 cases (0 gold labels); 3 already present" in again.stdout


def test_project_from_the_environment(tmp_path, volumes):
    images, _ = volumes
    project = tmp_path / "envproj"
    assert semiseg("init", env_project=project).returncode == 0
    assert semiseg("import", images, env_project=project).returncode == 0
    listed = semiseg("cases", "--json", env_project=project)
    cases = json.loads(listed.stdout)
    assert [c["id"] for c in cases] == ["img0", "img1", "img2"]
    assert cases[0]["shape"] == [4, 6, 8] and cases[0]["latest_kind"] is None


def test_la_import_from_the_command_line(tmp_path):
    root = tmp_path / "LA"
    ids = ["P1", "P2", "P3", "P4"]
    for i, case_id in enumerate(ids):
        folder = root / "2018LA_Seg_Training Set" / case_id
        folder.mkdir(parents=True)
        with h5py.File(folder / "mri_norm2.h5", "w") as handle:
            handle["image"] = np.random.default_rng(i).normal(size=(12, 10, 6)).astype(np.float32)
            handle["label"] = np.ones((12, 10, 6), np.uint8)
    (root / "train.list").write_text("\n".join(ids))
    project = tmp_path / "la"
    semiseg("init", project)
    imported = semiseg("import", project, "--la-h5", root, "--list", root / "train.list",
                       "--labelled", 1)  # the documented spelling; --labeled below is its alias
    assert imported.returncode == 0, imported.stderr
    listed = semiseg("cases", project)
    rows = table_rows(listed.stdout)
    assert rows["P1"][1:] == ["6x10x12", "0.625", "MR", "labelled", "gold", "1"]
    assert rows["P4"][4:] == ["unlabelled", "-", "0"]
    assert listed.stdout.strip().splitlines()[-1] == "4 cases: 1 gold, 3 unlabelled"
    assert_user_error(semiseg("import", project, "--la-h5", root, "--labeled", 9),
                      "--labelled 9 is outside 0..4")
    assert_user_error(semiseg("import", project, "--la-h5", root), "needs --labelled N")
    assert_user_error(semiseg("import", project, root), "no volumes found", "--la-h5 ROOT")


def test_user_errors_exit_2_without_traceback(tmp_path, volumes):
    images, _ = volumes
    assert_user_error(semiseg("cases", tmp_path / "nowhere"), "no such project folder")
    assert_user_error(semiseg("cases"), "no project given", "SEMISEG_PROJECT")
    (tmp_path / "plain").mkdir()
    assert_user_error(semiseg("cases", tmp_path / "plain"), "not a napari-semiseg project")
    semiseg("init", tmp_path / "p")
    assert_user_error(semiseg("init", tmp_path / "p"), "already a napari-semiseg project")
    assert_user_error(semiseg("import", tmp_path / "p", tmp_path / "nothing"),
                      "images folder does not exist")
    assert_user_error(semiseg("import", tmp_path / "p", images, "--labeled", 2),
                      "go with --la-h5")
    assert_user_error(semiseg("frobnicate"), "invalid choice")
    assert semiseg("cases", tmp_path / "p").stdout.strip() == "0 cases"


def test_check_finds_a_damaged_label_and_collects_garbage(tmp_path, volumes):
    images, labels = volumes
    root = tmp_path / "proj"
    semiseg("init", root)
    semiseg("import", root, images, "--labels", labels)
    ok = semiseg("check", root)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("0 problems found")
    with Project.open(root) as project:
        gold = project.label_versions()[0]
    leftover = gold.path.with_name(".gold-x.123.part.nii.gz")
    leftover.write_bytes(b"half")
    cleaned = semiseg("check", root, "--collect-garbage")
    assert "moved 1 file no catalogue row names to" in cleaned.stdout and not leftover.exists()
    gold.path.write_bytes(b"damaged")
    damaged = semiseg("check", root)
    assert damaged.returncode == 1 and "differs from the recorded SHA-256" in damaged.stdout


def test_main_returns_status_in_process(tmp_path, capsys):
    assert main(["init", str(tmp_path / "q")]) == 0
    assert main(["cases", str(tmp_path / "absent")]) == 2
    assert "no such project folder" in capsys.readouterr().err
    assert main(["--version"]) == 0


def test_la_benchmark_imports_80_cases_8_gold(tmp_path, shared_data):
    root = shared_data / "LA" / "2018LA_Seg_Training Set"
    project = tmp_path / "la"
    semiseg("init", project)
    imported = semiseg("import", project, "--la-h5", root, "--list",
                       shared_data / "LA" / "train.list", "--labeled", 8)
    assert imported.returncode == 0, imported.stderr
    listed = semiseg("cases", project)
    assert listed.returncode == 0
    rows = table_rows(listed.stdout)
    assert len(rows) == 80
    assert listed.stdout.strip().splitlines()[-1] == "80 cases: 8 gold, 72 unlabelled"
    shapes = [tuple(int(n) for n in row[1].split("x")) for row in rows.values()]
    assert all(shape[0] == 88 for shape in shapes)  # z first
    assert all(row[2] == "0.625" for row in rows.values())
    first_eight = (shared_data / "LA" / "train.list").read_text().split()[:8]
    assert all(rows[case_id][4:6] == ["labelled", "gold"] for case_id in first_eight)
