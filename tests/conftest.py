"""Fixtures shared by the whole suite.

Tests make or ship their own data; the real volumes of ``../shared/data`` are used where
present (``--shared-data``) and the tests that need them skip cleanly elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite mirrors the package (tests/io, tests/project, tests/engine/..., tests/cli, ...); the
# helpers every part shares live in tests/support and are imported by name (data_factory, ...).
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))


def pytest_addoption(parser):
    parser.addoption("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                     help="folder of the real volumes (../shared/data beside the checkout)")


@pytest.fixture(scope="session")
def shared_data(request) -> Path:
    """The shared data folder; tests that need it skip when it is absent."""
    folder = Path(request.config.getoption("--shared-data")).resolve()
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} is absent")
    return folder


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory) -> Path:
    """GUI tests leave their screenshots here, for a person to look at after a failure.

    A temporary folder, so that a test run leaves the working tree as it found it; the README's
    pictures are made on purpose from real LA volumes (``python -m napari_semiseg.demo
    --screenshots docs/screenshots``).
    """
    return tmp_path_factory.mktemp("screenshots")
