"""What a child process rebuilds its cases from: training cases named by files, as plain data.

A run's ``config.json`` lists its cases as ``DataSpec`` (labelled, unlabelled, validation), each
a ``CaseSpec`` of file paths; ``CaseSource.from_spec`` turns one back into a lazy case.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...errors import TrainingError
from .._field_types import check_field_types


@dataclass(frozen=True)
class CaseSpec:
    """A training case named by files, so that a child process can load it.

    Attributes:
        case_id: the case's name (events, validation tables).
        image: the image file (NIfTI, NRRD, MHA, a DICOM folder, an LA ``mri_norm2.h5``, or a
            ``.npy`` (z, y, x) array with unit spacing).
        label: the label file on the image's grid; the image path itself when the file
            carries both (the LA h5 files); None for an unlabelled case.
        label_version: the project label version the file is, when it came from a project.
    """

    case_id: str
    image: str
    label: str | None = None
    label_version: int | None = None

    @classmethod
    def from_dict(cls, data: dict, where: str = "case") -> "CaseSpec":
        """A case from plain data, each value of its field's type (``TrainingError`` names the key)."""
        return _checked(cls, data, where)


@dataclass(frozen=True)
class DataSpec:
    """The cases of a run: labelled, unlabelled and validation (labelled, never trained on)."""

    labeled: tuple[CaseSpec, ...] = ()
    unlabeled: tuple[CaseSpec, ...] = ()
    validation: tuple[CaseSpec, ...] = ()

    def to_dict(self) -> dict:
        return {part: [dataclasses.asdict(c) for c in getattr(self, part)]
                for part in ("labeled", "unlabeled", "validation")}

    @classmethod
    def from_dict(cls, data: dict, where: str = "data") -> "DataSpec":
        parts = _checked(cls, data, where, build=False)
        return cls(**{part: tuple(CaseSpec.from_dict(case, f"{where}: {part}[{i}]")
                                  for i, case in enumerate(parts.get(part, ())))
                      for part in ("labeled", "unlabeled", "validation")})


def _checked(cls, data, where: str, build: bool = True):
    """``cls(**data)`` (or the checked dict, ``build=False``) after checking keys and value types."""
    if not isinstance(data, dict):
        raise TrainingError(f"{where}: must be a mapping, got {data!r}")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TrainingError(f"{where}: unknown key(s) {sorted(unknown)}")
    checked = check_field_types(cls, data, where=where, error=TrainingError)
    if not build:
        return checked
    try:
        return cls(**checked)
    except TypeError as exc:  # a required key is missing
        raise TrainingError(f"{where}: {exc}") from None


__all__ = ["CaseSpec", "DataSpec"]
