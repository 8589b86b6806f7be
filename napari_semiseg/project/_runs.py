"""Runs: a record of each long job (training, inference, pseudo-labelling, evaluation)."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

from ..errors import ProjectError
from ._files import utc_now
from ._json import loads
from ._records import RunRecord

RUNNING = "running"
INTERRUPTED = "interrupted"


class RunStore:
    """The run half of ``Project`` (uses ``self._db``; paths in configs and results go through
    ``PortablePaths._dumps_paths`` and ``_loads_paths``)."""

    def start_run(self, kind: str, config: dict, *, pid: int | None = None) -> int:
        """Record that a job starts now, in process ``pid`` (this one by default).

        Returns:
            The run id; its files go under ``path_for("runs", f"{run_id}/...")``.
        """
        pid = os.getpid() if pid is None else pid
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (kind, status, config, started, pid, host, process_start) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, RUNNING, self._dumps_paths(config), utc_now(), pid, socket.gethostname(), process_start(pid)))
        return cursor.lastrowid

    def update_run(self, run_id: int, *, pid: int | None = None,
                   result: dict | None = None) -> RunRecord:
        """Change a running job's process (a child took over) or record a partial result."""
        self.run(run_id)
        with self._db.write() as conn:
            if pid is not None:
                conn.execute("UPDATE runs SET pid = ?, process_start = ? WHERE id = ?",
                             (pid, process_start(pid), run_id))
            if result is not None:
                conn.execute("UPDATE runs SET result = ? WHERE id = ?", (self._dumps_paths(result), run_id))
        return self.run(run_id)

    def finish_run(self, run_id: int, status: str, result: dict | None = None) -> RunRecord:
        """Record how a job ended ("completed", "failed", "stopped", ...) and what it produced."""
        if status == RUNNING:
            raise ProjectError(f"run {run_id}: finish_run needs a final status, not {RUNNING!r}")
        self.run(run_id)
        with self._db.write() as conn:
            conn.execute("UPDATE runs SET status = ?, result = ?, finished = ? WHERE id = ?",
                         (status, self._dumps_paths(result if result is not None else {}), utc_now(), run_id))
        return self.run(run_id)

    def run(self, run_id: int) -> RunRecord:
        """One run by id; a "running" run whose process is gone reads as "interrupted".

        Raises:
            ProjectError: no such run.
        """
        row = self._db.query_one("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if row is None:
            raise ProjectError(f"{self.root}: no run {run_id}")
        if row["status"] == RUNNING and _process_gone(row) and self.mark_interrupted_runs():
            row = self._db.query_one("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        return _run_from_row(row, self._loads_paths)

    def runs(self, kind: str | None = None) -> list[RunRecord]:
        """Runs, oldest first, optionally of one kind; killed ones read as "interrupted"."""
        rows = self._run_rows(kind)
        if any(row["status"] == RUNNING and _process_gone(row) for row in rows) and self.mark_interrupted_runs():
            rows = self._run_rows(kind)
        return [_run_from_row(row, self._loads_paths) for row in rows]

    def _run_rows(self, kind: str | None):
        if kind is None:
            return self._db.query("SELECT * FROM runs ORDER BY id")
        return self._db.query("SELECT * FROM runs WHERE kind = ? ORDER BY id", (kind,))

    def mark_interrupted_runs(self) -> list[int]:
        """Mark "running" runs of this machine whose process is gone as "interrupted".

        A job killed with ``kill -9`` (or by a crash) cannot finish its own record; this tells
        the user it will not finish, and a training run can be resumed from its last
        checkpoint. A process is the run's only if its pid AND its start time match, so a new
        process that reuses a killed run's pid is not taken for it. Reading runs calls this;
        a read-only project just shows them as they are. Returns the ids marked.
        """
        dead = [row["id"] for row in self._run_rows(None) if row["status"] == RUNNING and _process_gone(row)]
        if dead:
            try:
                with self._db.write() as conn:
                    for run_id in dead:
                        conn.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ? AND "
                                     "status = ?", (INTERRUPTED, utc_now(), run_id, RUNNING))
            except (ProjectError, sqlite3.Error):
                return []  # a read-only or busy catalogue: the runs are shown as stored
        return dead


def _process_gone(row) -> bool:
    """True when a run's process (same host) no longer exists, or its pid now names another."""
    if row["host"] != socket.gethostname() or row["pid"] is None:
        return False  # another machine's run: nothing here can tell
    if not _process_alive(row["pid"]):
        return True
    recorded = row["process_start"] if "process_start" in row.keys() else None
    return recorded is not None and process_start(row["pid"]) != recorded


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as "boot id:clock ticks since boot" (Linux); None elsewhere.

    Together with the pid this names one process for the life of the machine: pids are
    reused, start times on one boot are not.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its ")".
    fields = stat[stat.rindex(")") + 2:].split()
    return f"{boot}:{fields[19]}"  # field 22 of stat, starttime


def _run_from_row(row, load=loads) -> RunRecord:
    """The record of a row; ``load`` reads its JSON (``Project._loads_paths``: paths absolute)."""
    return RunRecord(id=row["id"], kind=row["kind"], status=row["status"],
                     config=load(row["config"]), result=load(row["result"]),
                     started=row["started"], finished=row["finished"], pid=row["pid"],
                     host=row["host"])
