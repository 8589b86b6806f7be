"""Replace a panel's result layer in place, so that a clinician's display settings survive a rerun.

The Predict and Soft-label correction panels show results as layers named after the case; a new
result for the same case updates the existing layer (data, placement, metadata) rather than adding
another, keeping its colormap, opacity and contrast as the user left them.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Layer

LAYER_TYPES = {"image": Image, "labels": Labels}


def update_layer_in_place(viewer, data, kwargs: dict, layer_type: str) -> Layer | None:
    """Give the layer called ``kwargs["name"]`` the new data and placement; return it.

    None when the viewer has no such layer of ``layer_type``: the caller adds one (a layer of
    that name and another type is removed first).
    """
    name = kwargs["name"]
    if name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    if not isinstance(layer, LAYER_TYPES[layer_type]):
        viewer.layers.remove(layer)
        return None
    layer.metadata.update(kwargs["metadata"])
    layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
    layer.affine = kwargs.get("affine", np.eye(4))
    layer.data = data
    return layer


__all__ = ["LAYER_TYPES", "update_layer_in_place"]
