"""SimpleITK images to and from (z, y, x) arrays with their geometry.

SimpleITK indexes images (x, y, z): ``GetSize``, ``GetSpacing`` and ``GetOrigin`` are (x, y, z)
while ``GetArrayFromImage`` already returns the voxels as (z, y, x). This module is the one place
that reverses the first three so that every ``Geometry`` is (z, y, x); the direction matrix is
kept in SimpleITK's own convention (see ``_volume``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import VolumeError
from ._volume import Geometry

_ITK_PREFIX = re.compile(r"^(ITK ERROR|sitk::ERROR|ERROR):\s*(\w+\(0x[0-9a-f]+\):\s*)?")
_TEEM_PREFIX = re.compile(r"^\[\w+\]\s*\w+:\s*")


def itk_reason(error: Exception) -> str:
    """The informative line of a SimpleITK/ITK exception, without source paths or addresses."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines
              if not line.startswith(("Exception thrown in SimpleITK", "Reason: No such file"))]
    if not useful:
        return "unknown reason"
    # Teem (NRRD) stacks its messages outermost first: the last one says what went wrong.
    line = useful[-1] if useful[-1].startswith("[") else useful[0]
    line = _TEEM_PREFIX.sub("", _ITK_PREFIX.sub("", line))
    return line[:300]


@contextlib.contextmanager
def quiet_itk_warnings() -> Iterator[None]:
    """Silence ITK's stderr warnings (e.g. "No Series were found"): we raise our own errors."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def require_scalar_3d(image: sitk.Image, path: Path) -> sitk.Image:
    """Return ``image`` as a scalar 3-D image, or raise naming what it is instead.

    A 4-D image whose 4th dimension has one element (a common way NIfTI/NRRD writers save a
    single time point) is squeezed to 3-D; any other 2-D, 4-D or vector image is refused,
    because the networks and the viewer's Labels layer need one scalar value per voxel.
    """
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(path, f"has {image.GetNumberOfComponentsPerPixel()} values per voxel "
                          "(a colour or vector image); a scalar 3-D volume is needed")
    if image.GetDimension() == 4 and size[3] == 1:
        return sitk.Extract(image, (*size[:3], 0), (0, 0, 0, 0))
    if image.GetDimension() != 3:
        axes = {2: "(y, x)", 4: "(t, z, y, x)"}.get(image.GetDimension(), "reversed (x, y, ...)")
        raise VolumeError(path, f"is a {image.GetDimension()}-D image, shape {axes} = "
                          f"{tuple(reversed(size))}; a 3-D volume is needed")
    return image


def image_to_array(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """The voxels of a scalar 3-D image as a (z, y, x) array in the file's dtype, and its grid."""
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(array.shape, tuple(reversed(image.GetSpacing())),
                        tuple(reversed(image.GetOrigin())), image.GetDirection())
    return array, geometry


def array_to_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A SimpleITK image of a (z, y, x) array placed on ``geometry``'s grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(tuple(reversed(geometry.spacing)))
    image.SetOrigin(tuple(reversed(geometry.origin)))
    image.SetDirection(geometry.direction)
    return image
