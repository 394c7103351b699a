"""Against a real Prefect server on a free loopback port: the CLI's flow run, its task runs and
artifacts as the API reports them, the cache on a rerun, and a deployment run by a worker.
Uses the canonical data (installed by the test command); skipped where it is missing. The
server (conftest's real_server) is test_ui_artifacts' too: each test picks out its own flow
runs by their artifacts directory."""

import re
import subprocess

import httpx
import pytest

from tests.helpers.data import require_real_data
from tests.helpers.servers import BIN, ROOT, post
from vae_model.runs import storage

pytestmark = pytest.mark.integration
TINY = ["--epochs", "2", "--train-limit", "2048", "--iwae-k", "5", "--gradient-draws", "3",
        "--seeds", "0"]


@pytest.fixture(scope="module")
def server(request):
    require_real_data()  # before the server starts
    return request.getfixturevalue("real_server")


def _cli(env, *args, timeout=600):
    return subprocess.run([BIN / "vae-pipeline", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _flow_runs(api, flow_name, artifacts=None):
    """The flow runs of ``flow_name``, oldest first; only those writing to ``artifacts``, if
    given (the server is shared)."""
    runs = post(api, "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}},
                                            "sort": "EXPECTED_START_TIME_ASC"})
    return [r for r in runs
            if artifacts is None or r["parameters"].get("artifacts_dir") == str(artifacts)]


def _task_states(api, flow_run_id) -> dict:
    runs = post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return {r["name"]: r["state"]["name"] for r in runs}


def test_flow_run_task_runs_artifacts_and_cache_through_the_api(server, tmp_path):
    api, env = server
    artifacts = str(tmp_path / "artifacts")
    first = _cli(env, "run", *TINY, "--run-id", "srv", "--artifacts-dir", artifacts)
    assert first.returncode == 0, first.stderr[-3000:]

    (flow_run,) = _flow_runs(api, "vae-pipeline", artifacts)
    assert flow_run["state"]["type"] == "COMPLETED"
    states = _task_states(api, flow_run["id"])
    stages = ["verify-data", "train-analytic-s0", "train-monte_carlo-s0", "evaluate-analytic-s0",
              "evaluate-monte_carlo-s0", "render-figures", "write-report", "publish-results"]
    assert sorted(states) == sorted(stages)
    assert set(states.values()) == {"Completed"}

    keys = {a["key"] for a in post(api, "/artifacts/filter") if a["key"]}
    assert {"vae-run-summary", "vae-estimator-comparison", "vae-report", "vae-history",
            "train-progress-analytic-s0", "train-progress-monte-carlo-s0"} <= keys
    assert not any(k.startswith("vae-figure-") for k in keys)  # figures are inline in vae-report
    assert all(re.fullmatch(r"[a-z0-9-]+", k) for k in keys)
    progress = post(api, "/artifacts/filter", {"artifacts": {"key": {"any_": [
        "train-progress-analytic-s0"]}, "flow_run_id": {"any_": [flow_run["id"]]}}})
    assert progress[0]["data"] == 100.0

    again = _cli(env, "run", *TINY, "--run-id", "srv", "--artifacts-dir", artifacts)
    assert again.returncode == 0, again.stderr[-3000:]
    second = _flow_runs(api, "vae-pipeline", artifacts)[-1]
    states = _task_states(api, second["id"])
    for stage in stages[1:-1]:
        assert states[stage] == "Cached", (stage, states)

    rerun = _cli(env, "rerun", "figures", "--run-id", "srv", "--artifacts-dir", artifacts,
                 "--force")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (rerun_run,) = _flow_runs(api, "vae-rerun-stage", artifacts)
    assert rerun_run["name"] == "rerun-figures-srv"
    assert _task_states(api, rerun_run["id"])["render-figures"] == "Completed"


def test_deployment_from_prefect_yaml_runs_on_a_process_worker(server, tmp_path):
    api, env = server
    env = {**env, "PWD": str(ROOT)}  # prefect.yaml's working directory is "{{ $PWD }}"
    artifacts = tmp_path / "artifacts"

    def run(*args):
        return subprocess.run([BIN / "prefect", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=300)

    created = run("work-pool", "create", "vae-process", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = run("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    (deployment,) = post(api, "/deployments/filter")
    assert deployment["name"] == "nightly" and deployment["schedules"][0]["schedule"]["cron"]
    started = run("deployment", "run", "vae-pipeline/nightly", "-p", "epochs=1",
                  "-p", "train_limit=1024", "-p", "iwae_k=3", "-p", "gradient_draws=2",
                  "-p", "seeds=[0]",
                  "-p", f"artifacts_dir={artifacts}")
    assert started.returncode == 0, started.stdout + started.stderr
    worker = run("worker", "start", "--pool", "vae-process", "--run-once")
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    runs = post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}},
                                            "flow_runs": {"state": {"type": {"any_": [
                                                "COMPLETED"]}}}})
    assert len(runs) == 1
    latest = (artifacts / "latest").resolve()
    assert (latest / "manifest.json").exists() and latest.name.endswith(runs[0]["name"])


def test_two_runs_started_at_once_write_separate_directories(server, tmp_path):
    api, env = server
    artifacts = tmp_path / "artifacts"
    tiny = ["--epochs", "1", "--train-limit", "1024", "--iwae-k", "2", "--gradient-draws", "2",
            "--estimators", "analytic", "--seeds", "0"]
    runs = [subprocess.Popen([BIN / "vae-pipeline", "run", *tiny, "--artifacts-dir",
                              str(artifacts)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in runs:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    directories = sorted((artifacts / "runs").iterdir())
    assert len(directories) == 2
    for directory in directories:
        assert (directory / "manifest.json").exists() and (directory / "metrics.json").exists()
    assert (artifacts / "latest").resolve() in directories


def test_a_failed_run_retried_resumes_from_the_failed_stage(server, tmp_path):
    api, env = server
    artifacts = tmp_path / "artifacts"
    (artifacts / "latest").mkdir(parents=True)  # publishing 'latest' will fail on this
    (artifacts / "latest" / "blocker").write_text("x")
    failed = _cli(env, "run", *TINY, "--estimators", "analytic", "--artifacts-dir",
                  str(artifacts))
    assert failed.returncode != 0
    flow_run = _flow_runs(api, "vae-pipeline", artifacts)[0]
    assert flow_run["state"]["type"] == "FAILED"
    assert _task_states(api, flow_run["id"])["publish-results"] == "Failed"
    (run_dir,) = (artifacts / "runs").iterdir()

    (artifacts / "latest" / "blocker").unlink()
    (artifacts / "latest").rmdir()
    retried = subprocess.run([BIN / "prefect", "flow-run", "retry", flow_run["id"],
                              "--entrypoint", "flows/pipeline.py:vae_pipeline"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert retried.returncode == 0, retried.stdout[-3000:] + retried.stderr[-3000:]
    state = httpx.get(f"{api}/flow_runs/{flow_run['id']}", timeout=30).json()["state"]
    assert state["type"] == "COMPLETED"
    assert list((artifacts / "runs").iterdir()) == [run_dir]  # the same directory
    assert (artifacts / "latest").resolve() == run_dir
    states = post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
    latest_by_name = {}
    for task_run in sorted(states, key=lambda r: r["expected_start_time"]):
        latest_by_name[task_run["name"]] = task_run["state"]["name"]
    for stage in ("train-analytic-s0", "evaluate-analytic-s0", "render-figures"):
        assert latest_by_name[stage] == "Cached", latest_by_name
    # the failed run's record replaced manifest.json, one of write-report's outputs, so that
    # stage runs again and the manifest says complete once more
    assert latest_by_name["write-report"] == "Completed", latest_by_name
    assert latest_by_name["publish-results"] == "Completed"
    assert storage.read_json(run_dir / "manifest.json")["status"] == "complete"
