"""Stopping long work when the run is interrupted (Ctrl-C, SIGTERM from a scheduler).

A signal interrupts only a process's main thread; stages running in worker threads (the
models a flow trains and scores two at a time) would otherwise go on to their end, minutes
later, while the user waits or a scheduler's grace period runs out. So whoever sees the
interruption calls :func:`request`, and long loops call :func:`check` between units of work (a
training chunk, a batch of IWAE samples, a round of the reference NLL), which raises
:class:`Stopped`. What was complete is kept: training resumes from its last finished epoch.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


class Stopped(Exception):
    """Raised in a stage's thread after :func:`request`: the run was interrupted."""


def request() -> None:
    """Ask every stage of this process to stop at its next :func:`check`."""
    _requested.set()


def reset() -> None:
    """Forget an earlier request (a new flow run in the same process)."""
    _requested.clear()


def check() -> None:
    """Raise :class:`Stopped` if a stop was requested."""
    if _requested.is_set():
        raise Stopped("stopped: the run was interrupted")
