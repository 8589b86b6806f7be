"""``semiseg predict -i IN -o OUT --model VERSION|FILE``: predict volume files, no project needed.

IN is a volume file or a folder of them (``workflows.volume_files``); each volume gets, in OUT,
its label named like the input (``<stem>.nii.gz``, nnU-Net's habit), ``<stem>_softlabel.nii.gz``
(foreground probability) and ``<stem>_uncertainty.nii.gz`` (normalised entropy), on its own grid
(``workflows.export.write_prediction``, the writer ``semiseg infer --file`` uses).

``--model`` is a model version id (digits) of ``--project`` (or ``$SEMISEG_PROJECT``), or a
model file a run wrote (``model.pt``): then no project is needed. Without ``--model`` the
project's active model predicts. Either way the prediction goes through
``workflows.predict``, so the method's post-processing applies.

A volume that cannot be read or predicted is reported as "PATH: problem" and the others are
still predicted; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import SemisegError
from ..workflows.export import ResultNames
from ._common import PROJECT_ENV, writable_folder
from ._engine_common import (StatusLine, add_device_argument, check_device, duration, non_negative_int, require,
                             volume_stem)
from ._infer import Outcome, _each_volume, print_outcomes
from ._progress import EtaProgress


def register(subparsers) -> None:
    """Add ``semiseg predict`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "predict", help="predict volume files or a folder of them (no project needed with a model file)",
        description="Predict every volume of IN (a file, or a folder of NIfTI/NRRD/MetaImage/LA .h5 files "
                    "and DICOM series folders) into OUT: <name>.nii.gz (the label, named like the input), "
                    "<name>_softlabel.nii.gz (foreground probability) and <name>_uncertainty.nii.gz "
                    "(normalised entropy), on the input's grid. A volume that cannot be predicted is "
                    "named on stderr and the others go on; the exit status is then 1.")
    parser.add_argument("-i", "--input", required=True, metavar="IN", help="a volume file or a folder of volumes")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="the folder to write into (created)")
    parser.add_argument("--model", metavar="VERSION|FILE",
                        help="a model version id of the project, or a model file (a run's model.pt; "
                             "no project needed); default: the project's active model")
    parser.add_argument("--project", metavar="PROJECT",
                        help=f"the project whose model version --model names (default: ${PROJECT_ENV})")
    add_device_argument(parser)
    parser.add_argument("--overlap", type=float, metavar="F", help="window overlap (0 ≤ F < 1) instead of the card's")
    parser.add_argument("--mc", type=non_negative_int, default=0, metavar="N",
                        help="N Monte-Carlo dropout samples (their variance written as <name>_mcvariance.nii.gz)")
    parser.add_argument("--lcc", action=argparse.BooleanOptionalAction, default=None,
                        help="keep only the largest connected component of each class (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.set_defaults(handler=run_predict)


@dataclass(frozen=True)
class InputNamedResults(ResultNames):
    """``ResultNames`` whose label keeps the input's name (``<stem>.nii.gz``, nnU-Net's habit)."""

    def path(self, folder, kind: str) -> Path:
        return Path(folder) / f"{self.stem}.nii.gz" if kind == "label" else super().path(folder, kind)


def run_predict(args: argparse.Namespace) -> int:
    from ..workflows.volume_files import volume_inputs

    require(args.overlap is None or 0.0 <= args.overlap < 1.0, f"--overlap {args.overlap}: must be in [0, 1)")
    out = writable_folder(args.output, "--output")
    inputs = volume_inputs(args.input)
    names = _result_names(inputs, out)
    check_device(args.device)
    loaded, described = _load_model(args)
    out.mkdir(parents=True, exist_ok=True)
    status = StatusLine()
    status.line(f"{described} on {len(inputs)} volume(s)")
    progress = EtaProgress("predicting", status)
    outcomes, failed = _each_volume(
        [str(path) for path in inputs], status,
        lambda i, path: _predict_file(Path(path), names[Path(path)], loaded, args, out, status, progress, i,
                                      len(inputs)))
    print_outcomes(outcomes, failed, args.json, with_versions=False)
    if failed:
        print(f"semiseg: {len(failed)} of {len(inputs)} volumes could not be predicted: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _result_names(inputs: list[Path], out: Path) -> dict[Path, InputNamedResults]:
    """Each input's ``ResultNames``; refuses two inputs of one name and a label that would
    overwrite an input (OUT being IN's folder)."""
    by_stem: dict[str, Path] = {}
    names = {}
    sources = {path.resolve() for path in inputs}
    for path in inputs:
        stem = volume_stem(path)
        require(stem not in by_stem, f"{path}: gives the output name {stem!r} as {by_stem.get(stem)} does; "
                                     "predict them into separate folders")
        by_stem[stem] = path
        names[path] = InputNamedResults(stem)
        target = names[path].path(out, "label").resolve()
        require(target not in sources, f"{target}: the label would overwrite this input; choose another -o folder")
    return names


def _load_model(args: argparse.Namespace):
    """(LoadedModel, words naming it) for ``--model`` (see the module docstring)."""
    from ..workflows.predict import load_model_file, load_model_version

    given = args.model
    if given is not None and not given.isdigit():
        require(Path(given).is_file(), f"{given}: no such model file (a model version is given by its id)")
        return load_model_file(given), f"model file {given}"
    project_folder = args.project or os.environ.get(PROJECT_ENV)
    if not project_folder:
        raise SemisegError(f"--model {given}: a model version needs its project: give --project PROJECT or "
                           f"set ${PROJECT_ENV}" if given else
                           "give --model FILE (a run's model.pt), or --model VERSION with --project PROJECT")
    from ..project import Project
    with Project.open(project_folder) as project:
        loaded = load_model_version(project, None if given is None else int(given))
    model = loaded.model
    return loaded, f"model version {model.id} ({model.name}, {model.method})"


def _predict_file(path: Path, names, loaded, args, out: Path, status: StatusLine, progress: EtaProgress,
                  index: int, total: int) -> Outcome:
    from ..io import read_volume
    from ..workflows.export import write_prediction
    from ..workflows.predict import PredictOptions, predict

    prefix = f"[{index}/{total}] {volume_stem(path)}"
    volume = read_volume(path)

    def report(step) -> None:
        progress.report((index - 1 + step.windows_done / max(1, step.windows_total)) / total, prefix)

    options = PredictOptions(device=args.device, mc_samples=args.mc, largest_component=args.lcc,
                             overlap=args.overlap)
    prediction = predict(loaded, volume, options, report)
    files = write_prediction(out, names, prediction)
    status.line(f"{prefix}: wrote {', '.join(f.name for f in files)} "
                f"({duration(prediction.seconds)} on {prediction.device})")
    return Outcome(str(path), None, None, int((prediction.labels > 0).sum()),
                   float(prediction.uncertainty.mean()), prediction.seconds, files)
