"""Every format round-trips its voxels and its geometry (spacing, origin, direction)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from data_factory import (FORMATS, OBLIQUE_DIRECTION, make_label, make_volume, to_sitk,
                          write_case, write_dicom_series)

from napari_semiseg.io import (Geometry, Volume, list_dicom_series, read_label, read_volume,
                               write_label, write_volume)

GEOMETRY_TOL = 1e-6
#: DICOM stores positions and spacings as decimal strings of limited length.
DICOM_TOL = 1e-4


def assert_same_geometry(actual: Geometry, expected: Geometry, tol: float = GEOMETRY_TOL):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.spacing, expected.spacing, atol=tol, rtol=0)
    np.testing.assert_allclose(actual.origin, expected.origin, atol=tol, rtol=0)
    np.testing.assert_allclose(actual.direction, expected.direction, atol=tol, rtol=0)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in ("dicom", "h5")])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_read_every_file_format_keeps_voxels_dtype_and_geometry(tmp_path, fmt, dtype):
    volume = make_volume(dtype=dtype)
    path = write_case(tmp_path, fmt, volume)

    read = read_volume(path)

    assert read.array.dtype == dtype
    np.testing.assert_array_equal(read.array, volume.array)
    assert_same_geometry(read.geometry, volume.geometry)
    assert read.source == path and read.label is None


def test_axis_order_is_zyx_with_spacing_and_origin_reversed_from_simpleitk(tmp_path):
    array = np.zeros((4, 5, 6), np.int16)
    array[3, 1, 2] = 7                      # z=3, y=1, x=2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 1.5, 3.0))       # SimpleITK: (x, y, z)
    image.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(image, str(tmp_path / "axes.nrrd"))

    read = read_volume(tmp_path / "axes.nrrd")

    assert read.shape == (4, 5, 6) and read.array[3, 1, 2] == 7
    assert image.GetPixel(2, 1, 3) == 7
    assert read.spacing == (3.0, 1.5, 0.5)
    assert read.origin == (30.0, 20.0, 10.0)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_write_volume_then_read_returns_the_same_volume(tmp_path, suffix, dtype):
    volume = make_volume(dtype=dtype, seed=3)
    path = write_volume(tmp_path / f"out{suffix}", volume)

    read = read_volume(path)

    assert read.array.dtype == dtype
    np.testing.assert_array_equal(read.array, volume.array)
    assert_same_geometry(read.geometry, volume.geometry)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_write_label_then_read_label_on_the_image_grid(tmp_path, suffix):
    volume = make_volume()
    label = make_label(volume.shape, n_classes=3).astype(np.int64)  # napari Labels use int64

    path = write_label(tmp_path / f"label{suffix}", label, volume.geometry)
    stored = sitk.ReadImage(str(path))
    read = read_label(path, volume.geometry)

    assert stored.GetPixelID() == sitk.sitkUInt8
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, label)
    assert_same_geometry(read_volume(path).geometry, volume.geometry)


def test_labels_above_255_are_written_as_uint16(tmp_path):
    volume = make_volume()
    label = make_label(volume.shape, n_classes=2).astype(np.int32) * 300

    path = write_label(tmp_path / "many.nii.gz", label, volume.geometry)

    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkUInt16
    np.testing.assert_array_equal(read_label(path, volume.geometry), label)


def test_dicom_series_round_trip_to_text_precision(tmp_path):
    volume = make_volume(dtype=np.int16)
    folder = write_dicom_series(tmp_path / "series", volume)

    read = read_volume(folder)

    np.testing.assert_array_equal(read.array, volume.array)
    assert_same_geometry(read.geometry, volume.geometry, tol=DICOM_TOL)
    assert not np.allclose(read.direction, np.eye(3).ravel())  # the oblique direction survived


def test_one_dcm_file_reads_its_whole_series(tmp_path):
    volume = make_volume(dtype=np.int16)
    folder = write_dicom_series(tmp_path / "series", volume)

    read = read_volume(sorted(folder.glob("*.dcm"))[2])

    assert read.shape == volume.shape
    np.testing.assert_array_equal(read.array, volume.array)


def test_folder_with_two_series_reads_the_larger_unless_told(tmp_path):
    folder = tmp_path / "mixed"
    big = make_volume(shape=(6, 10, 12), dtype=np.int16, seed=1)
    small = make_volume(shape=(3, 10, 12), dtype=np.int16, seed=2,
                        origin=(100.0, 0.0, 0.0))
    write_dicom_series(folder / "a", big, series_uid="1.2.3.4.100")
    write_dicom_series(folder / "b", small, series_uid="1.2.3.4.200")
    for sub in ("a", "b"):
        for file in (folder / sub).iterdir():
            file.rename(folder / f"{sub}_{file.name}")

    assert list_dicom_series(folder) == [("1.2.3.4.100", 6), ("1.2.3.4.200", 3)]
    np.testing.assert_array_equal(read_volume(folder).array, big.array)
    np.testing.assert_array_equal(read_volume(folder, series_uid="1.2.3.4.200").array,
                                  small.array)


def test_singleton_fourth_dimension_is_squeezed(tmp_path):
    array = make_volume(dtype=np.float32).array
    image = sitk.JoinSeries([to_sitk(array, (2.0, 1.0, 0.5), (3.0, 2.0, 1.0))])  # x, y, z, t=1
    assert image.GetDimension() == 4
    sitk.WriteImage(image, str(tmp_path / "one_timepoint.nrrd"))

    read = read_volume(tmp_path / "one_timepoint.nrrd")

    assert read.shape == array.shape
    assert read.spacing == (2.0, 1.0, 0.5) and read.origin == (3.0, 2.0, 1.0)
    np.testing.assert_array_equal(read.array, array)


@pytest.mark.parametrize("spacing, expected", [(0.9, (0.9, 0.9, 0.9)),
                                               ((3.0, 2.0, 1.0), (3.0, 2.0, 1.0))])
def test_spacing_argument_replaces_the_files_spacing(tmp_path, spacing, expected):
    volume = make_volume()
    path = write_case(tmp_path, "nii.gz", volume)

    read = read_volume(path, spacing=spacing)

    assert read.spacing == pytest.approx(expected)
    assert read.origin == pytest.approx(volume.origin)


def test_float_label_file_with_whole_values_is_accepted_as_uint8(tmp_path):
    volume = make_volume()
    label = make_label(volume.shape).astype(np.float32)
    sitk.WriteImage(to_sitk(label, volume.spacing, volume.origin, volume.direction),
                    str(tmp_path / "float_label.nii.gz"))

    read = read_label(tmp_path / "float_label.nii.gz", volume.geometry)

    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, label.astype(np.uint8))


def test_real_float32_hippocampus_label_reads_as_uint8(shared_data):
    images = shared_data / "hippocampus" / "imagesTr"
    labels = shared_data / "hippocampus" / "labelsTr"
    if not (labels / "hippocampus_003.nii.gz").is_file():
        pytest.skip("hippocampus_003 is not in the shared data")
    assert sitk.ReadImage(str(labels / "hippocampus_003.nii.gz")).GetPixelID() == sitk.sitkFloat32
    image = read_volume(images / "hippocampus_003.nii.gz")

    label = read_label(labels / "hippocampus_003.nii.gz", image.geometry)

    assert label.dtype == np.uint8 and label.shape == image.shape
    assert set(np.unique(label)) == {0, 1, 2}


def test_real_ct_keeps_int16_and_its_flipped_direction(shared_data):
    path = shared_data / "ct-example" / "example_ct_sm.nii.gz"
    if not path.is_file():
        pytest.skip("the CT example is not in the shared data")

    ct = read_volume(path)

    assert ct.array.dtype == np.int16
    assert ct.shape == (30, 101, 122) and ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert ct.direction == pytest.approx((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    label = read_label(shared_data / "ct-example" / "example_seg.nii.gz", ct.geometry)
    assert np.count_nonzero(label == 7) == 644


def test_volume_geometry_is_oblique_in_these_tests():
    # The round trips above would prove little with an identity direction.
    assert OBLIQUE_DIRECTION != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    matrix = np.reshape(OBLIQUE_DIRECTION, (3, 3))
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    assert all(abs(v) > 0.05 for v in OBLIQUE_DIRECTION)
    assert isinstance(make_volume(), Volume)


@pytest.mark.parametrize("wanted, other", [("case.nii.gz", "case.nii"),
                                           ("case.nii", "case.nii.gz")])
def test_nifti_beside_a_same_named_nifti_reads_its_own_voxels(tmp_path, wanted, other):
    # niftilib, given case.nii.gz, reads case.nii's voxels when that file exists too.
    mine = make_volume(dtype=np.float64, seed=1)
    theirs = make_volume(dtype=np.float32, seed=2)
    sitk.WriteImage(to_sitk(theirs.array), str(tmp_path / other))
    sitk.WriteImage(to_sitk(mine.array, mine.spacing, mine.origin, mine.direction),
                    str(tmp_path / wanted))

    read = read_volume(tmp_path / wanted)

    np.testing.assert_array_equal(read.array, mine.array)
    assert_same_geometry(read.geometry, mine.geometry)
    assert read.source == tmp_path / wanted
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([wanted, other])


def test_nan_survives_write_and_read_when_allowed(tmp_path):
    volume = make_volume()
    volume.array[2, 3, 4] = np.nan
    for suffix in (".nii.gz", ".nrrd"):
        path = write_volume(tmp_path / f"nan{suffix}", volume)
        read = read_volume(path, allow_nonfinite=True)
        assert np.isnan(read.array[2, 3, 4]) and np.count_nonzero(np.isnan(read.array)) == 1
