"""File → Open Sample in a real napari window: the samples draw, placed by their geometry."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("key, screenshot", [("la-phantom", "sample-la-phantom.png"),
                                             ("abdomen-ct", "sample-abdomen-ct-pancreas.png")])
def test_sample_opens_in_the_window_with_its_labels_visible(make_napari_viewer, qtbot,
                                                            screenshots_dir, key, screenshot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 800)
    viewer.open_sample("napari-semiseg", key)
    image, labels = viewer.layers
    # Step to the plane with the most labelled voxels so the screenshot shows them.
    z = int(np.argmax((np.asarray(labels.data) > 0).sum(axis=(1, 2))))
    viewer.dims.set_point(0, labels.translate[0] + z * labels.scale[0])
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(str(screenshots_dir / screenshot), canvas_only=True)
    red, green, blue = (shot[..., c].astype(int) for c in range(3))
    assert shot[..., :3].std() > 10, "the image is drawn"
    assert ((red > green + 30) & (red > blue + 30)).sum() > 20, "label 1 is drawn over it"
