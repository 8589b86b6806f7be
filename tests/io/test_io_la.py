"""The LA benchmark's mri_norm2.h5 files and its root + list-file layout."""

from __future__ import annotations

import numpy as np
import pytest
from data_factory import make_label, write_la_h5

from napari_semiseg.errors import VolumeError
from napari_semiseg.io import (IDENTITY_DIRECTION, LA_SPACING_MM, Geometry, la_case_paths,
                               read_label, read_volume)


def xyz_case(shape_xyz=(14, 11, 5)):
    """An image and label stored (x, y, z) as the benchmark does, with a marked voxel."""
    image = np.random.default_rng(0).normal(size=shape_xyz).astype(np.float32)
    image[9, 2, 4] = 42.0                      # x=9, y=2, z=4
    label = np.zeros(shape_xyz, np.uint8)
    label[3:8, 2:6, 1:4] = 1
    return image, label


def write_xyz_h5(path, image_xyz, label_xyz=None):
    # write_la_h5 takes (z, y, x) arrays; hand it the transposes so the file holds image_xyz.
    return write_la_h5(path, image_xyz.transpose(2, 1, 0),
                       None if label_xyz is None else label_xyz.transpose(2, 1, 0))


def test_h5_is_transposed_to_zyx_with_la_geometry(tmp_path):
    image, label = xyz_case()
    path = write_xyz_h5(tmp_path / "mri_norm2.h5", image, label)

    volume = read_volume(path)

    assert volume.shape == (5, 11, 14)
    assert volume.array[4, 2, 9] == 42.0
    np.testing.assert_array_equal(volume.array, image.transpose(2, 1, 0))
    assert volume.array.dtype == np.float32 and volume.array.flags.c_contiguous
    assert volume.spacing == (LA_SPACING_MM,) * 3 == (0.625, 0.625, 0.625)
    assert volume.origin == (0.0, 0.0, 0.0) and volume.direction == IDENTITY_DIRECTION
    assert volume.label.dtype == np.uint8
    np.testing.assert_array_equal(volume.label, label.transpose(2, 1, 0))


def test_h5_spacing_can_be_given(tmp_path):
    image, _ = xyz_case()
    path = write_xyz_h5(tmp_path / "mri_norm2.h5", image)

    volume = read_volume(path, spacing=(1.25, 0.625, 0.625))

    assert volume.spacing == (1.25, 0.625, 0.625)
    assert volume.label is None


def test_read_label_of_h5_gives_its_label(tmp_path):
    image, label = xyz_case()
    path = write_xyz_h5(tmp_path / "mri_norm2.h5", image, label)

    read = read_label(path, Geometry((5, 11, 14), (0.625,) * 3))

    np.testing.assert_array_equal(read, label.transpose(2, 1, 0))


def test_h5_label_with_negative_values_is_refused(tmp_path):
    image, _ = xyz_case()
    bad = make_label((5, 11, 14)).astype(np.int8)
    bad[0, 0, 0] = -1
    path = write_la_h5(tmp_path / "mri_norm2.h5", image.transpose(2, 1, 0), bad)
    with pytest.raises(VolumeError, match="negative"):
        read_volume(path)


def test_real_la_volume(shared_data):
    cases = la_case_paths(shared_data / "LA", shared_data / "LA" / "train.list")
    volume = read_volume(cases[0].path)

    assert volume.shape[0] == 88 and 132 <= volume.shape[1] <= 160 and 148 <= volume.shape[2] <= 244
    assert volume.spacing == (0.625, 0.625, 0.625)
    assert volume.array.dtype == np.float32
    assert volume.label is not None and set(np.unique(volume.label)) == {0, 1}
    assert np.isfinite(volume.array).all() and float(volume.array.std()) > 0.1
    # the transposition put the label where the image is: the atrium lies in the middle slices
    z_with_label = np.flatnonzero(volume.label.any(axis=(1, 2)))
    assert 0 < z_with_label.min() and z_with_label.max() < volume.shape[0] - 1


# --- root + list layout ---------------------------------------------------------------------

def make_la_root(root, ids, nested=True):
    case_root = root / "2018LA_Seg_Training Set" if nested else root
    image, label = xyz_case()
    for case_id in ids:
        (case_root / case_id).mkdir(parents=True)
        write_xyz_h5(case_root / case_id / "mri_norm2.h5", image, label)
    return case_root


@pytest.mark.parametrize("nested", [True, False])
def test_la_case_paths_in_list_order(tmp_path, nested):
    case_root = make_la_root(tmp_path / "LA", ["B", "A", "C"], nested)
    list_file = tmp_path / "train.list"
    list_file.write_text("C\n\nA\n# a comment\n  B  \n")
    root = tmp_path / "LA" if nested else case_root

    cases = la_case_paths(root, list_file)

    assert [c.case_id for c in cases] == ["C", "A", "B"]
    assert [c.path for c in cases] == [case_root / i / "mri_norm2.h5" for i in "CAB"]
    case_id, path = cases[0]                   # plain tuples too
    assert read_volume(path).shape == (5, 11, 14)


def test_la_case_paths_names_every_missing_case(tmp_path):
    make_la_root(tmp_path / "LA", ["A"])
    list_file = tmp_path / "train.list"
    list_file.write_text("A\nGONE1\nGONE2\n")

    with pytest.raises(VolumeError, match=r"2 of the 3 cases listed in .*train.list have no "
                       r"<ID>/mri_norm2.h5 here: GONE1, GONE2"):
        la_case_paths(tmp_path / "LA", list_file)


@pytest.mark.parametrize("content, message", [(None, "case list file does not exist"),
                                              ("\n# nothing\n", "lists no case ids"),
                                              ("A\nB\nA\n", "lists these ids more than once: A")])
def test_la_case_paths_bad_list_file(tmp_path, content, message):
    make_la_root(tmp_path / "LA", ["A", "B"])
    list_file = tmp_path / "train.list"
    if content is not None:
        list_file.write_text(content)
    with pytest.raises(VolumeError, match=f"^{list_file}: {message}"):
        la_case_paths(tmp_path / "LA", list_file)


def test_la_case_paths_missing_root(tmp_path):
    (tmp_path / "train.list").write_text("A\n")
    with pytest.raises(VolumeError, match="LA root folder does not exist"):
        la_case_paths(tmp_path / "nowhere", tmp_path / "train.list")


def test_real_la_list_has_80_cases_in_order(shared_data):
    list_file = shared_data / "LA" / "train.list"
    cases = la_case_paths(shared_data / "LA", list_file)

    assert len(cases) == 80
    assert [c.case_id for c in cases] == list_file.read_text().split()
    assert all(c.path.name == "mri_norm2.h5" for c in cases)
