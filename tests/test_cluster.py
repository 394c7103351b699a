"""A sweep on a cluster whose machines share no disk: a real S3 server (SeaweedFS), a real
Prefect server, a Dask scheduler and two workers, each worker in its own mount namespace (an
empty tmpfs over the flow's artifacts directory, Prefect home, data and caches) and with its
own host name. Nothing is shared but the store, the API and the scheduler."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import cluster, servers
from tests.helpers.data import require_real_data

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "vae-pipeline"
BUCKET = "vae"
SMALL = ["--seeds", "0", "1", "--epochs", "1", "--train-limit", "2000", "--iwae-k", "5",
         "--gradient-draws", "2"]


@dataclasses.dataclass
class World:
    store: cluster.ObjectStore
    dask: cluster.DaskCluster
    api: str
    env: dict  # the flow machine's environment
    cwd: Path
    local_artifacts: Path

    def sweep(self, *args: str, env: dict | None = None, timeout: float = 900, wait=True):
        command = [str(CLI), "sweep", "--dask-address", self.dask.address, *args]
        if not wait:
            return subprocess.Popen(command, env=env or self.env, cwd=self.cwd, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.run(command, env=env or self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=timeout)

    def cli(self, *args: str, env: dict | None = None):
        return subprocess.run([str(CLI), *args], env=env or self.env, cwd=self.cwd,
                              capture_output=True, text=True, timeout=300)

    def read_json(self, key: str) -> dict:
        return json.loads(self.store.fs().cat_file(f"{BUCKET}/{key}"))

    def last_task_states(self) -> dict[str, str]:
        """{task run name: state name} of the newest flow run."""
        flow_run = servers.post(self.api, "/flow_runs/filter",
                                {"sort": "EXPECTED_START_TIME_DESC", "limit": 1})[0]
        runs = servers.post(self.api, "/task_runs/filter",
                            {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
        return {r["name"]: r["state"]["name"] for r in runs}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ok, reason = cluster.can_isolate()
    if not ok:
        pytest.skip(reason)
    require_real_data()
    from vae_model.model import data

    source = data.locate(download=False)
    base = tmp_path_factory.mktemp("cluster")
    local_artifacts, flow_home, cwd = base / "artifacts", base / "prefect", base / "flow"
    for directory in (flow_home, cwd):
        directory.mkdir()
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(cluster.object_store(base / "store"))
        store.make_bucket(BUCKET)
        for file in sorted(Path(source).glob("*.gz")):
            store.fs().put_file(str(file), f"{BUCKET}/fashion-mnist/{file.name}")
        api, _ = stack.enter_context(servers.prefect_server(flow_home))
        workers_home = base / "worker-prefect"
        hidden = [local_artifacts, flow_home, workers_home, cwd, Path(source),
                  Path.home() / ".keras" / "datasets", Path.home() / ".cache" / "vae-pipeline"]
        dask = stack.enter_context(cluster.dask_cluster(
            {**store.env, "PREFECT_API_URL": api, "PREFECT_HOME": str(workers_home)}, hidden,
            logs=base / "logs"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
        env.update(store.env, PREFECT_API_URL=api, PREFECT_UI_API_URL=api,
                   PREFECT_HOME=str(flow_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        yield World(store, dask, api, env, cwd, local_artifacts)


def _store_args(artifacts: str) -> list[str]:
    return ["--artifacts-dir", f"s3://{BUCKET}/{artifacts}",
            "--data-dir", f"s3://{BUCKET}/fashion-mnist"]


def test_a_local_artifacts_directory_cannot_work_on_this_cluster(world):
    """The harness catches the problem: models trained into the workers' own disks."""
    result = world.sweep(*SMALL, "--run-id", "local", "--artifacts-dir",
                         str(world.local_artifacts / "first"), "--data-dir",
                         f"s3://{BUCKET}/fashion-mnist")
    assert result.returncode != 0
    assert "no trained model" in result.stderr or "state.json" in result.stderr, \
        result.stderr[-3000:]


def test_a_store_backed_sweep_completes_is_cached_and_rebuilds_what_was_deleted(world):
    args = [*SMALL, *_store_args("art"), "--run-id", "c1"]
    result = world.sweep(*args)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "report: s3://vae/art/runs/c1/report.md" in result.stdout
    assert list(world.cwd.iterdir()) == []  # the flow's machine wrote nothing locally
    assert not (world.local_artifacts / "runs").exists()
    manifest = world.read_json("art/runs/c1/manifest.json")
    assert manifest["status"] == "complete" and len(manifest["models"]) == 4
    metrics = world.read_json("art/runs/c1/metrics.json")
    hosts = {m["machines"][-1]["host"] for m in metrics["models"].values()}
    assert hosts == {"worker-a", "worker-b"}  # both workers trained models
    report = world.store.fs().cat_file(f"{BUCKET}/art/runs/c1/report.md").decode()
    assert "trained on more than one machine" in report and "worker-b" in report
    assert world.store.fs().cat_file(f"{BUCKET}/art/latest").decode().strip() == "runs/c1"
    listed = world.cli("runs", "--artifacts-dir", f"s3://{BUCKET}/art")
    assert listed.returncode == 0 and "c1" in listed.stdout and "complete" in listed.stdout

    again = world.sweep(*args)
    assert again.returncode == 0, again.stderr[-4000:]
    states = world.last_task_states()
    cached = {n for n, s in states.items() if s == "Cached"}
    assert {n for n in states if n.startswith(("train-", "evaluate-"))} <= cached, states
    assert {"render-figures", "write-report"} <= cached

    fs = world.store.fs()
    model = "art/runs/c1/models/analytic-s1"
    state = json.loads(fs.cat_file(f"{BUCKET}/{model}/state.json"))
    fs.rm_file(f"{BUCKET}/{model}/{state['checkpoint']}.index")
    third = world.sweep(*args)
    assert third.returncode == 0, third.stderr[-4000:]
    states = world.last_task_states()
    rerun = {n for n, s in states.items() if s != "Cached"}
    assert rerun == {"verify-data", "train-analytic-s1", "evaluate-analytic-s1",
                     "render-figures", "write-report", "publish-results"}, states
    assert fs.exists(f"{BUCKET}/{model}/{state['checkpoint']}.index")

    rerun = world.cli("rerun", "report", "--run-id", "c1", "--artifacts-dir", "s3://vae/art")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert world.read_json("art/runs/c1/manifest.json")["status"] == "complete"
    assert list(world.cwd.iterdir()) == []


def test_a_second_writer_of_a_store_run_is_refused_before_any_work(world):
    from upath import UPath

    from vae_model.runs import lease

    run = UPath(f"s3://{BUCKET}/art/runs/busy", **_client_options(world))
    assert lease.acquire(run, {"pid": 4242, "host": "elsewhere"}) is not None
    try:
        result = world.sweep(*SMALL, *_store_args("art"), "--run-id", "busy")
    finally:
        run.fs.rm_file(f"{run.path}/.lock")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip().splitlines()[-1]]  # one line
    assert "being written by pid 4242 on host elsewhere" in result.stderr
    assert not world.store.fs().exists(f"{BUCKET}/art/runs/busy/models")


def _client_options(world) -> dict:
    return {"key": world.store.env["AWS_ACCESS_KEY_ID"],
            "secret": world.store.env["AWS_SECRET_ACCESS_KEY"],
            "endpoint_url": world.store.endpoint, "use_listings_cache": False}


def test_wrong_credentials_and_a_stopped_store_are_one_line_each(world):
    before = sorted(world.store.fs().find(BUCKET))
    wrong = {**world.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    result = world.sweep(*SMALL, *_store_args("art"), "--run-id", "creds", env=wrong)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "refused the credentials" in result.stderr
    assert "not-the-secret" not in result.stderr + result.stdout
    world.store.stop()
    try:
        down = world.sweep(*SMALL, *_store_args("art"), "--run-id", "down")
    finally:
        world.store.start()
    assert down.returncode == 2
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "does not answer" in down.stderr
    missing = world.sweep(*SMALL, "--artifacts-dir", "s3://no-such-bucket/art",
                          "--run-id", "nobucket")
    assert missing.returncode == 2 and "bucket s3://no-such-bucket does not exist" in \
        missing.stderr
    assert sorted(world.store.fs().find(BUCKET)) == before  # nothing half-written


def test_a_worker_killed_while_training_is_resumed_on_the_other(world):
    fs = world.store.fs()
    state_key = f"{BUCKET}/art/runs/kill/models/analytic-s0/state.json"
    process = world.sweep("--estimators", "analytic", "--seeds", "0", "--epochs", "3",
                          "--train-limit", "12000", "--iwae-k", "5", "--gradient-draws", "2",
                          *_store_args("art"), "--run-id", "kill", wait=False)
    output = {}
    reader = threading.Thread(target=lambda: output.update(
        zip(("stdout", "stderr"), process.communicate(timeout=900))))
    reader.start()
    deadline = time.monotonic() + 600
    while not fs.exists(state_key):
        assert time.monotonic() < deadline and process.poll() is None, "no epoch committed"
        time.sleep(0.5)
    first = json.loads(fs.cat_file(state_key))
    victim = first["machines"][-1]["host"]
    world.dask.kill(victim)
    reader.join()
    world.dask.start(victim)
    assert process.returncode == 0, output.get("stderr", "")[-4000:]
    final = json.loads(fs.cat_file(state_key))
    survivor = ({"worker-a", "worker-b"} - {victim}).pop()
    assert [m["host"] for m in final["machines"]] == [victim, survivor]
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3]
    # the epochs committed before the kill were kept, not trained again
    assert final["history"][:first["epoch"]] == first["history"]


def test_an_interrupt_on_the_flows_machine_stops_training_on_the_workers(world):
    fs = world.store.fs()
    run = f"{BUCKET}/art/runs/stop"
    process = world.sweep("--estimators", "analytic", "--seeds", "0", "--epochs", "40",
                          "--train-limit", "12000", "--iwae-k", "5", "--gradient-draws", "2",
                          *_store_args("art"), "--run-id", "stop", wait=False)
    deadline = time.monotonic() + 600
    while not fs.exists(f"{run}/models/analytic-s0/state.json"):
        assert time.monotonic() < deadline and process.poll() is None, "no epoch committed"
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    manifest = json.loads(fs.cat_file(f"{run}/manifest.json"))
    assert manifest["status"] == "failed" and manifest["error"] == "interrupted", manifest
    time.sleep(8)  # the worker polls its stop flag every 2 s; an epoch takes a few seconds
    epoch = json.loads(fs.cat_file(f"{run}/models/analytic-s0/state.json"))["epoch"]
    time.sleep(10)
    assert json.loads(fs.cat_file(f"{run}/models/analytic-s0/state.json"))["epoch"] == epoch
    assert epoch < 40
