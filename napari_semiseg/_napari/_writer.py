"""npe2 writer: a Labels layer back to NIfTI/NRRD/MHA in the geometry it was opened with.

The grid comes from ``metadata["semiseg_geometry"]`` when the layer came from this plugin (so
the direction cosines survive), else from the layer's ``scale``/``translate``. The write is
atomic (``io.write_label``): an existing file is replaced whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._layers import as_label_array, geometry_from_meta

#: Suffixes offered in napari's save dialog, the first being the default.
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write one Labels layer; return the written path.

    Args:
        path: destination; a name without a known suffix gets ``.nii.gz``.
        data: the layer's (z, y, x) integer label array.
        meta: the layer's attributes as napari passes them (``metadata``, ``scale``, ``translate``).

    Raises:
        VolumeError: the labels are not 3-D, not integers >= 0, or the file cannot be written.
    """
    from ..errors import VolumeError
    from ..io import write_label

    destination = Path(path)
    if not destination.name.lower().endswith(LABEL_SUFFIXES):
        destination = destination.with_name(destination.name + LABEL_SUFFIXES[0])
    array = np.asarray(data)
    if array.ndim != 3:
        raise VolumeError(destination, f"labels must be 3-D (z, y, x); this layer is {array.ndim}-D "
                                       f"with shape {array.shape}")
    array = as_label_array(array)
    write_label(destination, array, geometry_from_meta(meta, array.shape))
    return [str(destination)]
