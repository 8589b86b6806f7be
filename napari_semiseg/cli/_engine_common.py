"""What the engine commands (infer, evaluate, train, models) share: arguments, model loading
(through the predict workflow) and the stderr progress lines.

Nothing here imports torch at module level: ``semiseg --help`` stays quick, and the heavy
imports happen inside the functions that need them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import SemisegError



# -- arguments ---------------------------------------------------------------------------------

def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default auto)")


def add_prediction_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --device, --lcc/--no-lcc, --paper-grid: how a model predicts a volume."""
    parser.add_argument("--model", type=int, metavar="ID",
                        help="the model version to use (default: the project's active model)")
    add_device_argument(parser)
    parser.add_argument("--lcc", action=argparse.BooleanOptionalAction, default=None,
                        help="keep only the largest connected component of each class "
                             "(default: the model card's choice)")
    parser.add_argument("--paper-grid", action="store_true",
                        help="the LA papers' dense sliding window (stride 4/18/18 voxels in "
                             "z/y/x, constant blending) instead of the card's overlap; slower")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


# -- models ------------------------------------------------------------------------------------

def load_project_model(project, model_id: int | None):
    """(network on the CPU, card with its method's post-processing, ModelVersion) of a model
    version, the active one by default (``workflows.predict.load_model_version``).

    Raises:
        ProjectError: unknown model id, or no model in the project yet.
        TrainingError: the weights file is missing, unsafe or does not fit its network.
    """
    from ..workflows.predict import load_model_version

    loaded = load_model_version(project, model_id, device="cpu")
    return loaded.network, loaded.card, loaded.model


def check_device(device: str) -> None:
    """Raise a user error now for a device torch cannot use (before any work starts)."""
    from ..workflows.train import check_device as check
    check(device)


# -- cases -------------------------------------------------------------------------------------

def check_cases(project, case_ids) -> list[str]:
    """The ids, each checked to exist (ProjectError names the first unknown one)."""
    for case_id in case_ids:
        project.case(case_id)
    return list(case_ids)


# -- output ------------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    """``42.1 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StatusLine:
    """Progress on stderr: a line redrawn in place on a terminal, plain lines otherwise.

    ``update`` redraws (terminal only, at most ``per_second`` times a second); ``line``
    always prints a whole line that stays.
    """

    def __init__(self, per_second: float = 5.0):
        self.tty = sys.stderr.isatty()
        self.interval = 1.0 / per_second
        self._last = 0.0
        self._pending = False

    def update(self, text: str) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < self.interval:
            return
        self._last = now
        print(f"\r{text}\033[K", end="", file=sys.stderr, flush=True)
        self._pending = True

    def end(self) -> None:
        """End a redrawn line still on the screen, so that what follows starts on a line of its own."""
        if self._pending:
            print(file=sys.stderr, flush=True)
            self._pending = False

    def line(self, text: str) -> None:
        prefix = "\r" if self._pending else ""
        clear = "\033[K" if self.tty else ""
        print(f"{prefix}{text}{clear}", file=sys.stderr, flush=True)
        self._pending = False


def volume_stem(path: str | Path) -> str:
    """The name a file's outputs are called by: ``a.nii.gz`` → ``a``.

    An LA ``<ID>/mri_norm2.h5`` is called by its folder (``<ID>``), since every case's file
    has the same name.
    """
    from ..io._formats import compound_suffix

    path = Path(path)
    stem = path.name[:len(path.name) - len(compound_suffix(path))] if path.is_file() else path.name
    if stem == "mri_norm2" and path.parent.name:
        return path.parent.name
    return stem


def require(condition: bool, message: str) -> None:
    if not condition:
        raise SemisegError(message)
