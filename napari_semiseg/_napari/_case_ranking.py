"""Which case next, in the Project panel: rank and score columns kept current off the GUI thread.

``engine.pseudo.rank_cases`` reads only the catalogue while each case has soft labels of one
model, but with several models its teacher-disagreement term opens a soft-label file per
model and case, which on LA-sized volumes takes seconds per refresh. So ``CaseRanking`` ranks
in a generator worker (on a ``Project`` of its own) and shows the result when it arrives,
ranks again only when what the ranking depends on changed (``rank_signature``), and folds
requests that arrive while it works into one more pass.
"""

from __future__ import annotations

from typing import Callable

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

from ..project import GOLD_KINDS
from ._tables import bulk_update
from ._workers import GeneratorJob, describe_error, start_generator_job

#: The columns the Project panel's case table gets (after its own).
RANK_COLUMNS = ("Rank", "Score")


def rank_signature(project) -> tuple:
    """What ``rank_cases`` depends on: project, active model, splits, labelled cases, teacher soft labels."""
    active = project.active_model()
    labelled = sorted({v.case_id for v in project.label_versions() if v.kind in GOLD_KINDS})
    return (str(project.root), None if active is None else active.id,
            tuple((c.id, c.split) for c in project.cases()), tuple(labelled),
            tuple(s.id for s in project.soft_labels(kind="teacher")))


def rank_steps(project_root, should_stop=None):
    """Rank a project's candidate cases: the worker's generator; returns ``[CaseRank]``, best first."""
    from ..engine.pseudo import rank_cases
    from ..project import Project

    yield "ranking"
    with Project.open(project_root) as project:
        return rank_cases(project)


class CaseRanking:
    """The ranking of a session's project, refreshed in the background.

    Args:
        session: the panels' ``ProjectSession``.
        on_ranks: called on the GUI thread with ``{case id: (rank from 1, CaseRank)}``
            whenever a (possibly cached) ranking is shown.
    """

    def __init__(self, session, on_ranks: Callable[[dict], None]):
        self.session = session
        self.on_ranks = on_ranks
        self.job: GeneratorJob | None = None
        self.ranks: list = []
        self._signature = None
        self._pending = False

    @property
    def busy(self) -> bool:
        """True while a ranking runs or another pass is queued."""
        return (self.job is not None and self.job.running) or self._pending

    def refresh(self) -> None:
        """Show the ranking now if it is current, else rank again in the background."""
        if not self.session.has_project:
            self.ranks, self._signature = [], None
            self.on_ranks({})
            return
        signature = rank_signature(self.session.project)
        if signature == self._signature:
            self.on_ranks(self.by_case())
            return
        if self.job is not None and self.job.running:
            self._pending = True
            return
        self.on_ranks(self.by_case())  # the last ranking until the new one arrives
        self.job = start_generator_job(
            lambda should_stop: rank_steps(signature[0], should_stop), on_report=lambda _item: None,
            on_result=lambda ranks: self._arrived(signature, ranks), on_error=lambda error: show_error(f"Ranking the cases failed: {describe_error(error)}"),
            on_cancelled=lambda _message: None, on_finished=self._finished)

    def by_case(self) -> dict:
        return {rank.case_id: (position, rank) for position, rank in enumerate(self.ranks, start=1)}

    def top_case(self) -> str:
        """The case to annotate next: from the ranking when current, else ranked right now.

        Raises:
            ProjectError: no project, or no unlabelled case is left.
        """
        project = self.session.project
        if not self.busy and self.ranks and self._signature == rank_signature(project):
            return self.ranks[0].case_id
        return self.session.next_case_id()

    def _arrived(self, signature: tuple, ranks: list) -> None:
        if self.session.has_project and str(self.session.project.root) == signature[0]:
            self.ranks, self._signature = ranks, signature
            self.on_ranks(self.by_case())

    def _finished(self) -> None:
        if self._pending:
            self._pending = False
            self.refresh()


def show_ranks(table: QTableWidget, ranks: dict, first_column: int) -> None:
    """Fill the rank and score cells of a case table whose column 0 holds case ids (``Qt.UserRole``).

    Cases without a score (no soft label yet) show their rank and "—"; labelled cases show "—"
    twice. The score's reasons go into the tooltip.
    """
    with bulk_update(table):
        for row in range(table.rowCount()):
            case_id = table.item(row, 0).data(Qt.UserRole)
            position, rank = ranks.get(case_id, (None, None))
            score = "—" if rank is None or rank.score is None else f"{rank.score:.3f}"
            cells = ("—" if position is None else str(position), score)
            tip = ("Not proposed: labelled (gold or corrected) or a test case" if rank is None
                   else "\n".join(rank.reasons))
            for offset, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                table.setItem(row, first_column + offset, item)


__all__ = ["RANK_COLUMNS", "CaseRanking", "rank_signature", "rank_steps", "show_ranks"]
