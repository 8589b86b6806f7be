"""What an import did, for the CLI and the napari panel to tell the user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: ``progress(done, total, case_id)`` is called after each case an importer handles.
ImportProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RefusedFile:
    """A case an import left out because one of its files was refused; nothing of it was added.

    Attributes:
        case_id: the case the file would have been.
        path: the refused file (the image, or its label).
        message: why, as "PATH: problem".
    """

    case_id: str
    path: Path
    message: str


@dataclass
class ImportReport:
    """The outcome of ``import_folder`` or ``import_la``.

    Attributes:
        added: ids of the cases added now.
        already_present: ids of the cases that were in the project already (left as they were).
        gold_added: ids of the cases that received a gold label version now.
        unmatched_labels: label files that no image matched (not imported).
        refused: the cases left out because a file of theirs was refused (truncated, NaN or
            infinite voxels, not real numbers, unreadable ...), with the reason.
    """

    added: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    gold_added: list[str] = field(default_factory=list)
    unmatched_labels: list[Path] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)

    def summary(self) -> str:
        """One line: "added 80 cases (8 with a gold label); 0 already present"."""
        text = (f"added {len(self.added)} case{'s' if len(self.added) != 1 else ''} "
                f"({len(self.gold_added)} gold label{'s' if len(self.gold_added) != 1 else ''}); "
                f"{len(self.already_present)} already present")
        if self.unmatched_labels:
            text += f"; {len(self.unmatched_labels)} label files matched no image"
        if self.refused:
            text += f"; {len(self.refused)} file{'s' if len(self.refused) != 1 else ''} refused"
        return text
