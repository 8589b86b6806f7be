"""The Project panel's Export offers DICOM-SEG for a case read from DICOM (issue 17 §1), in a real
napari window: a clinician imports a DICOM series (the shipped hippocampus MRI written as one)
and a NIfTI scan, corrects the series' label, and exports it as a DICOM-SEG that references the
series; for the NIfTI scan the choice is not offered."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

import napari_semiseg.samples
from data_factory import write_dicom_series
from napari_semiseg.io import read_volume, write_volume
from napari_panel_support import dock

pytestmark = pytest.mark.gui

SAMPLES = Path(napari_semiseg.samples.__file__).parent
WAIT_MS = 120_000


def _wait(job, qtbot) -> None:
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)


def test_export_offers_dicom_seg_for_a_case_read_from_dicom(tmp_path, make_napari_viewer, qtbot):
    incoming = tmp_path / "incoming"
    series = write_dicom_series(incoming / "hippo", read_volume(SAMPLES / "hippocampus_001.nii.gz"))
    write_volume(incoming / "scan.nii.gz", read_volume(SAMPLES / "hippocampus_004.nii.gz"))
    viewer = make_napari_viewer()
    panel = dock(viewer, "Project")
    panel.folder_edit.setText(str(tmp_path / "project"))
    panel.create_button.click()
    _wait(panel.import_volumes([incoming]), qtbot)

    panel.open_case("scan")
    assert not panel.label_format_combo.isEnabled() and panel.label_format_combo.currentText() == "NIfTI"
    assert "not read from DICOM" in panel.label_format_combo.toolTip()

    panel.open_case("hippo")
    assert panel.label_format_combo.isEnabled()
    panel.label_format_combo.setCurrentText("DICOM-SEG")
    assert panel.segment_edit.isEnabled()
    panel.segment_edit.setText("hippocampus")
    drawn = read_volume(SAMPLES / "hippocampus_001_label.nii.gz").array
    panel.labels_layer.data = drawn.copy()
    panel.save_correction()
    out = tmp_path / "for the PACS"
    _wait(panel.export_case(out), qtbot)

    assert [p.name for p in out.iterdir()] == ["hippo_label.dcm"]  # a correction has no soft label
    assert f"Exported case hippo into {out}: hippo_label.dcm" in panel.status_label.text()
    sources = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in series.iterdir()),
                     key=lambda h: int(h.InstanceNumber))  # the writer numbers slices along z
    frames = hd.seg.segread(out / "hippo_label.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in sources], combine_segments=True)
    np.testing.assert_array_equal(frames, drawn)
    seg = pydicom.dcmread(out / "hippo_label.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["hippocampus 1", "hippocampus 2"]
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"MANUAL"}

    panel.open_case("scan")  # back to a NIfTI case: the choice falls back to NIfTI
    assert panel.label_format_combo.currentText() == "NIfTI" and not panel.segment_edit.isEnabled()
