"""The README's main job, headless, as a real process on the test's virtual X server."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from napari_semiseg.project import Project

pytestmark = pytest.mark.gui


def test_headless_demo_builds_the_project_and_saves_a_window_screenshot(tmp_path):
    assert os.environ.get("DISPLAY"), "pytest-xvfb provides the display"
    # The whole loop (a first model trained from the Fine-tune panel, made active, the open case
    # predicted) with 2 training steps: the default's 24 steps make a better model, which nothing
    # here measures.
    result = subprocess.run(
        [sys.executable, "-m", "napari_semiseg.demo", "--out", str(tmp_path), "--headless",
         "--shared-data", str(tmp_path / "no-shared-data"), "--train-iterations", "2"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    with Project.open(tmp_path / "project") as project:
        cases = {case.id: case for case in project.cases()}
        model = project.active_model()
    assert model is not None and model.metrics["iterations"] == 2, "the panel trained the first model"
    assert {"hippocampus_001", "hippocampus_004", "la_phantom_00"} <= set(cases)
    assert cases["hippocampus_001"].latest_kind == "gold"
    assert cases["la_phantom_01"].latest_kind is None

    screenshot = np.asarray(Image.open(tmp_path / "demo-screenshot.png").convert("RGB"))
    assert screenshot.shape[0] >= 600 and screenshot.shape[1] >= 1000, "the whole window"
    assert screenshot.std() > 10, "not a blank window"
    # The opened case's label 1 is drawn in napari's reddish-brown over the grey image (the
    # window's own highlights are blue): a visible share of the window is red-dominant.
    red, green, blue = (screenshot[..., c].astype(int) for c in range(3))
    assert ((red > green + 30) & (red > blue + 30)).mean() > 0.01
