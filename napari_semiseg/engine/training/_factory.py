"""A network factory named in a config (``"package.module:callable"``), for child processes.

A JSON configuration cannot carry a Python function; it can carry its import path. The
callable takes a ``NetworkSpec`` and returns an ``nn.Module`` (e.g. a research network that
is not in the engine's registry). None means the engine's ``build_network``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ._config import TrainingError


def resolve_network_factory(path: str | None) -> Callable | None:
    """Import ``"module:callable"``; None stays None.

    Raises:
        TrainingError: malformed path, module not importable, or no such callable.
    """
    if path is None:
        return None
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise TrainingError(f"network_factory {path!r} must look like 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainingError(f"network_factory {path!r}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TrainingError(f"network_factory {path!r}: {module_name!r} has no callable {attribute!r}")
    return factory


__all__ = ["resolve_network_factory"]
