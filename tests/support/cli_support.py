"""Running ``semiseg`` as a user does, and a tiny LA-style project to run it on: four 24×48×48
h5 volumes, an ellipsoid label each.

``semiseg`` starts a real subprocess of this checkout (for what only a process shows: signals,
limits, the interpreter's exit); ``semiseg_here`` runs the same command line in this process,
without the seconds a fresh interpreter spends importing torch."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from data_factory import write_la_h5

REPOSITORY = Path(__file__).resolve().parents[2]
SHAPE = (24, 48, 48)
CASES = ("case0", "case1", "case2", "case3")


def cli_environment() -> dict:
    """This process's environment for a ``semiseg`` child: this checkout first, no default project."""
    env = {k: v for k, v in os.environ.items() if k != "SEMISEG_PROJECT"}
    env["PYTHONPATH"] = str(REPOSITORY)
    return env


def semiseg(*args, timeout: float = 600):
    """``semiseg ARGS`` in a fresh interpreter: for tests of the process itself (signals, exit
    status of the real command, a limit set on the child); the others use ``semiseg_here``."""
    return subprocess.run([sys.executable, "-m", "napari_semiseg.cli", *map(str, args)],
                          capture_output=True, text=True, env=cli_environment(), timeout=timeout)


def semiseg_here(*args) -> subprocess.CompletedProcess:
    """``semiseg ARGS`` run by ``main(argv)`` in this process, read back like ``semiseg``'s result.

    A fresh interpreter spends seconds importing torch and MONAI before each command; here they
    are imported once. What the user reads is kept: stdout, stderr, the exit status, and the
    warnings an interpreter would print on stderr (pytest would otherwise record them unseen).
    An exception that escapes ``main`` fails the test with its traceback, as one printed by a
    child would fail the "no traceback" checks.
    """
    from napari_semiseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _without_project_variable(), _warnings_printed(), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return subprocess.CompletedProcess(["semiseg", *map(str, args)], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _without_project_variable():
    """No default project, as ``cli_environment`` gives a child."""
    saved = os.environ.pop("SEMISEG_PROJECT", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["SEMISEG_PROJECT"] = saved


@contextlib.contextmanager
def _warnings_printed():
    """The interpreter's default warning filters, each warning printed on (redirected) stderr."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        yield


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def blob(index: int) -> np.ndarray:
    """An ellipsoid label (z, y, x) a little different in each case."""
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    centre, radius = (12, 22 + index, 25 - index), 7 + index
    return ((((z - centre[0]) * 1.5) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
            < radius ** 2).astype(np.uint8)


def image_of(label: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (2.0 * label + rng.normal(0.0, 0.7, label.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def la_root(tmp_path_factory) -> Path:
    """The LA layout: ROOT/<ID>/mri_norm2.h5 (image and label) and ROOT/train.list."""
    root = tmp_path_factory.mktemp("la")
    for index, case_id in enumerate(CASES):
        (root / case_id).mkdir()
        label = blob(index)
        write_la_h5(root / case_id / "mri_norm2.h5", image_of(label, index), label)
    (root / "train.list").write_text("\n".join(CASES) + "\n")
    return root


def new_project(folder: Path, la_root: Path) -> Path:
    """``semiseg init`` and ``semiseg import`` of the four cases, the first three labelled."""
    ok(semiseg_here("init", folder))
    ok(semiseg_here("import", folder, "--la-h5", la_root, "--list", la_root / "train.list", "--labeled", 3))
    return folder
