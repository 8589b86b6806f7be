"""Sample volumes shipped with the package, and the synthetic left-atrium phantom.

No napari here: the napari face turns these into layers; ``build_sample_project`` (io and
project only) turns them into a project for the demo and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._phantom import LA_SPACING, PhantomStyle, make_la_phantom
from ._sample_project import SampleProjectSpec, build_sample_project

__all__ = ["LA_SPACING", "PhantomStyle", "SampleCase", "SAMPLE_CASES", "SampleProjectSpec",
           "build_sample_project", "make_la_phantom", "sample_path"]


@dataclass(frozen=True)
class SampleCase:
    """One shipped volume and its label file.

    Attributes:
        key: short identifier, also the case id the demo project uses.
        image: file name of the image inside this package.
        label: file name of its label map, on the image's grid.
        modality: "MR" or "CT".
        description: one line for menus.
    """

    key: str
    image: str
    label: str
    modality: str
    description: str


SAMPLE_CASES: dict[str, SampleCase] = {case.key: case for case in (
    SampleCase("hippocampus_001", "hippocampus_001.nii.gz", "hippocampus_001_label.nii.gz", "MR",
               "Hippocampus T1 MRI 001 with labels (MSD, CC BY-SA 4.0)"),
    SampleCase("hippocampus_004", "hippocampus_004.nii.gz", "hippocampus_004_label.nii.gz", "MR",
               "Hippocampus T1 MRI 004 with labels (MSD, CC BY-SA 4.0)"),
    SampleCase("abdomen_ct", "abdomen_ct.nii.gz", "abdomen_ct_pancreas_label.nii.gz", "CT",
               "Abdominal CT with pancreas label (TotalSegmentator, Apache-2.0)"),
)}


def sample_path(file_name: str) -> Path:
    """The installed path of a shipped sample file (works for editable and normal installs)."""
    path = Path(str(resources.files(__name__) / file_name))
    if not path.is_file():
        raise FileNotFoundError(f"sample file {file_name} is not installed in {path.parent}")
    return path
