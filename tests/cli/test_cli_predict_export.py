"""A researcher's day in the shell (issue 17 §2): ``semiseg predict`` on a folder of NIfTI files
with a model file and no project, ``semiseg export`` of a case's results, ``semiseg split``, and
progress with an ETA in a log. Real subprocesses on the tiny LA project; one short training run
for the module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_support import SHAPE, blob, image_of, la_root, new_project, ok, semiseg  # noqa: F401 (fixture)
from data_factory import make_volume
from napari_semiseg.cli import main
from napari_semiseg.io import read_volume, write_volume
from napari_semiseg.project import Project


@pytest.fixture(scope="module")
def trained(tmp_path_factory, la_root):
    """A project whose model predicted case3 (a prediction version and its soft label), and a
    copy of the run's model.pt outside any project."""
    project = new_project(tmp_path_factory.mktemp("trained") / "proj", la_root)
    training = ok(semiseg("train", project, "--card", "cpu-small", "--method", "supervised", "--iterations", 2,
                          "--validation-count", 1, "--device", "cpu"))
    ok(semiseg("infer", project, "--case", "case3", "--device", "cpu"))
    (run_model,) = project.glob("runs/*/model.pt")
    model_file = shutil.copy(run_model, tmp_path_factory.mktemp("elsewhere") / "model.pt")
    return project, Path(model_file), training


def nifti_folder(folder: Path, names: tuple[str, ...]) -> dict[str, object]:
    """NIfTI volumes on an oblique grid with odd spacing and origin, by name."""
    folder.mkdir()
    volumes = {}
    for seed, name in enumerate(names):
        volume = make_volume(shape=SHAPE).with_array(image_of(blob(seed), seed))
        write_volume(folder / f"{name}.nii.gz", volume)
        volumes[name] = volume
    return volumes


def test_predict_a_folder_of_nifti_with_a_model_file_and_no_project(trained, tmp_path):
    _, model_file, _ = trained
    sources = nifti_folder(tmp_path / "in", ("scan_a", "scan_b"))
    result = ok(semiseg("predict", "-i", tmp_path / "in", "-o", tmp_path / "out", "--model", model_file,
                        "--device", "cpu"))
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {f"{name}{suffix}.nii.gz" for name in sources for suffix in ("", "_softlabel", "_uncertainty")}
    for name, source in sources.items():
        label = read_volume(tmp_path / "out" / f"{name}.nii.gz")
        assert label.geometry.matches(source.geometry), name
        assert set(np.unique(label.array)) <= {0, 1}
        for suffix in ("_softlabel", "_uncertainty"):
            assert read_volume(tmp_path / "out" / f"{name}{suffix}.nii.gz").geometry.matches(source.geometry)
    assert "scan_a" in result.stdout and "scan_b" in result.stdout
    # In a log (stderr is a pipe here) progress lines carry the elapsed time and an ETA.
    progress = [line for line in result.stderr.splitlines() if line.startswith("predicting ")]
    assert progress and all("ETA" in line and "elapsed" in line for line in progress), result.stderr
    assert progress[-1].startswith("predicting 100%"), progress


def test_predict_names_a_bad_file_and_writes_the_good_ones(trained, tmp_path):
    project, _, _ = trained
    nifti_folder(tmp_path / "in", ("good",))
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"not a volume at all")
    result = semiseg("predict", "-i", tmp_path / "in", "-o", tmp_path / "out", "--project", project,
                     "--model", 1, "--device", "cpu", "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{broken}: " in result.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"good.nii.gz", "good_softlabel.nii.gz",
                                                                "good_uncertainty.nii.gz"}
    summary = json.loads(result.stdout)
    assert [Path(p["input"]).name for p in summary["predicted"]] == ["good.nii.gz"]
    assert summary["failed"] == [str(broken)]


def test_predict_without_any_model_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEMISEG_PROJECT", raising=False)
    nifti_folder(tmp_path / "in", ("one",))
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2 and "Traceback" not in stderr
    assert "--model" in stderr and not (tmp_path / "out").exists()


def test_export_writes_label_soft_label_and_uncertainty_on_the_image_grid(trained, tmp_path):
    project, _, _ = trained
    result = ok(semiseg("export", project, "--case", "case3", "-o", tmp_path / "out"))
    names = ("case3_label.nii.gz", "case3_softlabel.nii.gz", "case3_uncertainty.nii.gz")
    assert {p.name for p in (tmp_path / "out").iterdir()} == set(names)
    with Project.open(project) as store:
        image = store.load_image("case3")
        version = store.latest_label("case3")
        stored_label = store.load_label(version.id)
        probabilities = store.load_soft_label(store.soft_label_for(version.id))
    label, soft, uncertainty = (read_volume(tmp_path / "out" / name) for name in names)
    for volume in (label, soft, uncertainty):
        assert volume.geometry.matches(image.geometry)
    np.testing.assert_array_equal(label.array, stored_label)
    assert soft.array.dtype == np.float32
    np.testing.assert_allclose(soft.array, probabilities[1], atol=1e-6)
    # the uncertainty is the normalised entropy of the stored probabilities (0 sure .. 1 torn)
    p = probabilities.astype(np.float64)
    entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=0) / np.log(2)
    np.testing.assert_allclose(uncertainty.array, entropy, atol=1e-4)
    assert "case3" in result.stdout


def test_split_moves_cases_and_a_bad_case_id_exits_2_naming_it(la_root, tmp_path):
    project = new_project(tmp_path / "proj", la_root)
    ok(semiseg("split", project, "case2", "case3", "--to", "validation"))
    ok(semiseg("split", project, "case0", "--to", "test"))
    with Project.open(project) as store:
        splits = {case.id: case.split for case in store.cases()}
    assert splits == {"case0": "test", "case1": "labelled", "case2": "validation", "case3": "validation"}
    # "train" means labelled for a case with a gold label, unlabelled otherwise
    moved = json.loads(ok(semiseg("split", project, "case0", "case3", "--to", "train", "--json")).stdout)
    assert [(m["case"], m["from"], m["to"]) for m in moved] == [("case0", "test", "labelled"),
                                                                 ("case3", "validation", "unlabelled")]
    bad = semiseg("split", project, "case1", "no-such-case", "--to", "test")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "'no-such-case'" in bad.stderr
    with Project.open(project) as store:
        assert store.case("case1").split == "labelled", "nothing moves when one id is unknown"


def test_long_commands_print_elapsed_and_eta_lines_in_a_log(trained):
    """Training and pseudo-labelling, their stderr a pipe as in a log: lines with an ETA, not a
    redrawn terminal line."""
    project, _, training = trained
    steps = [line for line in training.stderr.splitlines() if line.startswith("iteration ")]
    assert steps and all("elapsed" in line and "ETA" in line for line in steps), training.stderr
    pseudo = ok(semiseg("pseudo-label", project, "--cases", "case3", "--device", "cpu"))
    lines = [line for line in pseudo.stderr.splitlines() if line.startswith("pseudo-labelling ")]
    assert lines and lines[-1].startswith("pseudo-labelling 100% case 1/1 case3: elapsed"), pseudo.stderr
    assert all("ETA" in line for line in lines) and "\r" not in pseudo.stderr


def test_tables_come_as_json_when_asked(trained):
    project, _, _ = trained
    (model,) = json.loads(ok(semiseg("models", project, "--json")).stdout)
    assert (model["id"], model["method"], model["active"]) == (1, "supervised", True)
    ranking = json.loads(ok(semiseg("next-case", project, "--all", "--json")).stdout)
    assert [entry["rank"] for entry in ranking] == list(range(1, len(ranking) + 1))
    assert "case3" in [entry["case"] for entry in ranking]
