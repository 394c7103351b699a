"""A temporary Prefect API server for a command when no PREFECT_API_URL is set, started and
stopped by the command itself, which then uses it as it would any Prefect server.

Prefect would start one of its own (the same command); this one starts as soon as the command
line is checked (it comes up on the other core while TensorFlow is imported), runs in a session
of its own (a Ctrl-C reaches the pipeline, not the server), stops itself when its parent dies
(even by SIGKILL), is started again on its port if it dies during a run (its database is a
file), and after three failed launches is one line, not a minute of tracebacks. Like Prefect's,
it has no UI. Behaviour and timings: ``docs/operations.md``, ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

from vae_model import UserInputError

LAUNCHES = 3  # server processes the first start may launch (on other ports)
RESTARTS = 3  # servers started again after one died during the run
PORT_IN_USE_OR_FAILED = 3  # uvicorn's exit code for both

# Runs uvicorn as ``python -m uvicorn`` would, after starting a thread that stops this process
# once its parent is gone (the orphan is re-parented, so getppid() changes).
_WATCHED_UVICORN = """
import os, runpy, signal, sys, threading, time
parent = os.getppid()
def stop_when_orphaned():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=stop_when_orphaned, daemon=True).start()
sys.argv[0] = "uvicorn"
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""

class TemporaryServer:
    def __init__(self, environment: dict[str, str]):
        self.environment, self.launches, self.restarts = environment, 0, 0
        self.process: subprocess.Popen | None = None
        self._stopping, self._watch = threading.Event(), None
        self._launch()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self, port: int | None = None) -> None:
        self.launches += 1
        if port is None:
            with socket.socket() as probe:  # a free port now; if taken meanwhile, exit code 3
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        import prefect  # the server's code, as Prefect launches it

        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHED_UVICORN, "--app-dir",
             str(prefect.__module_path__.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=self.environment, start_new_session=True)

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Return once the server answers (within ``timeout`` s, by default Prefect's start-up
        timeout for its temporary servers), then restart it if it dies; a one-line error if
        it cannot start."""
        self._answering(timeout, same_port=False)
        if self._watch is None:
            self._watch = threading.Thread(target=self._restart_when_dead, daemon=True,
                                           name="temporary-server-watch")
            self._watch.start()

    def _answering(self, timeout: float | None, same_port: bool) -> None:
        import httpx
        from prefect.settings import get_current_settings

        if timeout is None:
            timeout = get_current_settings().server.ephemeral.startup_timeout_seconds
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set():
            code = self.process.poll()
            if code == PORT_IN_USE_OR_FAILED and not same_port:
                if self.launches == LAUNCHES:
                    raise _cannot_start(f"failed to start {LAUNCHES} times (its errors are above)")
                self._launch()  # on another port
            elif code is not None:
                raise _cannot_start(f"exited with code {code}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.api_url + "/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise _cannot_start(f"did not answer within {timeout:g} s")
            time.sleep(0.1)

    def _restart_when_dead(self) -> None:
        """Start the server again, on its port (the client has its URL), whenever it exits
        before ``stop``; at most RESTARTS times a run."""
        from prefect.logging import get_logger

        while not self._stopping.wait(0.5):
            code = self.process.poll()
            if code is None:
                continue
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            if self.restarts == RESTARTS:
                get_logger().error("Prefect's temporary server on %s %s, and was restarted %d "
                                   "times already: not again", self.api_url[:-4], how, RESTARTS)
                return
            self.restarts += 1
            get_logger().warning("Prefect's temporary server on %s %s during the run; "
                                 "starting it again on the same port", self.api_url[:-4], how)
            try:
                self._launch(self.port)
                self._answering(None, same_port=True)
            except Exception as err:  # noqa: BLE001 - one line; the client's errors follow
                get_logger().error("Prefect's temporary server could not be started again: %s",
                                   str(err).splitlines()[0])
                return

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join()
        if self.process is None or self.process.poll() is not None:
            return
        from prefect.logging import get_logger

        get_logger().info("Stopping temporary server on %s", self.api_url[:-4])
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def serving():
    """Start a temporary server and point this process (and the processes it starts: Dask
    workers) at it through PREFECT_API_URL; on leaving, send what Prefect's log and event
    workers still hold, stop the server, and restore the settings."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    # the settings of this process, for the server's (PREFECT_HOME, database, ...), as Prefect
    environment = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1",
                   **get_current_settings().to_environment_variables(exclude_unset=True)}
    server = TemporaryServer(environment)
    names = ("PREFECT_API_URL", "PREFECT_UI_URL")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(PREFECT_API_URL=server.api_url, PREFECT_UI_URL="")
    refresh_global_settings_context()
    try:
        yield server
    finally:
        try:
            _drain_prefect_workers()
        finally:
            server.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            refresh_global_settings_context()


def _drain_prefect_workers() -> None:
    """Logs and events Prefect still holds go to the server before it stops (Prefect drains
    them at interpreter exit, when this server would be gone)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)


def _cannot_start(what: str) -> UserInputError:
    from prefect.settings import PREFECT_HOME

    return UserInputError(f"Prefect's temporary server {what}: check that PREFECT_HOME "
                          f"({PREFECT_HOME.value()}) is writable, or set PREFECT_API_URL to a "
                          "running Prefect server")
