"""``semiseg evaluate``: Dice, Jaccard, 95HD and ASD (voxels and mm) per case, their mean, a CSV.

Two ways:

- a model version on project cases with a reference: the newest gold or corrected label
  version, else the label the image file carries (the LA benchmark's h5 files: the held-out
  reference of an unlabelled case, never a label version, so never trained on). By default
  every such case the model was not trained on (its run's labelled cases are left out). The
  mean is recorded with the model version (``metrics["evaluation"]``, shown by
  ``semiseg models``).
- ``--pred DIR --ref DIR``: label files of two folders matched by case name (``X.nii.gz``,
  ``X_label.nii.gz``, ``X_seg.nrrd``... are all case ``X``), each prediction read on its
  reference's grid.

Metrics have medpy's semantics (``engine.metrics``): an empty prediction scores 0 and is
flagged; distances are in voxels (the papers' tables) and in mm.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import SemisegError
from ..project import GOLD_KINDS
from ._common import add_project_argument, open_project, writable_file
from ..workflows.cases import has_file_reference, reference_of
from ._engine_common import (StatusLine, add_prediction_arguments, check_cases, check_device, duration,
                             load_project_model, prediction_card, require)

#: Name endings that mark a label file rather than a case (``X_label.nii.gz`` is case ``X``).
LABEL_ENDINGS = ("_label", "_labels", "_seg", "_mask", "_gt", "_pred", "_prediction")
#: Name endings of ``semiseg infer``'s other outputs, which are not label maps (skipped).
NOT_LABEL_ENDINGS = ("_softlabel", "_uncertainty", "_mcvariance")
#: File suffixes ``--pred``/``--ref`` folders are searched for.
LABEL_FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".h5")


def register(subparsers) -> None:
    """Add ``semiseg evaluate`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "evaluate", help="score a model on cases with a reference, or a folder of predictions",
        description="Per-case Dice, Jaccard, 95HD and ASD (voxels, and mm) and their mean, as a "
                    "table and optionally a CSV. Either a model version (the active one by "
                    "default) on project cases with a reference (gold or corrected label, or the "
                    "label an LA h5 file carries), or --pred DIR --ref DIR.")
    add_project_argument(parser)
    parser.add_argument("--cases", nargs="+", action="extend", metavar="ID",
                        help="the cases to score (default: every case with a reference that the "
                             "model was not trained on)")
    parser.add_argument("--csv", metavar="FILE", help="write the per-case table (and means) as CSV")
    add_prediction_arguments(parser)
    parser.add_argument("--stored", action="store_true",
                        help="score this model's stored prediction versions (from semiseg infer) "
                             "where a case has one, instead of predicting again")
    parser.add_argument("--pred", metavar="DIR", help="folder of predicted label files (with --ref)")
    parser.add_argument("--ref", metavar="DIR", help="folder of reference label files (with --pred)")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    csv_path = None if args.csv is None else writable_file(args.csv, "--csv")
    if args.pred is not None or args.ref is not None:
        require(args.pred is not None and args.ref is not None, "--pred DIR and --ref DIR go together")
        require(args.project is None and not args.cases and args.model is None,
                "--pred/--ref compare two folders: give no PROJECT, --cases or --model with them")
        table = _evaluate_folders(Path(args.pred), Path(args.ref), StatusLine())
    else:
        table = _evaluate_model(args, StatusLine())
    print(table.format_table())
    if csv_path is not None:
        print(f"wrote {table.to_csv(csv_path)}")
    return 0


# -- a model on project cases -----------------------------------------------------------------------

def _evaluate_model(args: argparse.Namespace, status: StatusLine):
    from ..engine.metrics import MetricsTable

    with open_project(args.project) as project:
        case_ids = check_cases(project, args.cases) if args.cases else None
        check_device(args.device)
        net, card, model = load_project_model(project, args.model)
        card = prediction_card(card, args.paper_grid)
        if case_ids is None:
            case_ids = _held_out_cases(project, model)
            require(bool(case_ids), f"{project.root}: no case has a reference that model version {model.id} "
                                    "was not trained on; name cases with --cases")
        status.line(f"evaluating model version {model.id} ({model.name}, {model.method}) on "
                    f"{len(case_ids)} case(s)")
        rows = []
        for index, case_id in enumerate(case_ids, 1):
            row = _score_case(project, case_id, model.id, net, card, args, status, f"[{index}/{len(case_ids)}]")
            if row is not None:
                rows.append(row)
        require(bool(rows), "none of the cases has a reference to score against")
        table = MetricsTable(rows)
        project.update_model_metrics(model.id, {"evaluation": _evaluation_record(table, args)})
    return table


def _held_out_cases(project, model) -> list[str]:
    """Cases with a reference, minus those the model's run trained on (its labelled cases)."""
    data = (model.config or {}).get("data") or {}
    trained = {case["case_id"] for case in data.get("labeled", ())}
    return [case_id for case_id in project.case_ids() if case_id not in trained and
            (project.latest_label(case_id, kinds=GOLD_KINDS) is not None
             or has_file_reference(project, case_id))]


def _score_case(project, case_id: str, model_id: int, net, card, args, status: StatusLine, prefix: str):
    from ..engine.inference import predict_volume
    from ..engine.metrics import evaluate_case

    started = time.perf_counter()
    volume = project.load_image(case_id)
    reference, source = reference_of(project, case_id, volume)
    if reference is None:
        status.line(f"{prefix} {case_id}: skipped ({source})")
        return None
    stored = _stored_prediction(project, case_id, model_id) if args.stored else None
    if stored is not None:
        prediction, how = project.load_label(stored.id), f"stored prediction version {stored.id}"
    else:
        result = predict_volume(net, volume, card, device=args.device, largest_component=args.lcc,
                                progress=lambda r: status.update(
                                    f"{prefix} {case_id}: window {r.windows_done}/{r.windows_total}"))
        prediction, how = result.labels, f"predicted on {result.device}"
    metrics = evaluate_case(prediction, reference, volume.spacing, case_id=case_id)
    status.line(f"{prefix} {case_id}: Dice {100 * metrics.dice:.2f} % against {source} "
                f"({how}, {duration(time.perf_counter() - started)})")
    return metrics


def _stored_prediction(project, case_id: str, model_id: int):
    versions = [v for v in project.label_versions(case_id) if v.kind == "prediction" and v.model_id == model_id]
    return versions[-1] if versions else None


def _evaluation_record(table, args) -> dict:
    mean = table.mean()
    return {"n_cases": mean.n_cases, "cases": [row.case_id for row in table],
            "dice": mean.dice, "jaccard": mean.jaccard, "hd95": mean.hd95, "asd": mean.asd,
            "hd95_mm": mean.hd95_mm, "asd_mm": mean.asd_mm, "n_empty_prediction": mean.n_empty_prediction,
            "largest_component": args.lcc, "paper_grid": args.paper_grid, "stored": args.stored,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


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
    require(folder.is_dir(), f"{folder}: no such folder (--{role})")
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
    require(bool(files), f"{folder}: no label files there (--{role}; looked for "
                         f"{', '.join(LABEL_FILE_SUFFIXES)})")
    return files


def _read_reference(path: Path):
    """(label array, geometry) of a reference file: its ``label`` dataset (h5) or its voxels."""
    from ..io import read_label, read_volume

    volume = read_volume(path)
    if volume.label is not None:
        return volume.label, volume.geometry
    return read_label(path, like=volume.geometry), volume.geometry


def _evaluate_folders(pred_dir: Path, ref_dir: Path, status: StatusLine):
    from ..engine.metrics import MetricsTable, evaluate_case
    from ..io import read_label

    predictions, references = _label_files(pred_dir, "pred"), _label_files(ref_dir, "ref")
    matched = [key for key in references if key in predictions]
    require(bool(matched), f"no prediction in {pred_dir} matches a reference in {ref_dir} by case name "
                           f"(e.g. {next(iter(predictions))!r} vs {next(iter(references))!r})")
    for key in sorted(set(references) - set(predictions)):
        status.line(f"{key}: no prediction in {pred_dir}; not scored")
    for key in sorted(set(predictions) - set(references)):
        status.line(f"{key}: no reference in {ref_dir}; not scored")
    rows = []
    for index, key in enumerate(matched, 1):
        reference, geometry = _read_reference(references[key])
        prediction = read_label(predictions[key], like=geometry)
        rows.append(evaluate_case(prediction, reference, geometry.spacing, case_id=key))
        status.line(f"[{index}/{len(matched)}] {key}: Dice {100 * rows[-1].dice:.2f} %")
    return MetricsTable(rows)
