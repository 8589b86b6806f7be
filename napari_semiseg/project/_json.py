"""JSON for the catalogue's dict columns (cards, configs, metrics, results)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np


def _plain(value):
    """A JSON-able twin of ``value``: dataclasses, paths, tuples, numpy scalars and arrays."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def dumps(value) -> str:
    """``value`` as JSON text; NaN becomes null so the column stays standard JSON."""
    return json.dumps(_plain(value), sort_keys=True)


def loads(text: str | None):
    return None if text is None else json.loads(text)
