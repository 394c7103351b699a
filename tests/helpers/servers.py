"""Real servers for integration tests: a Prefect server on a free loopback port, and a
throw-away PostgreSQL cluster. Both are torn down with their whole process group."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prefect_server(home: Path, extra_env: dict | None = None):
    """Yields (api_url, env for clients); the server's SQLite lives in ``home`` unless
    ``extra_env`` names another database."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
           "PREFECT_UI_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", **(extra_env or {})}
    log = open(home / "server.log", "wb")
    process = subprocess.Popen([BIN / "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, cwd=home, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError("prefect server exited during start-up: "
                                   + (home / "server.log").read_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("prefect server did not start in 120 s")
            time.sleep(0.5)
        yield api, env
    finally:
        _stop_group(process)
        log.close()


def post(api: str, path: str, body: dict | None = None):
    """The JSON answer of the Prefect API's ``POST {api}{path}`` (its filters take a body)."""
    response = httpx.post(f"{api}{path}", json=body or {}, timeout=30)
    response.raise_for_status()
    return response.json()


def _stop_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def postgres():
    """A fresh cluster in a temporary directory, listening on 127.0.0.1 only; yields its
    SQLAlchemy asyncpg URL and (binaries, port)."""
    binaries = postgres_binaries()
    # Not under pytest's tmp_path: as root, initdb must run as 'postgres', which cannot enter
    # root's private pytest directories.
    directory = Path(tempfile.mkdtemp(prefix="vae-tests-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(directory, "postgres", "postgres")
    data, port = directory / "data", free_port()

    def run(*args):
        subprocess.run([*as_owner, *map(str, args)], check=True, capture_output=True,
                       timeout=120)
    run(binaries / "initdb", "-D", data, "-A", "trust", "-U", "prefect")
    run(binaries / "pg_ctl", "-D", data, "-w", "-l", directory / "postgres.log", "-o",
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start")
    try:
        run(binaries / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "prefect", "prefect")
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect", (binaries, port)
    finally:
        subprocess.run([*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)
