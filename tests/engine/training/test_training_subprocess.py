"""Training in a real child process: events tailed live, graceful stop, kill, errors, resume."""

from __future__ import annotations

import os
import signal
import time

import pytest

from napari_semiseg.engine.training import (CHECKPOINT_FILE, CaseSpec, DataSpec, TrainingError, load_checkpoint,
                                            load_model, run_training_subprocess, train)
from training_support import file_data_spec, tiny_config

STARTUP_TIMEOUT_S = 300


def wait_for_iteration(handle, at_least: int) -> list[dict]:
    """Events until one reports ``at_least`` steps done (fails if the child exits first)."""
    events = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        events += handle.poll_events()
        if any(e["event"] == "iteration" and e["iteration"] >= at_least for e in events):
            return events
        assert handle.running, f"the child exited early:\n{handle.log_tail()}"
        time.sleep(0.1)
    handle.kill()
    pytest.fail("the child did not reach its first steps in time")


def test_stop_ends_the_child_gracefully_with_its_weights_and_the_run_resumes(tmp_path):
    data = file_data_spec(tmp_path / "cases")
    config = tiny_config(tmp_path / "run", iterations=10_000, validate_every=0, checkpoint_every=0, data=data)
    handle = run_training_subprocess(config)
    events = wait_for_iteration(handle, 2)
    assert events[0]["event"] == "start" and events[0]["n_labeled"] == 2
    assert handle.stop(timeout=STARTUP_TIMEOUT_S) == 0, handle.log_tail()
    events += handle.poll_events()
    stopped = events[-1]
    assert stopped["event"] == "stopped" and stopped["reason"] == "stop file"
    assert 2 <= stopped["iteration"] < 10_000
    result = handle.result()
    assert result.status == "stopped" and result.iteration == stopped["iteration"]
    assert load_checkpoint(result.checkpoint)["iteration"] == stopped["iteration"]
    assert load_model(result.model).iteration == stopped["iteration"]

    resumed = train(tiny_config(tmp_path / "run", iterations=stopped["iteration"] + 2, data=data,
                                resume_from=str(result.checkpoint)))
    assert resumed.status == "finished" and resumed.iteration == stopped["iteration"] + 2


def test_kill_ends_the_child_at_once_and_the_last_checkpoint_stays_readable(tmp_path):
    config = tiny_config(tmp_path / "run", iterations=10_000, checkpoint_every=1,
                         data=file_data_spec(tmp_path / "cases"))
    handle = run_training_subprocess(config)
    wait_for_iteration(handle, 3)
    assert handle.kill() != 0
    assert not handle.running
    assert all(e["event"] not in ("stopped", "finished") for e in handle.poll_events())
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["iteration"] >= 2
    with pytest.raises(TrainingError, match="has not finished or stopped"):
        handle.result()


def test_a_failing_child_reports_its_error_as_an_event(tmp_path):
    missing = CaseSpec("ghost", str(tmp_path / "ghost.nii.gz"), str(tmp_path / "ghost.nii.gz"))
    config = tiny_config(tmp_path / "run", iterations=5, data=DataSpec(labeled=(missing,)))
    handle = run_training_subprocess(config)
    assert handle.wait(timeout=STARTUP_TIMEOUT_S) == 1
    error = list(handle.iter_events())[-1]
    assert error["event"] == "error" and "ghost.nii.gz" in error["message"]
    assert "ghost.nii.gz" in handle.log_tail()
    with pytest.raises(TrainingError, match="the run failed: .*ghost"):
        handle.result()


def test_sigterm_stops_the_child_gracefully(tmp_path):
    config = tiny_config(tmp_path / "run", iterations=10_000, data=file_data_spec(tmp_path / "cases"))
    handle = run_training_subprocess(config)
    wait_for_iteration(handle, 1)
    os.kill(handle.pid, signal.SIGTERM)
    assert handle.wait(timeout=STARTUP_TIMEOUT_S) == 0, handle.log_tail()
    stopped = list(handle.iter_events())[-1]
    assert stopped["event"] == "stopped" and stopped["reason"] == "signal SIGTERM"
    assert handle.result().model.is_file()
