"""Interrupting a run: Ctrl-C in a terminal (SIGINT to the whole process group), SIGTERM from a
scheduler. The run stops at the next training chunk, not at the end of its stage; says so in
one line and in its manifest; leaves no Prefect server behind; and resumes with the same
command. (SIGKILL: tests/test_lock.py.) Also the CLI's temporary server: used while the command
runs, then stopped."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import psutil
import pytest

from tests.conftest import synthetic_arrays
from tests.processes import ROOT, children, gone, start_pipeline, temporary_server_env, wait_until
from tests.servers import prefect_server
from vae_model import training
from vae_model.evaluation import heldout as evaluation
from vae_model.model.config import ModelConfig
from vae_model.runs import directory, stopping, storage

EPOCHS = 100  # far more than the few the run gets through before it is interrupted
ARGS = ["run", "--run-id", "r", "--epochs", str(EPOCHS), "--batch-size", "32", "--iwae-k",
        "2", "--gradient-draws", "2", "--seeds", "0", "--estimators", "analytic"]


@pytest.fixture
def clear_stop():
    yield
    stopping.reset()


def test_a_stop_request_ends_training_at_the_next_chunk_and_keeps_the_last_epoch(
        tmp_path, clear_stop):
    arrays = synthetic_arrays()
    config = ModelConfig(batch_size=32, epochs=4, seed=1)  # 8 steps an epoch, 4 chunks

    def stop_during_epoch_2(progress):
        if progress.epoch == 2:
            stopping.request()
    with pytest.raises(stopping.Stopped):
        training.fit(config, arrays["train_images"], arrays["test_images"], tmp_path,
                     steps_per_chunk=2, on_progress=stop_during_epoch_2)
    assert storage.read_json(tmp_path / "state.json")["epoch"] == 1

    stopping.reset()
    resumed = training.fit(config, arrays["train_images"], arrays["test_images"], tmp_path)
    assert resumed.resumed_from_epoch == 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_a_stop_request_ends_iwae_before_its_next_batch(clear_stop):
    from vae_model.model.networks import VAE
    model = VAE(ModelConfig())
    images = synthetic_arrays()["test_images"]
    assert np.all(np.isfinite(evaluation.iwae_per_image(model, images, 2, batch_size=16)))
    stopping.request()
    with pytest.raises(stopping.Stopped):
        evaluation.iwae_per_image(model, images, 2, batch_size=16)


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
        from flows.cli.command import main
        stopped_at = storage.read_json(state)["epoch"]
        assert main(args) == 0
        history = storage.read_json(state)["history"]
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
        assert storage.read_json(run_path / "manifest.json")["status"] == "complete"
        assert 0 < stopped_at < EPOCHS


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


def test_abandoning_marks_the_runs_being_written_failed_and_stops_their_stages(
        tmp_path, clear_stop):
    """What the API watcher does before ending the process: not the run already written."""
    from tasks import guard
    busy, done = directory.run_dir(tmp_path, "busy"), directory.run_dir(tmp_path, "done")
    with guard.writing(done, {"seeds": [0]}):
        pass
    with guard.writing(busy, {"seeds": [1]}):
        abandoned, finished = guard.abandon("the API went away")
        with pytest.raises(stopping.Stopped):
            stopping.check()
    assert abandoned == [busy] and done in finished and busy not in finished
    manifest = storage.read_json(busy / "manifest.json")
    assert (manifest["status"], manifest["stage"], manifest["error"]) == (
        "failed", "flow", "the API went away")
    assert manifest["parameters"] == {"seeds": [1]}
    assert not (done / "manifest.json").exists()


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


# The CLI's temporary server: this process (and its children) use it through PREFECT_API_URL
# while the command runs; then it is stopped and the settings are as they were.
SERVES = """
import os
import httpx
from flows.cli import temporary_server
from prefect.settings import get_current_settings
with temporary_server.serving() as server:
    server.wait_until_ready()  # the CLI imports TensorFlow meanwhile
    url = get_current_settings().api.url
    print(url == server.api_url == os.environ["PREFECT_API_URL"],
          httpx.get(url + "/health", timeout=5).status_code, server.process.pid)
print(get_current_settings().api.url, "PREFECT_API_URL" in os.environ,
      server.process.poll() is not None)
"""


def test_the_temporary_server_is_used_while_the_command_runs_then_stopped(tmp_path):
    env = temporary_server_env(tmp_path / "prefect-home")
    done = subprocess.run([sys.executable, "-c", SERVES], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    during, after = done.stdout.splitlines()[-2:]
    same_url, status, pid = during.split()
    assert (same_url, status) == ("True", "200")
    assert after == "None False True"
    try:
        server = [psutil.Process(int(pid))]
    except psutil.NoSuchProcess:
        server = []
    assert gone(server, timeout=1)


def test_a_temporary_server_that_cannot_start_fails_the_run_in_one_line(tmp_path):
    env = temporary_server_env("/proc/no-prefect-home")  # cannot be created, not even by root
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--run-id", "x", "--seeds", "0",
         "--artifacts-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("vae-pipeline:")]
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith(
        "vae-pipeline: error: Prefect's temporary server failed to start 3 times")
    assert "PREFECT_HOME (/proc/no-prefect-home) is writable" in errors[0]
    # three launches, not one every 4 s until the 2-minute start-up timeout
    assert output.count("Application startup failed") == 3


@pytest.mark.parametrize("value, expected", [(None, 60.0), ("", 60.0), ("12.5", 12.5),
                                             ("soon", None), ("0", None), ("-5", None),
                                             ("nan", None), ("inf", None)])
def test_the_api_grace_is_a_positive_number_of_seconds_or_one_line(monkeypatch, value, expected):
    from flows.cli import api
    from vae_model import UserInputError
    if value is None:
        monkeypatch.delenv("VAE_PIPELINE_API_GRACE_SECONDS", raising=False)
    else:
        monkeypatch.setenv("VAE_PIPELINE_API_GRACE_SECONDS", value)
    if expected is not None:
        assert api.api_grace_seconds() == expected
    else:
        with pytest.raises(UserInputError, match=f"VAE_PIPELINE_API_GRACE_SECONDS must be a "
                           f"number of seconds > 0, got '{value}'"):
            api.api_grace_seconds()


GIVE_UP = """
import sys
from flows.cli import api
from tasks import guard
with guard.writing(sys.argv[1]):
    if sys.argv[2] == "during":
        api._give_up("the API went away")
api._give_up("the API went away")
"""


@pytest.mark.parametrize("when", ["during", "after"])
def test_giving_up_on_the_api_ends_the_process_in_one_line(tmp_path, when):
    """During the flow's work: the run is marked failed, rc 1. After it: the results stand,
    a warning, rc 0 (the Prefect UI only lacks the flow run's end)."""
    run_path = directory.run_dir(tmp_path, "r")
    done = subprocess.run([sys.executable, "-c", GIVE_UP, str(run_path), when], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    lines = done.stderr.strip().splitlines()
    if when == "during":
        assert done.returncode == 1, done.stderr
        assert lines[-1] == (f"vae-pipeline: error: the API went away; what was finished is "
                             f"kept in {run_path}: once the server is back, rerun with "
                             "--run-id r to resume")
        assert storage.read_json(run_path / "manifest.json")["status"] == "failed"
    else:
        assert done.returncode == 0, done.stderr
        assert lines[-1] == (f"vae-pipeline: warning: the API went away after the run "
                             f"finished: its results are in {run_path}, but the Prefect UI "
                             "will not show the flow run's end")
        assert not (run_path / "manifest.json").exists()
