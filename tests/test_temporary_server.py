"""The CLI's temporary Prefect server (flows.cli.temporary_server): used while the command runs,
then stopped; one that cannot start fails the run in one line after three launches."""

import subprocess
import sys

import psutil

from tests.helpers.processes import ROOT, gone, temporary_server_env

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
