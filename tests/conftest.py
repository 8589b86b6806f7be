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
def screenshots_dir() -> Path:
    """GUI tests leave their screenshots here; the README shows them."""
    folder = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
