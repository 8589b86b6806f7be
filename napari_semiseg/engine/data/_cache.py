"""A bounded least-recently-used cache of prepared volumes: never the whole dataset in memory.

Each batch needs a few random cases; reading and preprocessing a volume costs far more than
cropping a patch from it, so recently used volumes are kept, up to ``max_volumes``. The least
recently used one is dropped *before* a new one is loaded, so at most ``max_volumes`` prepared
volumes exist at any moment (plus the raw one being prepared). Each data-loading worker
process holds its own cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ._cases import CaseSource, PreparedCase


class VolumeCache:
    """LRU cache of ``PreparedCase`` keyed by case id.

    Args:
        max_volumes: how many prepared volumes may be held at once (≥ 1).
        prepare: turns a source into a prepared case (``prepare_case`` with the card).

    Attributes:
        loads: how many times a volume was read and prepared (misses).
        hits: how many requests were served from memory.
        peak: the largest number of volumes held at once.
    """

    def __init__(self, max_volumes: int, prepare: Callable[[CaseSource], PreparedCase]):
        if max_volumes < 1:
            raise ValueError(f"max_volumes must be ≥ 1, got {max_volumes}")
        self.max_volumes = max_volumes
        self._prepare = prepare
        self._entries: OrderedDict[str, PreparedCase] = OrderedDict()
        self.loads = 0
        self.hits = 0
        self.peak = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, case_id: str) -> bool:
        return case_id in self._entries

    def case_ids(self) -> list[str]:
        """Cached case ids, least recently used first."""
        return list(self._entries)

    def get(self, source: CaseSource) -> PreparedCase:
        """The prepared case, from memory or loaded (evicting the least recently used first)."""
        entry = self._entries.get(source.case_id)
        if entry is not None:
            self._entries.move_to_end(source.case_id)
            self.hits += 1
            return entry
        while len(self._entries) >= self.max_volumes:
            self._entries.popitem(last=False)
        entry = self._prepare(source)
        self.loads += 1
        self._entries[source.case_id] = entry
        self.peak = max(self.peak, len(self._entries))
        return entry

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["VolumeCache"]
