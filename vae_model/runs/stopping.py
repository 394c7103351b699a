"""Stopping long work when the run is interrupted (Ctrl-C, SIGTERM from a scheduler).

A signal interrupts only a process's main thread; stages running in worker threads (the
models a flow trains and scores two at a time) would otherwise go on to their end, minutes
later, while the user waits or a scheduler's grace period runs out. So whoever sees the
interruption calls :func:`request`, and long loops call :func:`check` between units of work (a
training chunk, a batch of IWAE samples, a round of the reference NLL), which raises
:class:`Stopped`. What was complete is kept: training resumes from its last finished epoch.

On a cluster the interruption reaches the flow's machine only; a stage on another machine
registers a :func:`watching` poll (the tasks layer asks the cluster's scheduler) that
:func:`check` consults every few seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable

_requested = threading.Event()
_polls: dict[int, list] = {}  # id -> [poll, seconds between polls, last poll time]
_polls_lock = threading.Lock()


class Stopped(Exception):
    """Raised in a stage's thread after :func:`request`: the run was interrupted."""


def request() -> None:
    """Ask every stage of this process to stop at its next :func:`check`."""
    _requested.set()


def reset() -> None:
    """Forget an earlier request (a new flow run in the same process)."""
    _requested.clear()


def check() -> None:
    """Raise :class:`Stopped` if a stop was requested (here, or by a :func:`watching` poll)."""
    if _requested.is_set():
        raise Stopped("stopped: the run was interrupted")
    now = time.monotonic()
    with _polls_lock:
        due = [entry for entry in _polls.values() if now - entry[2] >= entry[1]]
        for entry in due:
            entry[2] = now
    for poll, _, _ in due:
        try:
            stop = poll()
        except Exception:  # the scheduler is away for a moment: work on, ask again later
            stop = False
        if stop:
            raise Stopped("stopped: the run was interrupted")


@contextlib.contextmanager
def watching(poll: Callable[[], bool], every: float = 2.0):
    """For the block, :func:`check` also stops when ``poll()`` says so (asked at most every
    ``every`` seconds): a stop requested on another machine."""
    key = id(poll)
    with _polls_lock:
        _polls[key] = [poll, every, time.monotonic()]
    try:
        yield
    finally:
        with _polls_lock:
            _polls.pop(key, None)
