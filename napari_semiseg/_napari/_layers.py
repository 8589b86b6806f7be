"""Volumes ⇄ napari layers, keeping the geometry with the data.

napari places a layer with ``scale`` (voxel size) and ``translate`` (position of voxel 0), both
in the layer's (z, y, x) axis order, which is exactly ``Geometry.spacing`` and
``Geometry.origin``. The direction cosines have no axis-aligned napari equivalent, so the full
``Geometry`` rides along in ``layer.metadata[GEOMETRY_KEY]`` and the writer puts it back.

The functions return napari ``LayerDataTuple``s ``(data, kwargs, layer_type)``; nothing here
creates a layer, so readers, samples and widgets share them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..io import Geometry, Volume

GEOMETRY_KEY = "semiseg_geometry"
SOURCE_KEY = "semiseg_source"
LABEL_VERSION_KEY = "semiseg_label_version"
CASE_KEY = "semiseg_case"

LayerDataTuple = tuple  # (data, kwargs, "image" | "labels")

#: Soft-tissue window (level 40 HU, width 400 HU) used for CT instead of percentiles.
CT_WINDOW = (-160.0, 240.0)
#: The names napari gives the axes of every layer placed here (the slice slider shows "z"; by
#: default napari names them "-3", "-2", "-1").
AXIS_LABELS = ("z", "y", "x")


def layer_metadata(geometry: Geometry, source: str | Path | None = None, **extra) -> dict:
    """The metadata dict every semiseg layer carries: geometry, source file, extras."""
    metadata = {GEOMETRY_KEY: geometry.to_dict()}
    if source is not None:
        metadata[SOURCE_KEY] = str(source)
    metadata.update({f"semiseg_{key}": value for key, value in extra.items()})
    return metadata


def placement(geometry: Geometry) -> dict:
    """napari ``scale``/``translate``/``affine``/``axis_labels`` keyword arguments for a (z, y, x) grid.

    ``scale`` and ``translate`` are the spacing and the origin. The direction cosines go into
    ``affine`` when they flip axes (NIfTI files stored in RAS read as diag(−1, −1, 1) in ITK's
    LPS): world = origin + flips·(position − origin), so that napari's screen axes (x to the
    right, y down) show patient left on the right and posterior at the bottom, as radiology
    does, instead of an upside-down CT. Other directions (axis permutations, oblique grids)
    would make napari slice off the axes, so they stay undrawn: the image shows as stored.
    """
    kwargs = {"scale": tuple(geometry.spacing), "translate": tuple(geometry.origin), "axis_labels": AXIS_LABELS}
    flips = axis_flips(geometry)
    if flips is not None and any(sign < 0 for sign in flips):
        affine = np.eye(4)
        affine[:3, :3] = np.diag(flips)
        affine[:3, 3] = (1.0 - np.asarray(flips)) * np.asarray(geometry.origin)
        kwargs["affine"] = affine
    return kwargs


def axis_flips(geometry: Geometry, tolerance: float = 1e-3) -> tuple[float, float, float] | None:
    """(z, y, x) signs of a direction that only flips axes; None for any other direction."""
    direction_xyz = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    direction_zyx = direction_xyz[::-1, ::-1]
    signs = np.sign(np.diag(direction_zyx))
    if np.any(signs == 0) or not np.allclose(direction_zyx, np.diag(signs), atol=tolerance):
        return None
    return tuple(float(s) for s in signs)


def display_range(array: np.ndarray) -> tuple[float, float]:
    """Contrast limits from the 0.5th and 99.5th percentiles, robust to a few bright voxels."""
    sample = np.asarray(array)[::2, ::2, ::2] if array.size > 2_000_000 else np.asarray(array)
    low, high = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
    return (low, high) if high > low else (low, low + 1.0)


def image_layer_data(array: np.ndarray, geometry: Geometry, name: str,
                     source: str | Path | None = None, modality: str | None = None,
                     **extra) -> LayerDataTuple:
    """An Image layer tuple for a (z, y, x) intensity array on ``geometry``.

    CT gets a fixed soft-tissue window (Hounsfield units mean the same in every scan); other
    modalities get a percentile window.
    """
    window = CT_WINDOW if (modality or "").upper() == "CT" else display_range(array)
    kwargs = {"name": name, "metadata": layer_metadata(geometry, source, **extra),
              "contrast_limits": window, "colormap": "gray", **placement(geometry)}
    return (array, kwargs, "image")


def labels_layer_data(array: np.ndarray, geometry: Geometry, name: str,
                      source: str | Path | None = None, **extra) -> LayerDataTuple:
    """A Labels layer tuple for an integer (z, y, x) label map on ``geometry``."""
    kwargs = {"name": name, "metadata": layer_metadata(geometry, source, **extra),
              "opacity": 0.5, **placement(geometry)}
    return (as_label_array(array), kwargs, "labels")


def as_label_array(array: np.ndarray) -> np.ndarray:
    """A label map as the smallest unsigned integer type napari paints on (uint8 when it fits)."""
    array = np.asarray(array)
    if array.dtype.kind in "ui" and array.dtype.itemsize <= 4:
        return array
    return array.astype(np.uint8 if array.size == 0 or array.max() < 256 else np.int32)


#: File names that announce a label map (``case_label.nii.gz``, ``seg.nrrd``, ``mask.mha``...).
_LABEL_NAME = re.compile(r"(^|[^a-z])(label|labels|seg|segmentation|mask|gt)([^a-z]|$)", re.IGNORECASE)


def looks_like_label_map(array: np.ndarray, name: str) -> bool:
    """True when a file named like a label map holds non-negative whole numbers.

    MSD ships some label maps as float32, so whole-number floats count too.
    """
    if not _LABEL_NAME.search(name) or array.dtype.kind not in "uif" or array.size == 0:
        return False
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        return False
    return float(array.min()) >= 0 and float(array.max()) < 2 ** 31


def volume_layers(volume: Volume, name: str) -> list[LayerDataTuple]:
    """Layers for a volume read from a file.

    An Image layer, plus a Labels layer when the volume carries its label (LA h5 files); a
    file that is itself a label map (``looks_like_label_map``) gives a Labels layer alone.
    """
    if volume.label is None and looks_like_label_map(volume.array, name):
        return [labels_layer_data(volume.array, volume.geometry, name, volume.source)]
    layers = [image_layer_data(volume.array, volume.geometry, name, volume.source)]
    if volume.label is not None:
        layers.append(labels_layer_data(volume.label, volume.geometry, f"{name} label",
                                        volume.source))
    return layers


def layer_name_for(path: str | Path) -> str:
    """A short layer name for a file: its name without suffixes, or the case folder of an LA h5."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".h5", ".hdf5"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    # The LA benchmark stores every case as <case id>/mri_norm2.h5.
    return path.parent.name if name == "mri_norm2" and path.parent.name else name


def geometry_from_meta(meta: dict, shape: tuple[int, ...]) -> Geometry:
    """The grid a layer lies on, from the kwargs-like dict napari hands writers.

    The geometry saved in ``metadata`` wins when it still fits the data's shape (it keeps the
    direction cosines); otherwise the layer's ``scale``/``translate`` give spacing and origin,
    with an identity direction.

    Args:
        meta: a dict with optional keys ``metadata``, ``scale`` and ``translate``.
        shape: the layer data's shape, (z, y, x).
    """
    saved = (meta.get("metadata") or {}).get(GEOMETRY_KEY)
    if saved is not None:
        geometry = Geometry.from_dict(saved)
        if geometry.shape == tuple(shape):
            return geometry
    ndim = len(shape)
    scale = tuple(meta.get("scale") or (1.0,) * ndim)[-3:]
    translate = tuple(meta.get("translate") or (0.0,) * ndim)[-3:]
    return Geometry(tuple(shape)[-3:], scale, translate)


def geometry_of_layer(layer) -> Geometry:
    """``geometry_from_meta`` for a live napari layer."""
    return geometry_from_meta({"metadata": layer.metadata, "scale": tuple(layer.scale),
                               "translate": tuple(layer.translate)}, layer.data.shape)
