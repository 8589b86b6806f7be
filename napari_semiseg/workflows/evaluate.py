"""Scoring a model or a folder of predictions: one workflow under ``semiseg evaluate`` (and any face).

Two ways:

- ``evaluate_model``: a model version on project cases with a reference: the newest gold or
  corrected label version, else the label the image file carries (the LA benchmark's h5 files:
  the held-out reference of an unlabelled case, never a label version, so never trained on). By
  default every such case the model was not trained on (``held_out_cases``: its run's labelled
  cases are left out). The mean is recorded with the model version (``metrics["evaluation"]``).
- ``evaluate_folders``: label files of two folders matched by case name (``X.nii.gz``,
  ``X_label.nii.gz``, ``X_seg.nrrd``... are all case ``X``: ``case_key``), each prediction read on
  its reference's grid.

Metrics have medpy's semantics (``engine.metrics``): an empty prediction scores 0 and is
flagged; distances are in voxels (the papers' tables) and in mm. Progress goes to two callbacks:
``report`` for lines that stay, ``update`` for a line a terminal may redraw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProjectError, SemisegError
from ..project import GOLD_KINDS
from .cases import has_file_reference, reference_of
from .predict import load_model_version, prediction_card

#: Name endings that mark a label file rather than a case (``X_label.nii.gz`` is case ``X``).
LABEL_ENDINGS = ("_label", "_labels", "_seg", "_mask", "_gt", "_pred", "_prediction")
#: Name endings of ``semiseg infer``'s other outputs, which are not label maps (skipped).
NOT_LABEL_ENDINGS = ("_softlabel", "_uncertainty", "_mcvariance")
#: File suffixes ``--pred``/``--ref`` folders are searched for.
LABEL_FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".h5")

Report = Callable[[str], None]


def _quiet(_text: str) -> None:
    """The default progress callback: nothing shown."""


@dataclass(frozen=True)
class EvaluateRequest:
    """How a model is scored on project cases.

    Attributes:
        model_id: the model version; None: the active one.
        cases: the cases to score; None: every case with a reference the model was not trained on.
        device, largest_component, paper_grid: how it predicts (``paper_grid``: the papers' dense grid).
        stored: score this model's stored prediction versions where a case has one.
    """

    model_id: int | None = None
    cases: Sequence[str] | None = None
    device: str = "auto"
    largest_component: bool | None = None
    paper_grid: bool = False
    stored: bool = False


def evaluate_model(project, request: EvaluateRequest, report: Report = _quiet, update: Report = _quiet):
    """Score a model version on project cases; returns the ``MetricsTable`` (also recorded).

    Raises:
        ProjectError: no case to score (none held out, none with a reference).
    """
    from ..engine.metrics import MetricsTable

    loaded = load_model_version(project, request.model_id, device="cpu")
    model, card = loaded.model, prediction_card(loaded.card, request.paper_grid)
    case_ids = list(request.cases) if request.cases else held_out_cases(project, model)
    if not case_ids:
        raise ProjectError(f"{project.root}: no case has a reference that model version {model.id} "
                           "was not trained on; name cases with --cases")
    report(f"evaluating model version {model.id} ({model.name}, {model.method}) on {len(case_ids)} case(s)")
    rows = []
    for index, case_id in enumerate(case_ids, 1):
        row = score_case(project, case_id, model.id, loaded.network, card, request, report, update,
                         f"[{index}/{len(case_ids)}]")
        if row is not None:
            rows.append(row)
    if not rows:
        raise ProjectError("none of the cases has a reference to score against")
    table = MetricsTable(rows)
    project.update_model_metrics(model.id, {"evaluation": evaluation_record(table, request)})
    return table


def held_out_cases(project, model) -> list[str]:
    """Cases with a reference, minus those the model's run trained on (its labelled cases)."""
    data = (model.config or {}).get("data") or {}
    trained = {case["case_id"] for case in data.get("labeled", ())}
    return [case_id for case_id in project.case_ids() if case_id not in trained and
            (project.latest_label(case_id, kinds=GOLD_KINDS) is not None
             or has_file_reference(project, case_id))]


def score_case(project, case_id: str, model_id: int, net, card, request: EvaluateRequest,
               report: Report = _quiet, update: Report = _quiet, prefix: str = ""):
    """One case's ``CaseMetrics`` against its reference, or None when it has none."""
    from ..engine.inference import predict_volume
    from ..engine.metrics import evaluate_case

    started = time.perf_counter()
    volume = project.load_image(case_id)
    reference, source = reference_of(project, case_id, volume)
    if reference is None:
        report(f"{prefix} {case_id}: skipped ({source})")
        return None
    stored = stored_prediction(project, case_id, model_id) if request.stored else None
    if stored is not None:
        prediction, how = project.load_label(stored.id), f"stored prediction version {stored.id}"
    else:
        result = predict_volume(net, volume, card, device=request.device, largest_component=request.largest_component,
                                progress=lambda r: update(f"{prefix} {case_id}: window {r.windows_done}/{r.windows_total}"))
        prediction, how = result.labels, f"predicted on {result.device}"
    metrics = evaluate_case(prediction, reference, volume.spacing, case_id=case_id)
    report(f"{prefix} {case_id}: Dice {100 * metrics.dice:.2f} % against {source} "
           f"({how}, {time.perf_counter() - started:.1f} s)")
    return metrics


def stored_prediction(project, case_id: str, model_id: int):
    """The newest "prediction" label version of ``model_id`` for the case, or None."""
    versions = [v for v in project.label_versions(case_id) if v.kind == "prediction" and v.model_id == model_id]
    return versions[-1] if versions else None


def evaluation_record(table, request: EvaluateRequest) -> dict:
    """What a model version keeps of an evaluation (``metrics["evaluation"]``)."""
    mean = table.mean()
    return {"n_cases": mean.n_cases, "cases": [row.case_id for row in table],
            "dice": mean.dice, "jaccard": mean.jaccard, "hd95": mean.hd95, "asd": mean.asd,
            "hd95_mm": mean.hd95_mm, "asd_mm": mean.asd_mm, "n_empty_prediction": mean.n_empty_prediction,
            "largest_component": request.largest_component, "paper_grid": request.paper_grid,
            "stored": request.stored, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# -- two folders --------------------------------------------------------------------------------------

def case_key(path: Path) -> str | None:
    """The case a label file stands for: its name without suffix and label ending.

    None for ``semiseg infer``'s soft-label, uncertainty and variance files.
    """
    name = path.name
    lower = name.lower()
    for suffix in LABEL_FILE_SUFFIXES:
        if lower.endswith(suffix):
            name = name[:-len(suffix)]
            break
    if name.lower().endswith(NOT_LABEL_ENDINGS):
        return None
    for ending in LABEL_ENDINGS:
        if name.lower().endswith(ending) and len(name) > len(ending):
            return name[:-len(ending)]
    return name


def _label_files(folder: Path, role: str) -> dict[str, Path]:
    _require(folder.is_dir(), f"{folder}: no such folder (--{role})")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.lower().endswith(LABEL_FILE_SUFFIXES):
            continue
        key = case_key(path)
        if key is None:
            continue
        if key in files:
            raise SemisegError(f"{folder}: {files[key].name} and {path.name} both name case {key!r}")
        files[key] = path
    _require(bool(files), f"{folder}: no label files there (--{role}; looked for "
                         f"{', '.join(LABEL_FILE_SUFFIXES)})")
    return files


def _read_reference(path: Path):
    """(label array, geometry) of a reference file: its ``label`` dataset (h5) or its voxels."""
    from ..io import read_label, read_volume

    volume = read_volume(path)
    if volume.label is not None:
        return volume.label, volume.geometry
    return read_label(path, like=volume.geometry), volume.geometry


def evaluate_folders(pred_dir: Path, ref_dir: Path, report: Report = _quiet):
    """Score the label files of ``pred_dir`` against those of ``ref_dir`` matched by case name."""
    from ..engine.metrics import MetricsTable, evaluate_case
    from ..io import read_label

    predictions, references = _label_files(pred_dir, "pred"), _label_files(ref_dir, "ref")
    matched = [key for key in references if key in predictions]
    _require(bool(matched), f"no prediction in {pred_dir} matches a reference in {ref_dir} by case name "
                           f"(e.g. {next(iter(predictions))!r} vs {next(iter(references))!r})")
    for key in sorted(set(references) - set(predictions)):
        report(f"{key}: no prediction in {pred_dir}; not scored")
    for key in sorted(set(predictions) - set(references)):
        report(f"{key}: no reference in {ref_dir}; not scored")
    rows = []
    for index, key in enumerate(matched, 1):
        reference, geometry = _read_reference(references[key])
        prediction = read_label(predictions[key], like=geometry)
        rows.append(evaluate_case(prediction, reference, geometry.spacing, case_id=key))
        report(f"[{index}/{len(matched)}] {key}: Dice {100 * rows[-1].dice:.2f} %")
    return MetricsTable(rows)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SemisegError(message)


__all__ = ["EvaluateRequest", "LABEL_ENDINGS", "LABEL_FILE_SUFFIXES", "NOT_LABEL_ENDINGS", "case_key",
           "evaluate_folders", "evaluate_model", "evaluation_record", "held_out_cases", "score_case",
           "stored_prediction"]
