"""npe2 reader: medical volumes (NIfTI, NRRD, MetaImage, LA h5, DICOM folders) as layers.

Every file becomes an Image layer placed by its geometry (``scale`` = spacing,
``translate`` = origin); a file that carries its label (the LA ``mri_norm2.h5``) adds a Labels
layer on the same grid. An ``.h5``/``.hdf5`` file is taken only when it holds the LA layout's
3-D ``image`` dataset: HDF5 is a container many plugins read, and napari offers a file to the
next reader only when this one returns None. A file that cannot be read raises ``VolumeError`` naming the file and
the problem, and napari shows that message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..io import holds_la_image
from ._layers import LayerDataTuple, layer_name_for, volume_layers

#: File name endings this reader claims (lower case); the manifest lists the same patterns.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".h5", ".hdf5", ".dcm")
#: Endings of HDF5 containers: claimed only when the file holds an LA-style ``image``.
HDF5_SUFFIXES = (".h5", ".hdf5")

#: A folder is offered to this reader when it holds DICOM files; only a few are sniffed.
_DICOM_SNIFF_LIMIT = 20


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list] | None:
    """Return ``read_volumes`` when every path is a volume this plugin reads, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if paths and all(_is_readable(Path(p)) for p in paths):
        return read_volumes
    return None


def read_volumes(path: str | list[str]) -> list[LayerDataTuple]:
    """Read one or more volumes into layer data tuples (Image, and Labels when present).

    Raises:
        VolumeError: a file is missing, unreadable, not 3-D, has NaN/inf voxels, ...
    """
    from ..io import read_volume  # SimpleITK is imported only when a file is really read

    layers: list[LayerDataTuple] = []
    for one in _one_path_per_volume(path):
        layers.extend(volume_layers(read_volume(one), layer_name_for(one)))
    return layers


def _one_path_per_volume(path: str | list[str]) -> list[Path]:
    """The paths to read: of several .dcm files in one folder only the first (``read_volume``
    reads a .dcm file's whole series, so the others would open the same volume again)."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    unique: dict[Path, Path] = {}
    for one in paths:
        unique.setdefault(one.parent if one.suffix.lower() == ".dcm" else one, one)
    return list(unique.values())


def _is_readable(path: Path) -> bool:
    if path.is_dir():
        return _looks_like_dicom_folder(path)
    name = path.name.lower()
    if name.endswith(HDF5_SUFFIXES):
        return holds_la_image(path)
    return name.endswith(VOLUME_SUFFIXES)


def _looks_like_dicom_folder(folder: Path) -> bool:
    """True when one of the first files is DICOM (``.dcm`` or the ``DICM`` magic at byte 128)."""
    for index, child in enumerate(sorted(folder.iterdir())):
        if index >= _DICOM_SNIFF_LIMIT:
            break
        if not child.is_file():
            continue
        if child.suffix.lower() == ".dcm":
            return True
        try:
            with open(child, "rb") as handle:
                handle.seek(128)
                if handle.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False
