"""Importing into a project: a folder of volumes with labels matched by name, and the LA layout
(h5 files + list file, the first N labelled), on small synthetic files written for real."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from napari_semiseg.errors import ProjectError, VolumeError
from napari_semiseg.io import Volume, read_volume, write_label, write_volume
from napari_semiseg.project import Project, case_id_of, import_folder, import_la
from napari_semiseg.project._headers import read_geometry

SPACING = (3.0, 0.9, 0.8)
ORIGIN = (5.0, -2.0, 7.5)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def image(shape=(5, 7, 9), seed=0, spacing=SPACING):
    rng = np.random.default_rng(seed)
    return Volume.from_array(rng.normal(size=shape).astype(np.float32), spacing=spacing,
                             origin=ORIGIN, direction=DIRECTION)


def label_for(volume, value=1):
    labels = np.zeros(volume.shape, np.uint8)
    labels[1:3, 2:5, 3:6] = value
    return labels


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "proj") as project:
        yield project


@pytest.fixture
def msd_folder(tmp_path):
    """imagesTr/ and labelsTr/ in the MSD/nnU-Net layout, plus the naming variants we accept."""
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    images.mkdir()
    labels.mkdir()
    volumes = {"hip_001": image(seed=1), "hip_002": image(seed=2, shape=(6, 7, 9)),
               "hip_003": image(seed=3), "hip_004": image(seed=4)}
    write_volume(images / "hip_001.nii.gz", volumes["hip_001"])
    write_volume(images / "hip_002_0000.nii.gz", volumes["hip_002"])  # nnU-Net channel tag
    write_volume(images / "hip_003.nrrd", volumes["hip_003"])
    write_volume(images / "hip_004.mha", volumes["hip_004"])
    (images / "notes.txt").write_text("not a volume")
    for name, case_id, value in [("hip_001.nii.gz", "hip_001", 1),
                                 ("hip_002_seg.nii.gz", "hip_002", 2),
                                 ("hip_099.nii.gz", "hip_001", 1)]:
        write_label(labels / name, label_for(volumes[case_id], value), volumes[case_id].geometry)
    return images, labels, volumes


# -- headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_header_geometry_equals_the_full_read(tmp_path, suffix):
    path = tmp_path / f"vol{suffix}"
    write_volume(path, image())
    assert read_geometry(path) == read_volume(path).geometry


def test_header_geometry_of_an_la_h5_file_equals_the_full_read(tmp_path):
    path = tmp_path / "mri_norm2.h5"
    write_la_h5(path, (20, 14, 8), seed=0)
    assert read_geometry(path) == read_volume(path).geometry
    assert read_geometry(path).shape == (8, 14, 20)


def test_header_read_reports_bad_files_like_the_full_read(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"not a nifti file at all")
    with pytest.raises(VolumeError, match="broken.nii.gz"):
        read_geometry(path)


@pytest.mark.parametrize("name, case_id", [("a.nii.gz", "a"), ("a_0000.nii.gz", "a"),
                                           ("a.b.nrrd", "a.b"), ("x_seg.mha", "x_seg")])
def test_case_ids_come_from_file_names(tmp_path, name, case_id):
    path = tmp_path / name
    path.write_bytes(b"")
    assert case_id_of(path) == case_id


# -- a folder of volumes ----------------------------------------------------------------------

def test_import_folder_matches_labels_by_name(project, msd_folder):
    images, labels, volumes = msd_folder
    report = import_folder(project, images, labels, modality="MR")
    assert report.added == ["hip_001", "hip_002", "hip_003", "hip_004"]
    assert report.gold_added == ["hip_001", "hip_002"]
    assert [p.name for p in report.unmatched_labels] == ["hip_099.nii.gz"]
    cases = {c.id: c for c in project.cases()}
    assert {k: (c.split, c.latest_kind, c.n_versions) for k, c in cases.items()} == {
        "hip_001": ("labelled", "gold", 1), "hip_002": ("labelled", "gold", 1),
        "hip_003": ("unlabelled", None, 0), "hip_004": ("unlabelled", None, 0)}
    assert cases["hip_002"].shape == (6, 7, 9)
    assert cases["hip_003"].spacing == pytest.approx(SPACING)
    gold = project.latest_label("hip_002", kinds="gold")
    np.testing.assert_array_equal(project.load_label(gold.id), label_for(volumes["hip_002"], 2))
    loaded = project.load_image("hip_004")
    assert loaded.geometry.matches(volumes["hip_004"].geometry)
    np.testing.assert_array_equal(loaded.array, volumes["hip_004"].array)


def test_import_folder_twice_adds_nothing(project, msd_folder):
    images, labels, _ = msd_folder
    import_folder(project, images, labels)
    again = import_folder(project, images, labels)
    assert again.added == [] and again.gold_added == []
    assert again.already_present == ["hip_001", "hip_002", "hip_003", "hip_004"]
    assert len(project.cases()) == 4 and len(project.label_versions()) == 2


def test_import_folder_with_labels_beside_the_images(tmp_path, project):
    folder = tmp_path / "mixed"
    folder.mkdir()
    volume = image()
    write_volume(folder / "ct.nii.gz", volume)
    write_label(folder / "ct_seg.nii.gz", label_for(volume, 7), volume.geometry)
    report = import_folder(project, folder, folder, modality="CT")
    assert report.added == ["ct"] and report.gold_added == ["ct"]
    assert project.case("ct").modality == "CT"


def test_import_folder_copies_images_in_when_asked(tmp_path, project, msd_folder):
    images, _, volumes = msd_folder
    import_folder(project, images, pattern="hip_00[34].*", copy=True)
    assert project.case_ids() == ["hip_003", "hip_004"]
    for case_id in project.case_ids():
        assert project.root in project.case(case_id).image_path.parents
    assert project.load_image("hip_003").geometry.matches(volumes["hip_003"].geometry)


def write_dicom_series(folder, array, spacing_zyx):
    """A minimal DICOM series (one file per z slice) written by SimpleITK."""
    import SimpleITK as sitk
    folder.mkdir()
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(spacing_zyx)))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.7"
    for z in range(array.shape[0]):
        slice_ = image[:, :, z]
        for tag, value in {"0020|000d": uid + ".1", "0020|000e": uid + ".2", "0008|0060": "CT",
                           "0020|0032": f"0\\0\\{spacing_zyx[0] * z:g}", "0020|0013": str(z),
                           "0028|0030": f"{spacing_zyx[1]:g}\\{spacing_zyx[2]:g}",
                           "0020|0037": "1\\0\\0\\0\\1\\0"}.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_)


def test_import_folder_takes_a_dicom_series_folder_as_a_case(tmp_path, project):
    images = tmp_path / "scans"
    images.mkdir()
    array = (np.arange(4 * 6 * 8).reshape(4, 6, 8) % 50).astype(np.int16)
    write_dicom_series(images / "patient7", array, (2.5, 0.8, 0.7))
    (images / "empty_folder").mkdir()
    report = import_folder(project, images, modality="CT")
    assert report.added == ["patient7"]
    case = project.case("patient7")
    assert case.geometry.shape == (4, 6, 8)
    assert case.geometry.spacing == pytest.approx((2.5, 0.8, 0.7))
    np.testing.assert_array_equal(project.load_image("patient7").array, array)


def test_import_folder_refuses_a_label_on_another_grid_and_imports_nothing(project, msd_folder):
    images, labels, volumes = msd_folder
    shifted = image(spacing=(3.0, 0.9, 0.5))
    write_label(labels / "hip_004.nii.gz", label_for(shifted), shifted.geometry)
    with pytest.raises(ProjectError, match=r"hip_004.nii.gz: label does not lie on the grid.*spac"):
        import_folder(project, images, labels)
    assert project.cases() == []


def test_import_folder_refuses_two_labels_for_one_case(project, msd_folder):
    images, labels, volumes = msd_folder
    write_label(labels / "hip_001_mask.nii.gz", label_for(volumes["hip_001"]),
                volumes["hip_001"].geometry)
    with pytest.raises(ProjectError, match="both labels of case 'hip_001'"):
        import_folder(project, images, labels)
    assert project.cases() == []


def test_import_folder_errors_name_the_folder(tmp_path, project):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match="empty: no volumes found"):
        import_folder(project, tmp_path / "empty")
    with pytest.raises(ProjectError, match="missing: images folder does not exist"):
        import_folder(project, tmp_path / "missing")


def test_import_folder_reports_a_bad_label_value(project, msd_folder):
    images, labels, volumes = msd_folder
    negative = -label_for(volumes["hip_001"]).astype(np.int16)
    write_volume(labels / "hip_001.nii.gz", volumes["hip_001"].with_array(negative))
    report = import_folder(project, images, labels)
    # The case of the bad label is left out whole; the others are imported.
    assert [(r.case_id, r.path) for r in report.refused] == [("hip_001", labels / "hip_001.nii.gz")]
    assert re.search(r"hip_001.nii.gz: .*negative", report.refused[0].message)
    assert not project.has_case("hip_001") and report.gold_added == ["hip_002"]
    assert [v.case_id for v in project.label_versions()] == ["hip_002"]


# -- the LA layout ----------------------------------------------------------------------------

def write_la_h5(path, shape_xyz, seed):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.zeros(shape_xyz, np.uint8)
    label[4:10, 3:9, 2:6] = 1
    with h5py.File(path, "w") as handle:
        handle["image"] = rng.normal(size=shape_xyz).astype(np.float32)
        handle["label"] = label


@pytest.fixture
def la_root(tmp_path):
    root = tmp_path / "LA"
    ids = ["CASEA", "CASEB", "CASEC", "CASED", "CASEE"]
    for i, case_id in enumerate(ids):
        write_la_h5(root / "2018LA_Seg_Training Set" / case_id / "mri_norm2.h5",
                    (20 + i, 14, 8), seed=i)
    (root / "train.list").write_text("\n".join(ids) + "\n")
    return root


def test_import_la_marks_the_first_n_gold_and_imports_no_other_label(project, la_root):
    report = import_la(project, la_root, la_root / "train.list", labeled=2)
    assert report.added == ["CASEA", "CASEB", "CASEC", "CASED", "CASEE"]
    assert report.gold_added == ["CASEA", "CASEB"]
    cases = project.cases()
    assert [(c.split, c.latest_kind) for c in cases] == [("labelled", "gold")] * 2 + [
        ("unlabelled", None)] * 3
    assert [c.shape for c in cases] == [(8, 14, 20 + i) for i in range(5)]  # z, y, x
    assert all(c.spacing == (0.625, 0.625, 0.625) for c in cases)
    assert project.label_versions("CASEC") == []
    gold = project.latest_label("CASEB")
    expected = read_volume(la_root / "2018LA_Seg_Training Set" / "CASEB" / "mri_norm2.h5").label
    np.testing.assert_array_equal(project.load_label(gold.id), expected)
    # The reference of an unlabelled case stays in its h5 file, for evaluation only.
    assert project.load_image("CASEE").label.sum() > 0


def test_import_la_again_is_idempotent_and_can_label_more(project, la_root):
    import_la(project, la_root, la_root / "train.list", labeled=2)
    again = import_la(project, la_root, la_root / "train.list", labeled=2)
    assert again.added == [] and again.gold_added == [] and len(again.already_present) == 5
    assert len(project.label_versions()) == 2
    more = import_la(project, la_root, la_root / "train.list", labeled=3)
    assert more.gold_added == ["CASEC"] and project.case("CASEC").split == "labelled"
    with pytest.raises(ProjectError, match="already have gold labels"):
        import_la(project, la_root, la_root / "train.list", labeled=1)
    assert len(project.label_versions()) == 3


def test_import_la_errors(project, la_root, tmp_path):
    with pytest.raises(ProjectError, match="outside 0..5"):
        import_la(project, la_root, la_root / "train.list", labeled=6)
    (tmp_path / "bad.list").write_text("CASEA\nNOSUCH\n")
    with pytest.raises(VolumeError, match="NOSUCH"):
        import_la(project, la_root, tmp_path / "bad.list", labeled=1)
    with pytest.raises(VolumeError, match="does not exist"):
        import_la(project, tmp_path / "nowhere", la_root / "train.list", labeled=1)
    assert project.cases() == []
