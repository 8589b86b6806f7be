"""npe2 sample data: File → Open Sample → napari-semiseg.

Real volumes shipped in ``napari_semiseg/samples`` (see its README for licences) and the
synthetic left-atrium phantom; each sample gives an Image layer and its Labels layer, placed
by the volume's geometry.
"""

from __future__ import annotations

from ..io import Geometry
from ..samples import LA_SPACING, SAMPLE_CASES, make_la_phantom, sample_path
from ._layers import LayerDataTuple, image_layer_data, labels_layer_data

#: Shape (z, y, x) of the phantom offered in the menu: LA-like field of view at 0.625 mm.
MENU_PHANTOM_SHAPE = (64, 112, 112)


def load_sample_case(key: str) -> list[LayerDataTuple]:
    """Image and Labels layers of a shipped sample case (a key of ``SAMPLE_CASES``).

    Raises:
        VolumeError: the installed file is damaged.
    """
    from ..io import read_label, read_volume

    case = SAMPLE_CASES[key]
    volume = read_volume(sample_path(case.image))
    label = read_label(sample_path(case.label), like=volume.geometry)
    return [image_layer_data(volume.array, volume.geometry, key, volume.source, case.modality),
            labels_layer_data(label, volume.geometry, f"{key} label", sample_path(case.label))]


def hippocampus_001() -> list[LayerDataTuple]:
    """MSD hippocampus T1 MRI 001 and its anterior/posterior labels."""
    return load_sample_case("hippocampus_001")


def hippocampus_004() -> list[LayerDataTuple]:
    """MSD hippocampus T1 MRI 004 and its anterior/posterior labels."""
    return load_sample_case("hippocampus_004")


def abdomen_ct() -> list[LayerDataTuple]:
    """Abdominal CT (3 mm) with a binary pancreas label."""
    return load_sample_case("abdomen_ct")


def la_phantom(seed: int = 0) -> list[LayerDataTuple]:
    """A synthetic left-atrium-like MRI (blurred low-contrast blob, vein branches) and its label."""
    image, label = make_la_phantom(MENU_PHANTOM_SHAPE, LA_SPACING, seed=seed)
    geometry = Geometry(image.shape, LA_SPACING)
    name = f"la_phantom_{seed}"
    return [image_layer_data(image, geometry, name), labels_layer_data(label, geometry, f"{name} label")]
