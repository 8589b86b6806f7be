"""The napari reader, writer and sample data, through napari's own plugin machinery.

No window is needed: a ``ViewerModel`` opens and saves layers exactly as the GUI does. Expected
geometry is taken from SimpleITK/h5py directly, not from our io layer, so that a wrong axis order
in either place shows up.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import npe2
import numpy as np
import pytest
import SimpleITK as sitk
from napari.components import ViewerModel
from napari.plugins.io import save_layers

from napari_semiseg._napari._reader import napari_get_reader
from napari_semiseg.errors import VolumeError
from napari_semiseg.samples import sample_path

PLUGIN = "napari-semiseg"


@pytest.fixture(scope="module", autouse=True)
def discovered_plugins():
    npe2.PluginManager.instance().discover()


@pytest.fixture
def viewer() -> ViewerModel:
    return ViewerModel()


def _zyx(values) -> tuple[float, ...]:
    return tuple(reversed([float(v) for v in values]))


def test_nifti_opens_as_an_image_placed_by_its_geometry(viewer):
    path = sample_path("hippocampus_001.nii.gz")
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    expected = sitk.ReadImage(str(path))
    assert layer._type_string == "image"
    assert layer.data.shape == _zyx(expected.GetSize())
    np.testing.assert_allclose(layer.scale, _zyx(expected.GetSpacing()))
    np.testing.assert_allclose(layer.translate, _zyx(expected.GetOrigin()))
    np.testing.assert_array_equal(layer.data, sitk.GetArrayFromImage(expected))
    geometry = layer.metadata["semiseg_geometry"]
    np.testing.assert_allclose(geometry["direction"], expected.GetDirection())
    assert layer.metadata["semiseg_source"] == str(path)


@pytest.mark.parametrize("name", ["abdomen_ct.nii.gz", "abdomen_ct_pancreas_label.nii.gz"])
def test_a_flipped_nifti_is_shown_at_its_patient_coordinates(viewer, name):
    """The CT sample is stored RAS (ITK direction diag(−1, −1, 1)): every voxel's napari world
    position must be ITK's physical point, so that the scan is not shown upside down."""
    path = sample_path(name)
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    expected = sitk.ReadImage(str(path))
    assert np.allclose(expected.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1)), "the fixture is flipped"
    nz, ny, nx = layer.data.shape
    for z, y, x in [(0, 0, 0), (nz - 1, 0, 0), (0, ny - 1, 0), (0, 0, nx - 1), (nz // 2, ny // 3, nx // 4)]:
        world = layer.data_to_world((z, y, x))
        np.testing.assert_allclose(world, _zyx(expected.TransformIndexToPhysicalPoint((x, y, z))), atol=1e-4)
    # The stored array's last row is anterior (smaller LPS y): napari, drawing +y downwards, puts it on top.
    assert layer.data_to_world((0, ny - 1, 0))[1] < layer.data_to_world((0, 0, 0))[1]


def test_nrrd_with_anisotropic_spacing_keeps_z_y_x_order(tmp_path, viewer):
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6))
    image.SetSpacing((0.5, 0.7, 2.0))      # x, y, z
    image.SetOrigin((3.0, -4.0, 5.0))
    sitk.WriteImage(image, str(tmp_path / "scan.nrrd"))
    (layer,) = viewer.open(str(tmp_path / "scan.nrrd"), plugin=PLUGIN)
    assert layer.name == "scan"
    np.testing.assert_allclose(layer.scale, (2.0, 0.7, 0.5))
    np.testing.assert_allclose(layer.translate, (5.0, -4.0, 3.0))


def test_la_h5_gives_image_and_labels_transposed_to_z_y_x(tmp_path, viewer):
    case = tmp_path / "CASE01"
    case.mkdir()
    rng = np.random.default_rng(0)
    image_xyz = rng.normal(size=(10, 8, 6)).astype(np.float32)
    label_xyz = (image_xyz > 1).astype(np.uint8)
    with h5py.File(case / "mri_norm2.h5", "w") as h5:
        h5["image"], h5["label"] = image_xyz, label_xyz
    image, labels = viewer.open(str(case / "mri_norm2.h5"), plugin=PLUGIN)
    assert (image.name, labels.name) == ("CASE01", "CASE01 label")
    assert labels._type_string == "labels"
    np.testing.assert_array_equal(image.data, image_xyz.transpose(2, 1, 0))
    np.testing.assert_array_equal(labels.data, label_xyz.transpose(2, 1, 0))
    for layer in (image, labels):
        np.testing.assert_allclose(layer.scale, (0.625,) * 3)


def test_an_h5_file_without_an_la_image_is_left_to_other_readers(tmp_path):
    """HDF5 is a container (Keras weights, AnnData, Imaris): claiming every .h5 would hide the
    plugins that read those, since napari tries the next reader only when this one says None."""
    la = tmp_path / "mri_norm2.h5"
    with h5py.File(la, "w") as h5:
        h5["image"] = np.zeros((6, 5, 4), np.float32)
    weights, flat, text = tmp_path / "weights.h5", tmp_path / "flat.hdf5", tmp_path / "notes.h5"
    with h5py.File(weights, "w") as h5:
        h5.create_group("model_weights")["kernel"] = np.zeros((3, 3), np.float32)
    with h5py.File(flat, "w") as h5:
        h5["image"] = np.zeros((5, 4), np.float32)  # a 2-D picture, not a volume
    text.write_text("not HDF5 at all")
    assert napari_get_reader(str(la)) is not None
    for other in (weights, flat, text, tmp_path / "missing.h5"):
        assert napari_get_reader(str(other)) is None, other.name
    assert napari_get_reader([str(la), str(weights)]) is None


def _write_dicom_series(folder: Path, array: np.ndarray, pixel_spacing_xy, z_step, origin_xyz):
    """One .dcm file per z slice, positions along z (a minimal MR series GDCM sorts)."""
    uid = "1.2.826.0.1.3680043.2.1125.1.4242"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z, plane in enumerate(array):
        slice_image = sitk.GetImageFromArray(plane)
        slice_image.SetSpacing(pixel_spacing_xy)
        position = (origin_xyz[0], origin_xyz[1], origin_xyz[2] + z * z_step)
        tags = {"0008|0060": "MR", "0020|000e": uid, "0020|000d": uid + ".1",
                "0020|0013": str(z + 1), "0020|0032": "\\".join(f"{p:g}" for p in position),
                "0020|0037": "1\\0\\0\\0\\1\\0", "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
                "0008|0018": f"{uid}.{z + 100}"}
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_folder_opens_as_one_volume_and_other_folders_are_left_alone(tmp_path, viewer):
    series = tmp_path / "series"
    series.mkdir()
    array = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    _write_dicom_series(series, array, (0.7, 0.8), 2.5, (10.0, 20.0, 30.0))
    (layer,) = viewer.open(str(series), plugin=PLUGIN)
    np.testing.assert_array_equal(layer.data, array)
    np.testing.assert_allclose(layer.scale, (2.5, 0.8, 0.7))
    np.testing.assert_allclose(layer.translate, (30.0, 20.0, 10.0))

    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "readme.txt").write_text("not an image")
    assert napari_get_reader(str(plain)) is None
    assert napari_get_reader(str(tmp_path / "table.csv")) is None


def test_a_truncated_file_raises_a_message_naming_it_and_adds_no_layer(tmp_path, viewer):
    whole = sample_path("hippocampus_001.nii.gz").read_bytes()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(VolumeError, match="broken.nii.gz"):
        viewer.open(str(broken), plugin=PLUGIN)
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_labels_written_back_keep_the_source_geometry(tmp_path, viewer, suffix):
    source = sample_path("hippocampus_004_label.nii.gz")
    (labels,) = viewer.open(str(source), plugin=PLUGIN)
    assert labels._type_string == "labels", "a file named *_label.* opens as a Labels layer"
    labels.paint((10, 22, 17), 3)
    painted = np.asarray(labels.data).copy()
    assert (painted == 3).sum() > 0
    (written,) = save_layers(str(tmp_path / f"corrected{suffix}"), [labels], plugin=PLUGIN)
    original, result = sitk.ReadImage(str(source)), sitk.ReadImage(written)
    np.testing.assert_allclose(result.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(result.GetOrigin(), original.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(result.GetDirection(), original.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), painted)


def test_labels_drawn_from_scratch_are_written_with_their_scale_and_translate(tmp_path, viewer):
    labels = viewer.add_labels(np.zeros((3, 4, 5), np.uint8), scale=(2.0, 1.5, 0.5),
                               translate=(-7.0, 8.0, 9.0))
    labels.data[1, 2, 3] = 1
    (written,) = save_layers(str(tmp_path / "drawn"), [labels], plugin=PLUGIN)
    assert written.endswith("drawn.nii.gz")
    result = sitk.ReadImage(written)
    np.testing.assert_allclose(result.GetSpacing(), (0.5, 1.5, 2.0))
    np.testing.assert_allclose(result.GetOrigin(), (9.0, 8.0, -7.0))
    assert sitk.GetArrayFromImage(result)[1, 2, 3] == 1


def test_a_label_file_with_whole_float_values_opens_as_labels_but_an_mri_does_not(tmp_path, viewer):
    image = sitk.GetImageFromArray(np.array([[[0.0, 1.0], [2.0, 0.0]]] * 2, dtype=np.float32))
    sitk.WriteImage(image, str(tmp_path / "case_seg.nii.gz"))
    (layer,) = viewer.open(str(tmp_path / "case_seg.nii.gz"), plugin=PLUGIN)
    assert layer._type_string == "labels"
    (mri,) = viewer.open(str(sample_path("hippocampus_004.nii.gz")), plugin=PLUGIN)
    assert mri._type_string == "image"


def test_a_2d_labels_layer_is_refused_and_nothing_is_written(tmp_path):
    from napari_semiseg._napari._writer import write_labels

    with pytest.raises(VolumeError, match="3-D"):
        write_labels(str(tmp_path / "flat.nii.gz"), np.zeros((4, 5), np.uint8), {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key, label_values, scale", [
    ("hippocampus-001", {0, 1, 2}, (1.0, 1.0, 1.0)),
    ("hippocampus-004", {0, 1, 2}, (1.0, 1.0, 1.0)),
    ("abdomen-ct", {0, 1}, (3.0, 3.0, 3.0)),
    ("la-phantom", {0, 1}, (0.625, 0.625, 0.625)),
])
def test_open_sample_gives_an_image_and_its_labels_on_one_grid(viewer, key, label_values, scale):
    viewer.open_sample(PLUGIN, key)
    image, labels = viewer.layers
    assert (image._type_string, labels._type_string) == ("image", "labels")
    assert image.data.shape == labels.data.shape
    assert set(np.unique(labels.data)) == label_values
    for layer in (image, labels):
        np.testing.assert_allclose(layer.scale, scale)
    np.testing.assert_allclose(image.translate, labels.translate)


def test_ct_sample_keeps_only_the_pancreas_and_uses_a_soft_tissue_window(viewer):
    viewer.open_sample(PLUGIN, "abdomen-ct")
    image, labels = viewer.layers
    assert int((labels.data == 1).sum()) == 644
    assert image.contrast_limits == [-160.0, 240.0]


def test_shipped_samples_stay_small():
    folder = sample_path("README.md").parent
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total < 2_000_000
    assert "CC BY-SA 4.0" in (folder / "README.md").read_text(encoding="utf-8")
