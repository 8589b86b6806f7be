"""Runs: a record of each long job (training, inference, pseudo-labelling, evaluation)."""

from __future__ import annotations

import os
import socket

from ..errors import ProjectError
from ._files import utc_now
from ._json import dumps, loads
from ._records import RunRecord

RUNNING = "running"
INTERRUPTED = "interrupted"


class RunStore:
    """The run half of ``Project`` (uses ``self._db``)."""

    def start_run(self, kind: str, config: dict, *, pid: int | None = None) -> int:
        """Record that a job starts now, in process ``pid`` (this one by default).

        Returns:
            The run id; its files go under ``path_for("runs", f"{run_id}/...")``.
        """
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (kind, status, config, started, pid, host) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, RUNNING, dumps(config), utc_now(), os.getpid() if pid is None else pid,
                 socket.gethostname()))
        return cursor.lastrowid

    def update_run(self, run_id: int, *, pid: int | None = None,
                   result: dict | None = None) -> RunRecord:
        """Change a running job's process (a child took over) or record a partial result."""
        self.run(run_id)
        with self._db.write() as conn:
            if pid is not None:
                conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (pid, run_id))
            if result is not None:
                conn.execute("UPDATE runs SET result = ? WHERE id = ?", (dumps(result), run_id))
        return self.run(run_id)

    def finish_run(self, run_id: int, status: str, result: dict | None = None) -> RunRecord:
        """Record how a job ended ("completed", "failed", "stopped", ...) and what it produced."""
        if status == RUNNING:
            raise ProjectError(f"run {run_id}: finish_run needs a final status, not {RUNNING!r}")
        self.run(run_id)
        with self._db.write() as conn:
            conn.execute("UPDATE runs SET status = ?, result = ?, finished = ? WHERE id = ?",
                         (status, dumps(result if result is not None else {}), utc_now(), run_id))
        return self.run(run_id)

    def run(self, run_id: int) -> RunRecord:
        """One run by id.

        Raises:
            ProjectError: no such run.
        """
        row = self._db.query_one("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if row is None:
            raise ProjectError(f"{self.root}: no run {run_id}")
        return _run_from_row(row)

    def runs(self, kind: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally of one kind."""
        if kind is None:
            rows = self._db.query("SELECT * FROM runs ORDER BY id")
        else:
            rows = self._db.query("SELECT * FROM runs WHERE kind = ? ORDER BY id", (kind,))
        return [_run_from_row(row) for row in rows]

    def mark_interrupted_runs(self) -> list[int]:
        """Mark "running" runs of this machine whose process is gone as "interrupted".

        A killed job cannot finish its own record; this tells the user it will not finish.
        Returns the ids marked.
        """
        host = socket.gethostname()
        dead = [run.id for run in self.runs() if run.status == RUNNING and run.host == host
                and run.pid is not None and not _process_alive(run.pid)]
        if dead:
            with self._db.write() as conn:
                for run_id in dead:
                    conn.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ? AND "
                                 "status = ?", (INTERRUPTED, utc_now(), run_id, RUNNING))
        return dead


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_from_row(row) -> RunRecord:
    return RunRecord(id=row["id"], kind=row["kind"], status=row["status"],
                     config=loads(row["config"]), result=loads(row["result"]),
                     started=row["started"], finished=row["finished"], pid=row["pid"],
                     host=row["host"])
