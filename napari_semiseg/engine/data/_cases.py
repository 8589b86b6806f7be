"""Where training cases come from: lazy case sources, and their preparation for the network.

The trainer never sees a project or a folder: it sees ``CaseSource`` objects, each a case id
and a callable that loads the raw image (and label) when asked. Sources come from files
(``from_files``, ``TrainingData.from_spec``: what a child process rebuilds from its JSON
config), from in-memory arrays (``from_arrays``: scripts, tests, the viewer's open layers) or
from a project (``engine.training.data_spec_from_project``). Loading is deferred so that
only the volumes in the bounded cache (``_cache``) are ever in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import torch
import torch.nn.functional as F

from ...errors import SemisegError, TrainingError
from ...io import Volume
from ..cards import ModelCard
from ..inference import prepare_input
from ._specs import CaseSpec, DataSpec

Spacing = tuple[float, float, float]


@dataclass(frozen=True)
class LoadedCase:
    """A raw case as read: no preprocessing yet.

    Attributes:
        image: (z, y, x) intensities, or (c, z, y, x) with channels first.
        spacing: (z, y, x) voxel size in mm.
        label: (z, y, x) integer classes on the image's grid, or None.
        zscored: the image already is the z-score of its whole scan (``Volume.zscored``).
    """

    image: np.ndarray
    spacing: Spacing
    label: np.ndarray | None = None
    zscored: bool = False


@dataclass(frozen=True)
class PreparedCase:
    """A case ready for patch sampling (what the cache holds).

    Attributes:
        image: (C, Z, Y, X) float32 after the card's resampling and intensity recipe.
        label: (Z, Y, X) uint8 (int16 beyond 255 classes) on the same grid, or None.
    """

    image: np.ndarray
    label: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return self.image.nbytes + (0 if self.label is None else self.label.nbytes)


@dataclass(frozen=True)
class CaseSource:
    """One case, loaded only when ``load()`` is called.

    Attributes:
        case_id: the case's name (events, validation tables, error messages).
        load: returns the raw ``LoadedCase``; may be called many times (after cache
            evictions), so it must return the same data each time.
        labeled: whether ``load()`` gives a label.
    """

    case_id: str
    load: Callable[[], LoadedCase]
    labeled: bool

    @classmethod
    def from_arrays(cls, case_id: str, image: np.ndarray, label: np.ndarray | None = None,
                    spacing: Sequence[float] = (1.0, 1.0, 1.0), *, zscored: bool = False) -> "CaseSource":
        """A case held by the caller (the arrays are shared, not copied); ``zscored`` as in
        ``LoadedCase``."""
        loaded = LoadedCase(np.asarray(image), tuple(float(s) for s in spacing),
                            None if label is None else np.asarray(label), zscored)
        return cls(str(case_id), _Loaded(loaded), label is not None)

    @classmethod
    def from_files(cls, case_id: str, image: str | Path, label: str | Path | None = None) -> "CaseSource":
        """A case read from disk at each load (see ``CaseSpec`` for the accepted files)."""
        spec = CaseSpec(str(case_id), str(image), None if label is None else str(label))
        return cls.from_spec(spec)

    @classmethod
    def from_spec(cls, spec: CaseSpec) -> "CaseSource":
        return cls(spec.case_id, _FileLoader(spec.image, spec.label), spec.label is not None)


@dataclass(frozen=True)
class _Loaded:
    """Picklable loader of a case already in memory."""

    case: LoadedCase

    def __call__(self) -> LoadedCase:
        return self.case


@dataclass(frozen=True)
class _FileLoader:
    """Picklable loader of an image file and its label (for data-loading workers)."""

    image: str
    label: str | None

    def __call__(self) -> LoadedCase:
        if Path(self.image).suffix == ".npy":
            return _load_npy(Path(self.image), self.label)
        from ...io import read_label, read_volume  # io pulls SimpleITK: only when files are read
        volume = read_volume(self.image)
        if self.label is None:
            label = None
        elif Path(self.label) == Path(self.image):
            if volume.label is None:
                raise TrainingError(f"{self.image}: the file was named as its own label but carries none")
            label = volume.label
        else:
            label = read_label(self.label, like=volume.geometry)
        return LoadedCase(volume.array, volume.spacing, label, volume.zscored)


def _load_npy(image: Path, label: str | None) -> LoadedCase:
    try:
        array = np.load(image, mmap_mode="r")
        label_array = None if label is None else np.load(label)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{image}: cannot read the .npy case ({exc})") from None
    return LoadedCase(np.asarray(array), (1.0, 1.0, 1.0), label_array)


@dataclass(frozen=True)
class TrainingData:
    """The cases of a run.

    Attributes:
        labeled: cases with labels the loss sees.
        unlabeled: cases without (or ignoring) labels, for the semi-supervised terms.
        validation: labelled cases held out for the validation Dice (never trained on).
    """

    labeled: tuple[CaseSource, ...]
    unlabeled: tuple[CaseSource, ...] = ()
    validation: tuple[CaseSource, ...] = ()

    def __post_init__(self):
        for part in ("labeled", "unlabeled", "validation"):
            object.__setattr__(self, part, tuple(getattr(self, part)))

    @classmethod
    def from_spec(cls, spec: DataSpec) -> "TrainingData":
        return cls(tuple(CaseSource.from_spec(c) for c in spec.labeled),
                   tuple(CaseSource.from_spec(c) for c in spec.unlabeled),
                   tuple(CaseSource.from_spec(c) for c in spec.validation))

    def check(self, *, needs_unlabeled: bool) -> None:
        """Raise ``TrainingError`` when a run could not use these cases."""
        if not self.labeled:
            raise TrainingError("training needs at least one labelled case")
        unlabelled = [s.case_id for s in (*self.labeled, *self.validation) if not s.labeled]
        if unlabelled:
            raise TrainingError(f"case(s) {', '.join(unlabelled)} are listed as labelled or validation "
                                "cases but have no label")
        if needs_unlabeled and not self.unlabeled:
            raise TrainingError("this method trains on unlabelled cases too, but none were given "
                                "(or set batch_unlabeled to 0)")
        held_out = {s.case_id for s in self.validation}
        leaked = held_out & {s.case_id for s in (*self.labeled, *self.unlabeled)}
        if leaked:
            raise TrainingError(f"validation case(s) {', '.join(sorted(leaked))} are also training cases")


def prepare_case(source: CaseSource, card: ModelCard) -> PreparedCase:
    """Load a case and apply the card's preprocessing; check its label.

    Raises:
        TrainingError: the image has the wrong number of channels, the label is not on the
            image's grid, or it holds classes the card's network does not have.
    """
    try:
        loaded = source.load()
    except TrainingError:
        raise
    except SemisegError as exc:
        raise TrainingError(f"case {source.case_id}: {exc}") from None
    channels = card.network.in_channels
    image = np.asarray(loaded.image)
    if image.ndim == 3 and channels == 1:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != channels:
        raise TrainingError(f"case {source.case_id}: image of shape {image.shape} does not give the "
                            f"{channels} channel(s) of card {card.name!r}")
    label = None if loaded.label is None else _checked_label(source.case_id, loaded.label, image.shape[1:],
                                                             card.network.num_classes)
    try:
        image = np.stack([prepare_input(Volume.from_array(channel, spacing=loaded.spacing, zscored=loaded.zscored),
                                        card.preprocessing).image
                          for channel in image])
    except SemisegError as exc:
        raise TrainingError(f"case {source.case_id}: {exc}") from None
    if label is not None and label.shape != image.shape[1:]:
        label = resample_label(label, image.shape[1:])
    return PreparedCase(np.ascontiguousarray(image, dtype=np.float32), label)


def resample_label(label: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of a (z, y, x) label to ``shape`` with the inference's
    extent-preserving mapping (voxel edges of both grids coincide), keeping its dtype."""
    tensor = torch.from_numpy(np.ascontiguousarray(label).astype(np.int16))[None, None].float()
    out = F.interpolate(tensor, size=tuple(shape), mode="nearest-exact")[0, 0]
    return out.round().numpy().astype(label.dtype)


def _checked_label(case_id: str, label: np.ndarray, shape: tuple[int, ...], classes: int) -> np.ndarray:
    label = np.asarray(label)
    if label.shape != tuple(shape):
        raise TrainingError(f"case {case_id}: label shape {label.shape} differs from the image's {tuple(shape)}")
    if not np.issubdtype(label.dtype, np.integer) and not np.issubdtype(label.dtype, np.bool_):
        if not np.all(np.mod(label, 1) == 0):
            raise TrainingError(f"case {case_id}: label holds non-integer values")
    low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
    if low < 0 or high >= classes:
        raise TrainingError(f"case {case_id}: label classes {low}..{high} do not fit the card's "
                            f"{classes} classes (0..{classes - 1})")
    return label.astype(np.uint8 if classes <= 256 else np.int16, copy=False)


__all__ = ["CaseSource", "LoadedCase", "PreparedCase", "TrainingData", "prepare_case"]
