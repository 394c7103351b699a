"""Interrupting a run: Ctrl-C in a terminal (SIGINT to the whole process group), SIGTERM from a
scheduler, SIGKILL. The run stops at the next training chunk, not at the end of its stage; says
so in one line and in its manifest; leaves no Prefect server behind; and resumes with the same
command (after SIGKILL too: the dead process's lock is gone with it). And a run that loses its
Prefect server: the temporary one killed is started again, a user's server gone ends the run in
one line. (Stop requests inside training and evaluation: tests/test_stopping.py; the temporary
server alone: tests/test_temporary_server.py.)"""

import contextlib
import os
import signal
import sqlite3

import psutil
import pytest

from flows.cli.command import main
from tests.helpers.processes import children, gone, start_pipeline, wait_until
from tests.helpers.servers import prefect_server
from vae_model.runs import directory, lock, storage

EPOCHS = 100  # far more than the few the run gets through before it is interrupted
ARGS = ["run", "--run-id", "r", "--epochs", str(EPOCHS), "--batch-size", "32", "--iwae-k",
        "2", "--gradient-draws", "2", "--seeds", "0", "--estimators", "analytic"]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_run_stops_promptly_says_so_and_resumes(tiny_data, tmp_path, how):
    artifacts = tmp_path / "artifacts"
    args = ARGS + ["--artifacts-dir", str(artifacts)]
    process = start_pipeline(tiny_data, tmp_path, args)
    log, run_path = tmp_path / "pipeline.log", directory.run_dir(artifacts, "r")
    state = run_path / "models" / "analytic-s0" / "state.json"
    wait_until(state.exists, process, log, "training never wrote a checkpoint")
    server = children(process)  # Prefect's temporary server, started before training
    assert server
    if how == "ctrl-c":  # a terminal signals its whole foreground process group
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=300)

    output = log.read_text()
    said = "interrupted" if how == "ctrl-c" else "terminated (SIGTERM)"
    assert code == (130 if how == "ctrl-c" else 143), output[-3000:]
    assert (f"vae-pipeline: {said}; rerun with the same --run-id to resume"
            in output.splitlines())
    assert "Traceback" not in output and "ConnectError" not in output
    manifest = storage.read_json(run_path / "manifest.json")
    assert (manifest["status"], manifest["error"]) == ("failed", said)
    # stopped at its next chunk: nowhere near the end of the stage
    assert storage.read_json(state)["epoch"] < EPOCHS / 2
    assert gone(server, timeout=30), "the temporary Prefect server outlived the run"

    if how == "sigterm":  # the same command resumes from the last complete epoch
        stopped_at = storage.read_json(state)["epoch"]
        assert main(args) == 0
        history = storage.read_json(state)["history"]
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
        assert storage.read_json(run_path / "manifest.json")["status"] == "complete"
        assert 0 < stopped_at < EPOCHS


def test_a_flow_run_on_the_id_of_a_killed_run_completes(tiny_data, tmp_path):
    """A real pipeline process on run 'r', SIGKILLed while training; its temporary Prefect
    server stops by itself, and the same run id again resumes and completes (the lock of the
    dead process is gone with it)."""
    artifacts = tmp_path / "artifacts"
    args = ["run", "--run-id", "r", "--artifacts-dir", str(artifacts), "--epochs", "30",
            "--batch-size", "32", "--iwae-k", "2", "--gradient-draws", "2", "--seeds", "0",
            "--estimators", "analytic"]
    process = start_pipeline(tiny_data, tmp_path, args)
    state = artifacts / "runs" / "r" / "models" / "analytic-s0" / "state.json"
    wait_until(state.exists, process, tmp_path / "pipeline.log",
               "training never wrote a checkpoint")
    assert lock.holder(artifacts / "runs" / "r")["pid"] == process.pid
    server = children(process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert gone(server, timeout=30), "the temporary Prefect server outlived a SIGKILL"

    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 300}):
        assert main(args) == 0
    assert (artifacts / "runs" / "r" / "report.md").is_file()


def servers(process, but=()) -> list[psutil.Process]:
    """The pipeline's live uvicorn processes, but ``but``."""
    found = []
    for child in children(process):
        with contextlib.suppress(psutil.Error):  # gone, or a zombie not yet reaped
            if "uvicorn" in " ".join(child.cmdline()) and child not in but:
                found.append(child)
    return found


def database_of(server: psutil.Process) -> str | None:
    with contextlib.suppress(psutil.Error):
        for file in server.open_files():
            if file.path.endswith("prefect.db"):
                return file.path
    return None


def test_a_temporary_server_killed_during_the_run_is_started_again_and_the_run_completes(
        tiny_data, tmp_path):
    artifacts = tmp_path / "artifacts"
    args = ["run", "--run-id", "r", "--epochs", "12", "--batch-size", "32", "--iwae-k", "2",
            "--gradient-draws", "2", "--seeds", "0", "--estimators", "analytic",
            "--artifacts-dir", str(artifacts)]
    process = start_pipeline(tiny_data, tmp_path, args)
    log, run_path = tmp_path / "pipeline.log", directory.run_dir(artifacts, "r")
    state = run_path / "models" / "analytic-s0" / "state.json"
    wait_until(state.exists, process, log, "training never wrote a checkpoint")
    killed = servers(process)
    assert len(killed) == 1
    killed[0].kill()  # as the OOM killer would
    wait_until(lambda: servers(process, but=killed), process, log, "no server started again")
    server = servers(process, but=killed)
    wait_until(lambda: database_of(server[0]), process, log, "the new server has no database")
    database = database_of(server[0])
    code = process.wait(timeout=300)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "killed by signal 9 during the run; starting it again on the same port" in output
    assert "Traceback" not in output and "ConnectError" not in output, output[-3000:]
    manifest = storage.read_json(run_path / "manifest.json")
    assert manifest["status"] == "complete"
    assert [h["epoch"] for h in storage.read_json(state)["history"]] == list(range(1, 13))
    # the restarted server recorded the rest of the run: every stage completed
    with contextlib.closing(sqlite3.connect(database)) as db:
        states = dict(db.execute("SELECT name, state_type FROM task_run").fetchall())
        flows = db.execute("SELECT state_type FROM flow_run").fetchall()
    assert flows == [("COMPLETED",)]
    assert states["train-analytic-s0"] == states["publish-results"] == "COMPLETED", states
    assert gone(server, timeout=30), "the restarted server outlived the run"


def kill_server_on(api: str) -> None:
    """SIGKILL the process group of the Prefect server serving ``api``, as a crash would."""
    port = api.split(":")[-1].split("/")[0]
    for process in psutil.process_iter(["cmdline"]):
        line = process.info["cmdline"] or []
        if "server" in line and "--port" in line and port in line:
            os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            return
    raise AssertionError(f"no server on port {port}")


def test_a_users_server_that_goes_away_mid_run_ends_the_run_in_one_line(tiny_data, tmp_path):
    """A server of the user's (PREFECT_API_URL) cannot be started again by the pipeline. Before:
    training went on, each stage then spent ~80 s failing to report, the exit minutes more,
    with tracebacks (rc 1 five minutes after the kill). Now the run is given up once the
    server has been silent for VAE_PIPELINE_API_GRACE_SECONDS: one line, a failed manifest
    that says why, the trained epochs kept."""
    artifacts, home = tmp_path / "artifacts", tmp_path / "server-home"
    home.mkdir()
    run_path = directory.run_dir(artifacts, "r")
    state = run_path / "models" / "analytic-s0" / "state.json"
    with prefect_server(home) as (api, _):
        process = start_pipeline(tiny_data, tmp_path, ARGS + ["--artifacts-dir", str(artifacts)],
                                 PREFECT_API_URL=api, VAE_PIPELINE_API_GRACE_SECONDS="5")
        log = tmp_path / "pipeline.log"
        wait_until(state.exists, process, log, "training never wrote a checkpoint")
        kill_server_on(api)
        try:
            code = process.wait(timeout=90)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    said = [line for line in output.splitlines() if line.startswith("vae-pipeline:")]
    assert said == [(f"vae-pipeline: error: the Prefect API at {api} stopped answering for 5 s; "
                     f"what was finished is kept in {run_path}: once the server is back, rerun "
                     "with --run-id r to resume")]
    assert output.count("progress artifact not updated") == 1  # once, not every update
    manifest = storage.read_json(run_path / "manifest.json")
    assert (manifest["status"], manifest["stage"]) == ("failed", "flow")
    assert manifest["error"] == f"the Prefect API at {api} stopped answering for 5 s"
    assert storage.read_json(state)["epoch"] >= 1
