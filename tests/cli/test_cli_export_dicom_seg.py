"""``semiseg export --format dicom-seg`` (issue 17 §1): a researcher imports a DICOM series with
its label and exports the label as a DICOM-SEG a PACS reads beside the series. In process
(``cli.main``), on the shipped abdominal CT written as a DICOM series."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom

import napari_semiseg.samples
from data_factory import write_dicom_series
from napari_semiseg.cli import main
from napari_semiseg.io import read_volume, write_volume

SAMPLES = Path(napari_semiseg.samples.__file__).parent


def semiseg(capsys, *args) -> tuple[int, str, str]:
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_export_dicom_seg_of_an_imported_series_and_its_label(tmp_path, capsys):
    series = write_dicom_series(tmp_path / "scans" / "abdomen", read_volume(SAMPLES / "abdomen_ct.nii.gz"))
    label = read_volume(SAMPLES / "abdomen_ct_pancreas_label.nii.gz")
    write_volume(tmp_path / "labels" / "abdomen_label.nii.gz", label)
    project = tmp_path / "project"
    assert semiseg(capsys, "init", project)[0] == 0
    assert semiseg(capsys, "import", project, tmp_path / "scans", "--labels", tmp_path / "labels",
                   "--modality", "CT")[0] == 0

    status, out, err = semiseg(capsys, "export", project, "--case", "abdomen", "--format", "dicom-seg",
                               "--segment-label", "pancreas", "-o", tmp_path / "out", "--json")

    assert status == 0, err
    (exported,) = json.loads(out)
    path = Path(exported["files"]["label"])
    assert path == tmp_path / "out" / "abdomen_label.dcm"
    sources = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in series.iterdir()),
                     key=lambda h: int(h.InstanceNumber))  # the writer numbers slices along z
    frames = hd.seg.segread(path).get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in sources], combine_segments=True)
    assert np.array_equal(frames, label.array)
    seg = pydicom.dcmread(path)
    assert seg.SegmentSequence[0].SegmentLabel == "pancreas"
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"  # the imported gold label
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID


def test_dicom_seg_of_a_case_not_read_from_dicom_is_a_user_error(tmp_path, capsys):
    scans = tmp_path / "scans"
    write_volume(scans / "scan.nii.gz", read_volume(SAMPLES / "hippocampus_001.nii.gz"))
    write_volume(scans / "scan_label.nii.gz", read_volume(SAMPLES / "hippocampus_001_label.nii.gz"))
    project = tmp_path / "project"
    semiseg(capsys, "init", project)
    assert semiseg(capsys, "import", project, scans, "--labels", scans)[0] == 0

    status, out, err = semiseg(capsys, "export", project, "--case", "scan", "--format", "dicom-seg",
                               "-o", tmp_path / "out")
    assert status == 2
    assert err == "semiseg: error: case scan: not read from DICOM; export NIfTI instead\n"
    assert not (tmp_path / "out").exists()

    status, _out, err = semiseg(capsys, "export", project, "--case", "scan", "--segment-label", "hippocampus",
                                "-o", tmp_path / "out")
    assert status == 2 and "--segment-label" in err and "--format dicom-seg" in err
    assert not (tmp_path / "out").exists()
