"""DICOM-SEG export of a case read from DICOM (issue 17 §1), with real volumes and real files.

The shipped abdominal CT and hippocampus MRI are written as DICOM series (one file per slice,
file names in the reverse of the slice order), imported into a project, labelled, exported,
and read back with pydicom and highdicom. The expected slice order comes from the source files'
own positions along their normal, computed here, never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

import napari_semiseg.samples
from data_factory import write_dicom_series
from napari_semiseg.errors import ProjectError, VolumeError
from napari_semiseg.io import read_volume, write_volume
from napari_semiseg.project import Project
from napari_semiseg.workflows.export import export_case
from napari_semiseg.workflows.export_dicom_seg import is_from_dicom
from napari_semiseg.workflows.imports import iter_import, plan_import

SAMPLES = Path(napari_semiseg.samples.__file__).parent


def dicom_series_of(sample: str, folder: Path) -> Path:
    """A shipped sample volume as a DICOM series in ``folder``, its files named last slice first."""
    write_dicom_series(folder, read_volume(SAMPLES / f"{sample}.nii.gz"))
    files = sorted(folder.iterdir())
    for index, path in enumerate(files):
        path.rename(folder / f"tmp_{index:03d}")
    for index in range(len(files)):
        (folder / f"tmp_{index:03d}").rename(folder / f"IM{len(files) - index:04d}")
    return folder


def import_all(project: Project, paths, copy: bool = False):
    steps = iter_import(project, plan_import(paths), copy=copy)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def source_slices(folder: Path) -> list:
    """The series' headers ordered by position along the slice normal (the slice order)."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in folder.iterdir()]
    orientation = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(headers, key=lambda h: float(np.dot(np.asarray(h.ImagePositionPatient, dtype=float), normal)))


def frames_by_source(seg_path: Path, sources: list) -> np.ndarray:
    """The SEG's label map, one plane per source slice in ``sources``' order."""
    seg = hd.seg.segread(seg_path)
    return seg.get_pixels_by_source_instance(source_sop_instance_uids=[s.SOPInstanceUID for s in sources],
                                             combine_segments=True)


@pytest.fixture
def ct_case(tmp_path):
    """The abdominal CT as a DICOM series, referenced by a project, with its pancreas label saved
    as a correction."""
    source = dicom_series_of("abdomen_ct", tmp_path / "dicom" / "abdomen")
    project = Project.create(tmp_path / "project")
    assert import_all(project, [source]).added == ["abdomen"]
    label = read_volume(SAMPLES / "abdomen_ct_pancreas_label.nii.gz").array
    project.save_label("abdomen", label, "corrected", author="dr lee")
    yield project, source, label
    project.close()


def test_the_segment_equals_the_label_slice_by_slice_and_references_the_source_instances(ct_case, tmp_path):
    project, source, label = ct_case
    report = export_case(project, "abdomen", tmp_path / "out", kinds=("label",), label_format="dicom-seg",
                         segment_label="pancreas")

    path = report.written["label"]
    assert path == tmp_path / "out" / "abdomen_label.dcm"
    sources = source_slices(source)
    assert np.array_equal(frames_by_source(path, sources), label)
    seg = pydicom.dcmread(path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == \
        {s.SOPInstanceUID for s in sources}
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    # Each frame lies where the slice it was drawn on lies.
    position_of = {s.SOPInstanceUID: [float(v) for v in s.ImagePositionPatient] for s in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        drawn_on = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, position_of[drawn_on], atol=1e-3)
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "pancreas"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "15776009"  # SNOMED CT: pancreas
    assert segment.SegmentAlgorithmType == "MANUAL"  # a corrected label


def test_a_prediction_on_a_flipped_grid_is_automatic_and_names_its_model_version(tmp_path):
    # The hippocampus MRI's grid is flipped in x and y; its label has two structures.
    source = dicom_series_of("hippocampus_001", tmp_path / "dicom" / "hippo")
    label = read_volume(SAMPLES / "hippocampus_001_label.nii.gz").array
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    with Project.create(tmp_path / "project") as project:
        import_all(project, [source], copy=True)
        model = project.register_model({"name": "cpu-small"}, weights, method="uamt", config={}, metrics={})
        version = project.save_label("hippo", label, "prediction", model_id=model.id)
        probabilities = np.stack([label == value for value in range(3)]).astype(np.float32)
        project.save_soft_label("hippo", probabilities, label_version_id=version.id, model_id=model.id)
        report = export_case(project, "hippo", tmp_path / "out", label_format="dicom-seg",
                             segment_label="hippocampus")

    assert sorted(path.name for path in report.written.values()) == \
        ["hippo_label.dcm", "hippo_softlabel.nii.gz", "hippo_uncertainty.nii.gz"]  # soft ones stay NIfTI
    assert np.array_equal(frames_by_source(report.written["label"], source_slices(source)), label)
    seg = pydicom.dcmread(report.written["label"])
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["hippocampus 1", "hippocampus 2"]
    for segment in seg.SegmentSequence:
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "napari-semiseg cpu-small"
        assert algorithm.AlgorithmVersion == f"model version {model.id} (uamt)"


def test_slices_are_matched_by_their_position_not_by_their_order_in_the_headers(ct_case, tmp_path):
    project, source, label = ct_case
    kept = project.dicom_source("abdomen").headers_path
    kept.write_text(json.dumps(json.loads(kept.read_text())[::-1]))  # last slice first
    with sqlite3.connect(project.root / "project.db") as conn:
        conn.execute("UPDATE dicom_sources SET sha256 = ?", (hashlib.sha256(kept.read_bytes()).hexdigest(),))

    report = export_case(project, "abdomen", tmp_path / "out", kinds=("label",), label_format="dicom-seg")
    assert np.array_equal(frames_by_source(report.written["label"], source_slices(source)), label)


def test_the_export_outlives_the_source_series(ct_case, tmp_path):
    project, source, label = ct_case
    sources = source_slices(source)
    for path in source.iterdir():
        path.unlink()
    source.rmdir()
    assert project.collect_garbage() == []  # the kept headers are the catalogue's, not garbage

    report = export_case(project, "abdomen", tmp_path / "out", kinds=("label",), label_format="dicom-seg")
    assert np.array_equal(frames_by_source(report.written["label"], sources), label)


def test_a_case_not_read_from_dicom_is_refused_and_nothing_is_written(tmp_path):
    image = tmp_path / "scan.nii.gz"
    write_volume(image, read_volume(SAMPLES / "hippocampus_001.nii.gz"))
    with Project.create(tmp_path / "project") as project:
        import_all(project, [image])
        project.save_label("scan", read_volume(SAMPLES / "hippocampus_001_label.nii.gz").array, "gold")
        assert not is_from_dicom(project, "scan")
        with pytest.raises(ProjectError, match="^case scan: not read from DICOM; export NIfTI instead$"):
            export_case(project, "scan", tmp_path / "out", label_format="dicom-seg")
    assert not (tmp_path / "out").exists()


def test_damaged_kept_headers_are_named_and_nothing_is_written(ct_case, tmp_path):
    project, _source, _label = ct_case
    kept = project.dicom_source("abdomen").headers_path
    kept.write_bytes(kept.read_bytes()[:100])

    with pytest.raises(VolumeError, match="differ from the recorded SHA-256") as refused:
        export_case(project, "abdomen", tmp_path / "out", label_format="dicom-seg")
    assert str(refused.value).startswith(f"{kept}: ")
    assert any(str(kept) in problem for problem in project.check())
    assert not (tmp_path / "out").exists()


def test_a_series_without_a_frame_of_reference_is_refused_with_the_reason(tmp_path):
    source = dicom_series_of("hippocampus_001", tmp_path / "dicom" / "hippo")
    for path in source.iterdir():
        header = pydicom.dcmread(path)
        del header.FrameOfReferenceUID
        header.save_as(path)
    with Project.create(tmp_path / "project") as project:
        import_all(project, [source])
        project.save_label("hippo", read_volume(SAMPLES / "hippocampus_001_label.nii.gz").array, "gold")
        with pytest.raises(ProjectError, match="^case hippo: cannot write a DICOM-SEG .*Frame Of Reference"):
            export_case(project, "hippo", tmp_path / "out", label_format="dicom-seg")
    assert not (tmp_path / "out").exists()


def test_a_series_that_does_not_lie_on_the_case_grid_is_refused(ct_case, tmp_path):
    # The kept headers say one thing, the recorded grid another (a series edited since): never
    # reference slices the label was not drawn on.
    project, source, label = ct_case
    with sqlite3.connect(project.root / "project.db") as conn:
        conn.execute("DELETE FROM dicom_sources")
    for path in sorted(source.iterdir())[:1]:
        header = pydicom.dcmread(path)
        position = [float(v) for v in header.ImagePositionPatient]
        header.ImagePositionPatient = [position[0], position[1], position[2] + 1.0]
        header.save_as(path)

    with pytest.raises(ProjectError, match="^case abdomen: DICOM slice .*not on one of its slices"):
        export_case(project, "abdomen", tmp_path / "out", label_format="dicom-seg")


def test_a_case_imported_before_headers_were_kept_reads_them_from_its_series(ct_case, tmp_path):
    project, source, label = ct_case
    with sqlite3.connect(project.root / "project.db") as conn:
        conn.execute("DELETE FROM dicom_sources")  # as a project of an earlier release holds it
    assert project.dicom_source("abdomen") is None and is_from_dicom(project, "abdomen")

    report = export_case(project, "abdomen", tmp_path / "out", kinds=("label",), label_format="dicom-seg")
    assert np.array_equal(frames_by_source(report.written["label"], source_slices(source)), label)
