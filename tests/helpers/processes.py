"""A real ``vae-pipeline`` process on the tiny dataset, with its own temporary Prefect server,
for tests that signal or kill it; and the command run to its end, for tests of what it says."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
# SIGINT raises KeyboardInterrupt, as in a terminal's job (a shell's background job, pytest's
# included, passes SIGINT on ignored)
SCRIPT = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "from tests.helpers.data import write_tiny_dataset; from pathlib import Path; "
          "from vae_model.model import data; "
          "data.CANONICAL = write_tiny_dataset(Path(sys.argv[1])); "
          "from flows.cli import main; sys.exit(main(sys.argv[2:]))")


def temporary_server_env(prefect_home: str | os.PathLike, **extra: str) -> dict:
    """This process's environment for a child that starts its own temporary Prefect server in
    ``prefect_home`` (no PREFECT_API_URL; 300 s to start on a busy machine), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(prefect_home),
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300", **extra)
    return env


def start_pipeline(tiny_data: Path, tmp_path: Path, args: list[str],
                   **extra_env: str) -> subprocess.Popen:
    """``vae-pipeline *args`` in a new session (its own process group, as a terminal's job),
    with its own temporary server (unless ``extra_env`` sets PREFECT_API_URL); output in
    ``tmp_path / "pipeline.log"``."""
    env = temporary_server_env(tmp_path / "prefect-home", **extra_env)
    with open(tmp_path / "pipeline.log", "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tiny_data), *args], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_cli(tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """``vae-pipeline *args`` to its end (15 minutes at most), with its own temporary server
    unless ``extra_env`` sets PREFECT_API_URL; its output captured as text."""
    env = temporary_server_env(tmp_path / "prefect-home", **extra_env)
    return subprocess.run([str(Path(sys.executable).parent / "vae-pipeline"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def wait_until(condition, process: subprocess.Popen, log: Path, what: str,
               timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def children(process: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(process.pid).children(recursive=True)


def gone(processes: list[psutil.Process], timeout: float) -> bool:
    """Whether every one of ``processes`` has exited within ``timeout`` s; kills survivors so
    that nothing outlives the test."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for survivor in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()
    return not alive
