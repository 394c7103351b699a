"""Signals and exit: SIGTERM handled like Ctrl-C (one line, exit hooks run, the run can be
resumed), a Ctrl-C that pydantic reworded recognised as one, and a quick exit."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the run), handled like Ctrl-C: a line, exit hooks run."""


def _terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt(process_ends: bool):
    """SIGTERM raises :class:`Terminated` while the command runs. Python's default exits at
    once, skipping exit hooks (the temporary server's stop); during a flow run Prefect's own
    handler takes over and, after recording the crash, re-sends the signal to this one.
    ``process_ends``: the command line, whose process ends next."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if process_ends:
            # Python's last garbage collections walk every object TensorFlow and Prefect left,
            # with nothing to free that matters; frozen objects are skipped, exit hooks still run.
            gc.freeze()


def interrupted(err: KeyboardInterrupt) -> int:
    how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    print(f"vae-pipeline: {how}; rerun with the same --run-id to resume", file=sys.stderr)
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def reworded_interrupt(err: Exception) -> bool:
    """A Ctrl-C that landed inside pydantic's compiled core (Prefect validates its settings
    while it is imported) comes back as a PydanticSerializationError naming it."""
    return type(err).__name__ == "PydanticSerializationError" and "KeyboardInterrupt" in str(err)
