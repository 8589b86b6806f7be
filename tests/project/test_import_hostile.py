"""Files a careless or hostile user imports: truncated, NaN/inf, not real numbers, headers
pointing elsewhere. Each is refused by name at import and nothing of it enters the project; a
folder import goes on with the good files; pseudo-labelling and inference go on past a case
whose image file went bad after import. Real files, real SQLite, real ``semiseg`` processes
(pseudo-labelling and inference run their command lines in this process: torch is imported once)."""

from __future__ import annotations

import re
import sqlite3

import numpy as np
import pytest
import SimpleITK as sitk
from data_factory import folder_snapshot, make_label, make_volume, truncate, write_case, write_la_h5

from napari_semiseg.cli import main
from napari_semiseg.errors import VolumeError
from napari_semiseg.io import Volume, read_volume, write_volume
from napari_semiseg.project import Project, import_la
from cli_support import semiseg, semiseg_here
from pseudo_support import make_project, register_tiny_model

SHAPE = (8, 12, 16)


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "proj") as project:
        yield project


def with_bad_voxels(value: float, seed: int = 0) -> Volume:
    volume = make_volume(shape=SHAPE, seed=seed)
    array = volume.array.copy()
    array[2, 3, 4:7] = value
    return volume.with_array(array)


def assert_refused(project, path, case_id, *words, copy=True):
    """``add_case`` raises "PATH: ..." with ``words``; no row, no copied file is left."""
    with pytest.raises(VolumeError) as caught:
        project.add_case(case_id, path, copy=copy)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    assert project.cases() == []
    assert folder_snapshot(project.root / "images") == {}
    with sqlite3.connect(project.root / "project.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM cases").fetchone() == (0,)


# -- one file, refused by name -----------------------------------------------------------------

@pytest.mark.parametrize("fmt, words", [("nii", "truncated"), ("nii.gz", "truncated"),
                                        ("nrrd", "cannot be read as NRRD"),
                                        ("mha", "cannot be read as MetaImage")])
def test_a_truncated_file_is_refused_and_nothing_is_added(project, tmp_path, fmt, words):
    path = truncate(write_case(tmp_path / "in", fmt, make_volume(shape=SHAPE)), 0.6)
    assert_refused(project, path, "cut", words)


@pytest.mark.parametrize("fmt", ["nii.gz", "nrrd", "h5"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_voxels_are_refused(project, tmp_path, fmt, value):
    path = write_case(tmp_path / "in", fmt, with_bad_voxels(value))
    assert_refused(project, path, "bad", "3 of", "not finite")


@pytest.mark.parametrize("image, words", [
    (np.full(SHAPE, b"ab", dtype="S2"), "image voxels are text"),
    (np.full(SHAPE, 1 + 2j, dtype=np.complex64), "image voxels are complex numbers"),
], ids=["text", "complex"])
def test_an_h5_image_that_is_not_real_numbers_is_refused_with_a_message(project, tmp_path, image,
                                                                           words):
    path = write_la_h5(tmp_path / "mri_norm2.h5", image)
    assert_refused(project, path, "h5", words, "real numbers is needed")


def test_a_complex_nifti_is_refused_too(project, tmp_path):
    volume = make_volume(shape=SHAPE)
    path = tmp_path / "complex.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(volume.array.astype(np.complex64)), str(path))
    assert_refused(project, path, "c", "complex numbers")


MHD = ("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
       "ElementDataFile = {}\n")
NHDR = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: {}\n"


@pytest.mark.parametrize("suffix, header, data_file", [
    (".mhd", MHD, "/etc/passwd"),
    (".mhd", MHD, "../../outside.raw"),
    (".mhd", MHD, "LIST 2D\nslice0.raw\n/etc/passwd"),
    (".nhdr", NHDR, "/etc/passwd"),
    (".nhdr", NHDR, "../../outside.raw"),
], ids=["mhd-absolute", "mhd-parent", "mhd-list", "nhdr-absolute", "nhdr-parent"])
def test_a_header_naming_a_data_file_outside_its_folder_is_refused(project, tmp_path, suffix,
                                                                   header, data_file):
    (tmp_path / "outside.raw").write_bytes(bytes(range(64)))
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "slice0.raw").write_bytes(bytes(16))
    path = tmp_path / "a" / "b" / f"crafted{suffix}"
    path.write_text(header.format(data_file))
    named = data_file.splitlines()[-1]
    assert_refused(project, path, "crafted", f"names data file {named!r} outside its own folder")
    with pytest.raises(VolumeError, match="outside its own folder"):
        read_volume(path)


def test_a_copied_mhd_keeps_its_data_file(project, tmp_path):
    volume = make_volume(shape=SHAPE)
    path = write_case(tmp_path / "in", "mhd", volume)
    project.add_case("m", path, copy=True)
    np.testing.assert_array_equal(project.load_image("m").array, volume.array)
    copied = project.case("m").image_path
    assert project.root in copied.parents and (copied.parent / "case.raw").is_file()


# -- a folder import goes on past bad files ----------------------------------------------------

@pytest.fixture
def mixed_folder(tmp_path):
    """Good and bad volumes side by side, with labels for one good and one bad-label case."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    write_case(images, "nii.gz", make_volume(shape=SHAPE, seed=1), name="good1")
    write_case(images, "mha", make_volume(shape=SHAPE, seed=2), name="good2")
    write_case(images, "nii.gz", make_volume(shape=SHAPE, seed=3), name="badlabel")
    write_case(images, "nii.gz", with_bad_voxels(np.nan), name="nan")
    truncate(write_case(images, "nrrd", make_volume(shape=SHAPE, seed=4), name="cut"), 0.5)
    (images / "crafted.mhd").write_text(MHD.format("/etc/passwd"))
    labels.mkdir()
    write_volume(labels / "good1.nii.gz", Volume(make_label(SHAPE).astype(np.float32),
                                                 make_volume(shape=SHAPE).geometry))
    nan_label = make_label(SHAPE).astype(np.float32)
    nan_label[0, 0, 0] = np.nan
    write_volume(labels / "badlabel.nii.gz", Volume(nan_label, make_volume(shape=SHAPE).geometry))
    return images, labels


def test_folder_import_adds_the_good_files_and_lists_the_bad_ones(tmp_path, mixed_folder):
    images, labels = mixed_folder
    folder = tmp_path / "proj"
    assert semiseg("init", folder).returncode == 0

    result = semiseg("import", folder, images, "--labels", labels, "--copy")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"{folder.resolve()}: added 2 cases (1 gold label); 0 already present; "
                        "4 files refused")
    assert lines[1] == "refused (nothing of these cases was added):"
    refused = {line.strip().split(": ")[0]: line for line in lines[2:]}
    assert sorted(refused) == [str(images / "crafted.mhd"), str(images / "cut.nrrd"),
                               str(images / "nan.nii.gz"), str(labels / "badlabel.nii.gz")]
    assert "non-integer values" in refused[str(labels / "badlabel.nii.gz")]
    assert "'/etc/passwd' outside its own folder" in refused[str(images / "crafted.mhd")]
    assert "cannot be read as NRRD" in refused[str(images / "cut.nrrd")]
    assert "not finite" in refused[str(images / "nan.nii.gz")]
    with Project.open(folder) as project:
        assert project.case_ids() == ["good1", "good2"]
        assert [v.case_id for v in project.label_versions()] == ["good1"]
        copied = sorted(path.parts[-3] for path in (folder / "images").rglob("*") if path.is_file())
    assert copied == ["good1", "good2"]  # no file of a refused case was copied in

    again = semiseg("import", folder, images, "--labels", labels)
    assert again.returncode == 1
    assert again.stdout.startswith(f"{folder.resolve()}: added 0 cases (0 gold labels); "
                                   "2 already present; 4 files refused")


def test_la_import_goes_on_past_a_nan_volume(project, tmp_path):
    root = tmp_path / "LA"
    for case_id, seed in (("A", 1), ("B", 2), ("C", 3)):
        volume = (with_bad_voxels(np.nan, seed) if case_id == "B"
                  else make_volume(shape=SHAPE, seed=seed))
        (root / case_id).mkdir(parents=True)
        write_la_h5(root / case_id / "mri_norm2.h5", volume.array, make_label(SHAPE, n_classes=2))
    (root / "train.list").write_text("A\nB\nC\n")

    report = import_la(project, root, root / "train.list", labeled=2)

    assert report.added == ["A", "C"] and report.gold_added == ["A"]
    assert [(r.case_id, r.path) for r in report.refused] == [("B", root / "B" / "mri_norm2.h5")]
    assert "not finite" in report.refused[0].message
    assert project.case_ids() == ["A", "C"]


# -- a case whose image went bad after import ---------------------------------------------------

@pytest.fixture
def spoiled_project(tmp_path):
    """Three unlabelled cases u0..u2 and a model; u1's image file then replaced by a NaN one."""
    with make_project(tmp_path, unlabelled=3, labelled=0) as project:
        register_tiny_model(project, tmp_path)
        image_path = project.case("u1").image_path
        root = project.root
    spoiled = read_volume(image_path)
    array = spoiled.array.copy()
    array[5, 5, 5] = np.nan
    write_volume(image_path, spoiled.with_array(array))
    return root, image_path


def test_pseudo_label_labels_the_good_cases_and_reports_the_bad_one(spoiled_project):
    root, image_path = spoiled_project

    result = semiseg_here("pseudo-label", root, "--device", "cpu")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"semiseg: u1: {image_path}: 1 of " in result.stderr and "not finite" in result.stderr
    assert result.stderr.rstrip().endswith("1 case could not be labelled: u1")
    assert [line.split()[0] for line in result.stdout.splitlines()[2:4]] == ["u0", "u2"]
    assert re.search(r"pseudo-labelled 2/3 cases", result.stdout)
    with Project.open(root) as project:
        assert [project.latest_label(c).kind for c in ("u0", "u2")] == ["pseudo", "pseudo"]
        assert project.label_versions("u1") == [] and project.soft_labels(case_id="u1") == []
        run = project.runs("pseudo-label")[-1]
    assert run.status == "completed"
    assert [f["case_id"] for f in run.result["failed"]] == ["u1"]


def test_infer_all_predicts_the_good_cases_and_reports_the_bad_one(spoiled_project, capsys):
    root, image_path = spoiled_project

    status = main(["infer", str(root), "--all", "--device", "cpu"])

    assert status == 1
    captured = capsys.readouterr()
    assert f"semiseg: u1: {image_path}: 1 of " in captured.err
    assert captured.err.rstrip().endswith("1 of 3 volumes could not be predicted: u1")
    assert [line.split()[0] for line in captured.out.splitlines()[2:]] == ["u0", "u2"]
    with Project.open(root) as project:
        assert [project.latest_label(c).kind for c in ("u0", "u2")] == ["prediction"] * 2
        assert project.label_versions("u1") == []
