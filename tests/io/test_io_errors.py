"""Bad input gives one clear "PATH: problem" message, never a library traceback."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from data_factory import (folder_snapshot, make_label, make_volume, to_sitk, truncate,
                          write_case, write_la_h5)

from napari_semiseg.errors import GeometryMismatchError, SemisegError, VolumeError
from napari_semiseg.io import (Geometry, Volume, check_finite, read_label, read_volume,
                               validate_label, write_label, write_volume)


def user_error(call, path, *words, error=VolumeError) -> VolumeError:
    """Run ``call``; assert it raises ``error`` naming ``path`` first and containing ``words``."""
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word.lower() in message.lower(), message
    # No library source paths or pointers, and no chained library exception to print.
    assert ".cxx" not in message and "0x" not in message and "\n" not in message, message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__ or \
        caught.value.__context__ is None
    assert isinstance(caught.value, SemisegError)
    return caught.value


# --- paths and formats -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["missing.nii.gz", "missing_folder"])
def test_path_that_does_not_exist(tmp_path, name):
    user_error(lambda: read_volume(tmp_path / name), tmp_path / name, "does not exist")


@pytest.mark.parametrize("name", ["scan.png", "scan.tiff", "scan"])
def test_unknown_extension(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x89PNG....")
    user_error(lambda: read_volume(tmp_path / name), tmp_path / name, "unknown volume format")


@pytest.mark.parametrize("name", ["junk.nii", "junk.nii.gz", "junk.nrrd", "junk.mha", "junk.h5"])
def test_file_that_is_not_what_its_name_says(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    user_error(lambda: read_volume(path), path, "cannot be read")


@pytest.mark.parametrize("fmt", ["nii.gz", "nii", "nrrd", "mha", "h5"])
def test_truncated_file(tmp_path, fmt):
    # ITK reads a truncated NIfTI without complaint (zeros for the missing voxels): we must not.
    volume = make_volume(shape=(8, 16, 16), label=make_label((8, 16, 16)))
    path = truncate(write_case(tmp_path, fmt, volume), 0.6)
    user_error(lambda: read_volume(path), path, "truncated")


def test_corrupt_nifti_beside_its_namesake_is_reported_under_its_own_name(tmp_path):
    write_case(tmp_path, "nii.gz", make_volume())
    path = tmp_path / "case.nii"
    path.write_bytes(np.random.default_rng(1).bytes(2000))
    err = user_error(lambda: read_volume(path), path, "cannot be read as NIfTI")
    assert "semiseg-nifti" not in str(err)


@pytest.mark.parametrize("fmt, words", [("nhdr", "cannot be read as NRRD"),
                                         ("mhd", "cannot be read as MetaImage")])
def test_header_whose_data_file_is_missing(tmp_path, fmt, words):
    path = write_case(tmp_path, fmt, make_volume())
    data_files = [p for p in tmp_path.iterdir() if p != path]
    assert data_files
    for data_file in data_files:
        data_file.unlink()
    user_error(lambda: read_volume(path), path, words)


# --- not a 3-D scalar volume -----------------------------------------------------------

def test_2d_image(tmp_path):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12), np.float32)), str(path))
    user_error(lambda: read_volume(path), path, "2-D", "(y, x) = (10, 12)", "3-D volume is needed")


def test_4d_image_with_several_time_points(tmp_path):
    path = tmp_path / "series4d.nrrd"
    frames = [to_sitk(make_volume(seed=i).array) for i in range(3)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    user_error(lambda: read_volume(path), path, "4-D", "(t, z, y, x) = (3, 6, 10, 12)")


def test_3d_file_with_a_single_slice(tmp_path):
    path = write_case(tmp_path, "nrrd", make_volume(shape=(1, 10, 12)))
    user_error(lambda: read_volume(path), path, "single slice")


def test_vector_image(tmp_path):
    path = tmp_path / "rgb.mha"
    rgb = np.zeros((4, 5, 6, 3), np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    user_error(lambda: read_volume(path), path, "3 values per voxel")


# --- folders -----------------------------------------------------------------------------

def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    user_error(lambda: read_volume(tmp_path / "empty"), tmp_path / "empty", "empty folder")


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "not_dicom"
    write_case(folder, "nii.gz", make_volume())
    (folder / "notes.txt").write_text("no slices here")
    user_error(lambda: read_volume(folder), folder, "no DICOM series")


def test_unknown_series_uid(tmp_path):
    from data_factory import write_dicom_series
    folder = write_dicom_series(tmp_path / "series", make_volume(dtype=np.int16),
                                series_uid="1.2.3.9")
    user_error(lambda: read_volume(folder, series_uid="9.9.9"), folder, "no DICOM series '9.9.9'",
               "1.2.3.9")


def test_dicom_series_with_a_missing_slice(tmp_path):
    from data_factory import write_dicom_series
    folder = write_dicom_series(tmp_path / "series", make_volume(dtype=np.int16))
    (folder / "slice_003.dcm").unlink()
    user_error(lambda: read_volume(folder), folder, "unevenly spaced", "2.5 to 5 mm")


# --- LA h5 -------------------------------------------------------------------------------

def test_h5_without_image(tmp_path):
    path = write_la_h5(tmp_path / "no_image.h5", None, make_label())
    user_error(lambda: read_volume(path), path, "no 'image' dataset", "label")


def test_h5_with_a_2d_image(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as handle:
        handle["image"] = np.zeros((10, 12), np.float32)
    user_error(lambda: read_volume(path), path, "'image'", "not a 3-D")


def test_h5_label_of_another_shape(tmp_path):
    path = write_la_h5(tmp_path / "odd.h5", make_volume().array, make_label((6, 10, 11)))
    user_error(lambda: read_volume(path), path, "shape", error=GeometryMismatchError)


def test_read_label_of_h5_without_label(tmp_path):
    path = write_la_h5(tmp_path / "image_only.h5", make_volume().array)
    user_error(lambda: read_label(path, make_volume().geometry), path, "no 'label' dataset")


# --- labels that do not fit their image ----------------------------------------------------

@pytest.mark.parametrize("change, what", [
    (dict(spacing=(2.5, 0.75, 0.7)), "spacing"),
    (dict(origin=(7.75, 31.0, -12.5)), "origin"),
    (dict(direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), "direction"),
])
def test_label_file_on_another_grid(tmp_path, change, what):
    image = make_volume()
    grid = {"spacing": image.spacing, "origin": image.origin, "direction": image.direction,
            **change}
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(to_sitk(make_label(image.shape), **grid), str(path))
    err = user_error(lambda: read_label(path, image.geometry), path, what,
                     error=GeometryMismatchError)
    assert all(other not in str(err) for other in {"spacing", "origin", "direction"} - {what})


def test_label_file_of_another_shape(tmp_path):
    image = make_volume()
    path = tmp_path / "label.nrrd"
    sitk.WriteImage(to_sitk(make_label((6, 10, 13)), image.spacing, image.origin,
                            image.direction), str(path))
    user_error(lambda: read_label(path, image.geometry), path, "shape (6, 10, 13) vs (6, 10, 12)",
               error=GeometryMismatchError)


@pytest.mark.parametrize("values, words", [
    (np.array([0, 1, -2]), ("1 negative voxels", "min -2")),
    (np.array([0.0, 1.5, 2.0]), ("non-integer", "1.5")),
    (np.array([0.0, np.nan, 2.0]), ("non-integer", "nan")),
    (np.array([0.0, np.inf, 1.0]), ("non-integer", "inf")),
])
def test_label_values_that_are_not_labels(tmp_path, values, words):
    image = make_volume()
    label = make_label(image.shape).astype(values.dtype)
    label.flat[:3] = values
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(to_sitk(label, image.spacing, image.origin, image.direction), str(path))
    user_error(lambda: read_label(path, image.geometry), path, *words)


def test_in_memory_label_checks_name_their_source():
    like = make_volume().geometry
    with pytest.raises(GeometryMismatchError, match=r"^case-7: .*shape"):
        validate_label(np.zeros((6, 10, 11), np.uint8), None, like, "case-7")
    with pytest.raises(VolumeError, match=r"^case-7: label is 2-D"):
        validate_label(np.zeros((10, 12), np.uint8), None, like, "case-7")
    with pytest.raises(VolumeError, match=r"^case-7: label has dtype complex"):
        validate_label(np.zeros(like.shape, np.complex64), None, like, "case-7")
    assert validate_label(np.ones(like.shape, bool), None, like, "case-7").dtype == np.uint8


# --- NaN / inf intensities ------------------------------------------------------------------

@pytest.mark.parametrize("fmt, dtype", [("nii.gz", np.float32), ("nii", np.float64),
                                        ("nrrd", np.float32), ("mha", np.float64),
                                        ("h5", np.float32)])
def test_nonfinite_intensities_are_reported_not_loaded(tmp_path, fmt, dtype):
    # ITK's NIfTI reader turns NaN/inf into 0 without a word: they must still be reported.
    volume = make_volume(dtype=dtype)
    volume.array[0, 0, :3] = np.nan
    volume.array[1, 2, 3] = -np.inf
    volume.array[5, 9, 11] = np.inf
    path = write_case(tmp_path, fmt, volume)

    user_error(lambda: read_volume(path), path, "5 of 720 voxels are not finite", "3 NaN",
               "2 infinite")
    allowed = read_volume(path, allow_nonfinite=True)
    np.testing.assert_array_equal(allowed.array, volume.array)  # NaN == NaN here; inf signs kept


def test_check_finite_on_an_in_memory_volume(tmp_path):
    clean = make_volume()
    check_finite(clean)
    check_finite(make_volume(dtype=np.int16))
    dirty = clean.with_array(np.where(clean.array > 130, np.inf, clean.array))
    n_inf = int(np.count_nonzero(np.isinf(dirty.array)))
    assert n_inf > 0
    with pytest.raises(VolumeError, match=f"{n_inf} of 720 voxels are not finite"):
        check_finite(dirty)
    named = Volume(dirty.array, dirty.geometry, source=tmp_path / "x.nii")
    with pytest.raises(VolumeError, match=f"^{tmp_path / 'x.nii'}: "):
        check_finite(named)


def test_bad_spacing_argument(tmp_path):
    path = write_case(tmp_path, "nii.gz", make_volume())
    user_error(lambda: read_volume(path, spacing=(1.0, -1.0, 1.0)), path, "spacing")
    user_error(lambda: read_volume(path, spacing=(1.0, 1.0)), path, "spacing")


# --- writes that must not happen ------------------------------------------------------------

@pytest.mark.parametrize("name", ["label.nhdr", "label.mhd", "label.png", "label"])
def test_write_to_an_unsupported_suffix_writes_nothing(tmp_path, name):
    volume = make_volume()
    user_error(lambda: write_label(tmp_path / name, make_label(volume.shape), volume.geometry),
               tmp_path / name, "cannot write")
    user_error(lambda: write_volume(tmp_path / name, volume), tmp_path / name, "cannot write")
    assert folder_snapshot(tmp_path) == {}


@pytest.mark.parametrize("bad_label, error", [
    (np.full((6, 10, 12), -1, np.int16), VolumeError),
    (np.full((6, 10, 12), 0.5, np.float32), VolumeError),
    (np.zeros((6, 10, 13), np.uint8), GeometryMismatchError),
])
def test_invalid_label_leaves_the_saved_label_untouched(tmp_path, bad_label, error):
    volume = make_volume()
    destination = write_label(tmp_path / "label.nii.gz", make_label(volume.shape), volume.geometry)
    before = folder_snapshot(tmp_path)

    user_error(lambda: write_label(destination, bad_label, volume.geometry), destination,
               error=error)

    assert folder_snapshot(tmp_path) == before


def test_write_volume_whose_array_is_off_its_grid(tmp_path):
    volume = make_volume()
    wrong = Volume(volume.array[:, :, :5], volume.geometry)
    user_error(lambda: write_volume(tmp_path / "v.nii.gz", wrong), tmp_path / "v.nii.gz",
               "differs from its geometry")
    assert folder_snapshot(tmp_path) == {}


def test_geometry_mismatch_is_a_volume_error():
    # Callers that catch VolumeError also catch mismatches.
    assert issubclass(GeometryMismatchError, VolumeError)
    assert Geometry((2, 2, 2)).matches(Geometry((2, 2, 2)))
