"""Writes are all or nothing: a failing write leaves the destination as it was, and no debris.

The failures here are real: a child process writes under a file-size limit (RLIMIT_FSIZE), so
the operating system refuses the data midway, as on a full disk. ITK's NIfTI writer does not
notice that by itself; the io layer must.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from data_factory import folder_snapshot, make_label, make_volume

from napari_semiseg.errors import VolumeError
from napari_semiseg.io import read_label, read_volume, write_label

resource = pytest.importorskip("resource")

SHAPE = (40, 40, 40)   # 64 kB of incompressible uint8 labels
LIMIT_BYTES = 16_384

CHILD = r"""
import json, resource, signal, sys
import numpy as np
from napari_semiseg.errors import VolumeError
from napari_semiseg.io import Volume, write_label, write_volume

from napari_semiseg.io import Geometry
what, destination, control = sys.argv[1:4]
geometry = Geometry.from_dict(json.loads(sys.argv[4]))
array = np.random.default_rng(7).integers(0, 256, geometry.shape).astype(np.uint8)

def write(path):
    if what == "label":
        write_label(path, array, geometry)
    else:
        write_volume(path, Volume(array.astype(np.float32), geometry))

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG from write() instead of dying
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[5]), hard))
try:
    write(destination)
    outcome = {"raised": None}
except VolumeError as error:
    outcome = {"raised": "VolumeError", "message": str(error)}
except BaseException as error:
    outcome = {"raised": type(error).__name__, "message": str(error)}
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
write(control)                                   # the same write succeeds without the limit
print(json.dumps(outcome))
"""


def write_under_size_limit(what: str, destination, control, geometry) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(destination), str(control),
         json.dumps(geometry.to_dict()), str(LIMIT_BYTES)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_write_label_refused_midway_leaves_the_saved_label_intact(tmp_path, suffix):
    volume = make_volume(shape=SHAPE)
    saved = make_label(SHAPE, n_classes=3)
    (tmp_path / "labels").mkdir()
    destination = write_label(tmp_path / "labels" / f"case{suffix}", saved, volume.geometry)
    before = folder_snapshot(tmp_path / "labels")

    outcome = write_under_size_limit("label", destination, tmp_path / f"control{suffix}",
                                     volume.geometry)

    assert outcome["raised"] == "VolumeError", outcome
    assert outcome["message"].startswith(f"{destination}: ")
    assert "nothing was saved" in outcome["message"]
    assert folder_snapshot(tmp_path / "labels") == before      # same bytes, no temp file
    np.testing.assert_array_equal(read_label(destination, volume.geometry), saved)
    control = read_label(tmp_path / f"control{suffix}", volume.geometry)
    assert control.shape == SHAPE and len(np.unique(control)) > 200


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_write_volume_refused_midway_creates_nothing(tmp_path, suffix):
    volume = make_volume(shape=SHAPE)
    (tmp_path / "images").mkdir()

    outcome = write_under_size_limit("volume", tmp_path / "images" / f"new{suffix}",
                                     tmp_path / f"control{suffix}", volume.geometry)

    assert outcome["raised"] == "VolumeError", outcome
    assert folder_snapshot(tmp_path / "images") == {}
    assert read_volume(tmp_path / f"control{suffix}").shape == SHAPE


def test_successful_overwrite_replaces_the_file_and_leaves_no_temp(tmp_path):
    volume = make_volume()
    first, second = make_label(volume.shape, seed=1), make_label(volume.shape, seed=2)
    path = write_label(tmp_path / "label.nii.gz", first, volume.geometry)

    write_label(path, second, volume.geometry)

    assert [p.name for p in tmp_path.iterdir()] == ["label.nii.gz"]
    np.testing.assert_array_equal(read_label(path, volume.geometry), second)


def test_write_where_the_folder_cannot_exist(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    volume = make_volume()
    destination = tmp_path / "a_file" / "label.nii.gz"
    with pytest.raises(VolumeError, match=r"cannot be written, nothing was saved"):
        write_label(destination, make_label(volume.shape), volume.geometry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_atomic_files_are_readable_like_any_file_the_user_makes(tmp_path):
    from napari_semiseg.io._atomic import atomic_write_bytes
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "label.bin", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "label.bin").stat().st_mode) == 0o644
