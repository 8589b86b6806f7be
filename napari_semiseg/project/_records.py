"""What the catalogue hands out: frozen records, one per row.

Paths in records are absolute (the catalogue stores files inside the project relative to
its folder, so a project can be moved as a whole). Times are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..io._volume import Geometry


@dataclass(frozen=True)
class Case:
    """One volume of the project.

    Attributes:
        id: the case's name, unique in the project (e.g. the file name without suffix).
        image_path: the image file (or DICOM folder); inside the project when it was copied in.
        geometry: its (z, y, x) grid, read at import.
        modality: "MR", "CT", ... as given at import.
        split: one of ``SPLITS``.
        intensity_stats: min, max, mean, std, p0_5, p99_5 of the image, or None until computed.
        created: when the case was added.
    """

    id: str
    image_path: Path
    geometry: Geometry
    modality: str
    split: str
    intensity_stats: dict | None
    created: str


@dataclass(frozen=True)
class CaseSummary:
    """A row of the case list (``semiseg cases``, the napari case table).

    Attributes:
        id: the case id.
        shape: voxels along (z, y, x).
        spacing: mm along (z, y, x).
        modality: "MR", "CT", ...
        split: one of ``SPLITS``.
        latest_kind: the kind of the newest label version, or None when it has none.
        n_versions: how many label versions the case has.
    """

    id: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    modality: str
    split: str
    latest_kind: str | None
    n_versions: int


@dataclass(frozen=True)
class LabelVersion:
    """One saved label map of a case; never modified once saved.

    Attributes:
        id: unique over the project, increasing with time.
        case_id: the case it labels.
        kind: one of ``LABEL_KINDS``.
        parent_id: the version it was derived from (a correction's starting point), or None.
        model_id: the model version that produced it (prediction, pseudo), or None.
        author: who saved it, when known.
        created: when it was saved.
        voxels_changed: voxels that differ from the parent version (from an empty map when
            there is no parent).
        foreground_voxels: voxels with a label > 0.
        path: the label file (NIfTI, on the case's grid).
        note: free text.
        sha256: hash of the file's bytes, to detect damage.
    """

    id: int
    case_id: str
    kind: str
    parent_id: int | None
    model_id: int | None
    author: str | None
    created: str
    voxels_changed: int
    foreground_voxels: int
    path: Path
    note: str | None
    sha256: str


@dataclass(frozen=True)
class ModelVersion:
    """One trained model; its identity (card, checkpoint, config) is never modified.

    Attributes:
        id: unique over the project, increasing with time.
        name: a human name (the card's by default).
        card: the model card as a plain dict (``ModelCard.to_dict()``).
        checkpoint_path: the weights, inside the project.
        sha256: hash of the checkpoint file.
        parent_id: the model it was fine-tuned from, or None.
        method: the training method ("supervised", "uamt", ...).
        config: the training configuration as a plain dict.
        metrics: held-out metrics as a plain dict.
        created: when it was registered.
        active: whether it is the project's active model.
    """

    id: int
    name: str
    card: dict
    checkpoint_path: Path
    sha256: str
    parent_id: int | None
    method: str
    config: dict
    metrics: dict
    created: str
    active: bool = False


@dataclass(frozen=True)
class RunRecord:
    """One long job (training, inference over cases, pseudo-labelling, evaluation).

    Attributes:
        id: unique over the project.
        kind: "train", "infer", ...
        status: "running", then whatever ``finish_run`` set ("completed", "failed", "stopped").
        config: its configuration as a plain dict.
        result: its result as a plain dict, once finished.
        started / finished: times; ``finished`` is None while running.
        pid / host: the process that runs it.
    """

    id: int
    kind: str
    status: str
    config: dict
    result: dict | None
    started: str
    finished: str | None
    pid: int | None
    host: str | None = field(default=None)


@dataclass(frozen=True)
class UncertaintySummary:
    """How uncertain a model was about a case: the summary row of one of its soft labels.

    Attributes:
        case_id: the case.
        soft_label_id: the soft label summarised.
        model_id: the model version that made it (None if unknown).
        kind: "teacher" (as the model made it) or "corrected" (teacher team).
        mean_entropy: mean normalised entropy over the voxels, 0 (certain) .. 1 (uniform).
        max_entropy: its largest value.
        mean_confidence: mean over the voxels of the largest class probability.
        foreground_fraction: fraction of voxels whose most probable class is not background.
    """

    case_id: str
    soft_label_id: int
    model_id: int | None
    kind: str
    mean_entropy: float
    max_entropy: float
    mean_confidence: float
    foreground_fraction: float


@dataclass(frozen=True)
class SoftLabel:
    """One stored soft label (class probabilities) of a case; never modified once saved.

    Attributes:
        id: unique over the project, increasing with time.
        case_id: the case.
        label_version_id: the hard label version it goes with (the pseudo-label or prediction
            made with it, or the corrected label it was corrected against).
        model_id: the model version whose probabilities these are (None if unknown).
        parent_id: for a corrected soft label, the soft label it was corrected from.
        kind: one of ``SOFT_LABEL_KINDS`` ("teacher", "corrected").
        num_classes: K, background included.
        encoding: how the file stores probabilities ("uint8/255").
        path: the ``.npz`` file.
        sha256: hash of the file's bytes.
        created: when it was saved.
        summary: its uncertainty summary.
        details: how it was made (e.g. the correction's steps), a plain dict.
    """

    id: int
    case_id: str
    label_version_id: int
    model_id: int | None
    parent_id: int | None
    kind: str
    num_classes: int
    encoding: str
    path: Path
    sha256: str
    created: str
    summary: UncertaintySummary
    details: dict
