"""Prefect's temporary server (started when no PREFECT_API_URL is set) made to fit a pipeline
that can be interrupted:

- **Ctrl-C reaches the pipeline, not the server.** A terminal sends SIGINT to its whole
  foreground process group, server included: the server died at once, and the pipeline's
  last task and flow updates failed with ~400 lines of ``ConnectError`` tracebacks, recording
  "Connection refused" as the run's error instead of "interrupted". The server now runs in a
  session of its own; the pipeline stops it at exit, as Prefect always did.
- **The server goes down with the pipeline, even on SIGKILL.** Prefect stops its server from
  an ``atexit`` hook, which SIGKILL (and Python's default SIGTERM) skip: the server lived on,
  holding a port and ~200 MB, one per killed run. It now watches its parent process and
  stops itself (SIGTERM, uvicorn's graceful shutdown) within a second of the parent's death.

- **It starts while the pipeline imports TensorFlow.** The server takes ~3.5 s to come up and
  the imports ~5 s, one after the other on a 2-core machine that has a core idle for both. The
  server is now started from a background thread as soon as the command line is checked;
  Prefect's own start (when the flow begins) waits for that one to finish rather than see a
  server marked running that does not answer yet.
- **A server that cannot start is one line, soon.** Prefect relaunched it every 4 s for the
  whole start-up timeout (2 min, ~60 tracebacks); it now gives up after 3 launches and the
  pipeline says why (``vae-pipeline: error: Prefect's temporary server failed to start ...``).

Done by giving the server module of Prefect a ``subprocess`` whose ``Popen`` adds the first
two to the one command it launches (``python -m uvicorn ...``; everything else passes
through, and it counts the launches), and by serialising ``SubprocessASGIServer.start``, which
Prefect does not guard.
"""

from __future__ import annotations

import subprocess
import threading
import types

from vae_model import UserInputError

_STARTING = threading.Lock()
LAUNCHES = 3  # server processes one start may launch
_attempt = {"launches": 0, "failure": None}

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


def _popen(args, **kwargs):
    if list(args[1:3]) == ["-m", "uvicorn"]:
        # Prefect relaunches a server that exits with code 3, uvicorn's code for a port in use
        # and for a failed start-up alike: a server that cannot start (an unwritable
        # PREFECT_HOME) was relaunched every 4 s until the timeout, 60 tracebacks later.
        _attempt["launches"] += 1
        if _attempt["launches"] > LAUNCHES:
            raise _cannot_start(f"failed to start {LAUNCHES} times (its errors are above)")
        args = [args[0], "-c", _WATCHED_UVICORN, *args[3:]]
        kwargs["start_new_session"] = True
    return subprocess.Popen(args, **kwargs)


def _cannot_start(what: str) -> UserInputError:
    from prefect.settings import PREFECT_HOME

    return UserInputError(f"Prefect's temporary server {what}: check that PREFECT_HOME "
                          f"({PREFECT_HOME.value()}) is writable, or set PREFECT_API_URL to a "
                          "running Prefect server")


def install() -> None:
    """Launch Prefect's temporary servers as described above (idempotent), and start one now,
    in the background: the next Prefect client waits for it, and gets its error if it failed
    (rather than waiting out the start-up timeout a second time)."""
    from prefect.server.api import server

    if not isinstance(server.subprocess, types.SimpleNamespace):
        server.subprocess = types.SimpleNamespace(**{**vars(subprocess), "Popen": _popen})
        unguarded = server.SubprocessASGIServer.start

        def start(self, timeout=None):
            with _STARTING:
                failure, _attempt["failure"] = _attempt["failure"], None
                if failure is not None and not self.running:
                    raise failure
                _attempt["launches"] = 0
                try:
                    unguarded(self, timeout)
                except UserInputError:
                    raise
                except Exception as err:  # noqa: BLE001 - Prefect's timeout: a RuntimeError
                    raise _cannot_start(f"did not start ({err})") from None
        server.SubprocessASGIServer.start = start
    threading.Thread(target=_start_in_background, args=(server.SubprocessASGIServer,),
                     name="temporary-server-start", daemon=True).start()


def _start_in_background(server_class) -> None:
    try:
        server_class().start()
    except Exception as err:  # noqa: BLE001 - raised again by the next start, in the flow
        _attempt["failure"] = err
