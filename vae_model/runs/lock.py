"""One writer per run directory: an OS file lock on ``<run>/.lock`` (in an object store, a
lease on that object instead: :mod:`vae_model.runs.lease`).

``flock`` is held by the open file, so the kernel releases it when the holding process exits,
however it exits (SIGKILL included): a lock left by a dead process never blocks anyone. While
held, the file names the holder (pid, host, start time, command) for the message a second
process gets. The file itself stays (emptied) after release: deleting a lock file while another
process has it open would let two processes lock two different inodes of the same name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from vae_model import UserInputError
from vae_model.runs import lease, store

LOCK_FILE = lease.LOCK_FILE  # one name: the lock file on a disk, the lease object in a store


class RunLocked(UserInputError):
    """Another process is writing this run."""


def _describe(run: Path, holder: dict) -> str:
    who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since "
           f"{holder.get('since', '?')}") if holder else "another process"
    return (f"run {run.name} is being written by {who}: wait for it to finish, or pick "
            "another --run-id")


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):  # being written this instant, or not ours: still locked
        return {}


def _open_locked(run: Path) -> int | None:
    """An fd holding the exclusive lock on ``run/.lock``, or None if another process holds it.
    Retries when the file was replaced between open and lock (a pruned and recreated run)."""
    path = run / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # umask applies
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file that was unlinked meanwhile: lock the current one


def holder(run: str | os.PathLike) -> dict | None:
    """Who holds the lock of ``run`` ({pid, host, since, command}), or None if nobody does.
    Never creates the run directory."""
    run = store.location(run)
    if store.is_remote(run):
        return lease.holder(run)
    if not (run / LOCK_FILE).exists():
        return None
    fd = _open_locked(run)
    if fd is None:
        return _read_holder(run / LOCK_FILE)
    os.close(fd)  # closing the fd releases the probe's lock
    return None


def check_free(run: str | os.PathLike) -> None:
    """Raise :class:`RunLocked` if another process is writing ``run`` (a quick check before
    any work; :func:`hold` is what guarantees it)."""
    who = holder(run)
    if who is not None:
        raise RunLocked(_describe(store.location(run), who))


def _holder_info(command: str | None) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def _refuse(run, who: dict):
    raise RunLocked(_describe(run, who))


@contextlib.contextmanager
def hold(run: str | os.PathLike, command: str | None = None):
    """Hold ``run``'s lock for the ``with`` block, creating the directory; raise
    :class:`RunLocked` at once (no waiting) if another process holds it."""
    run = store.location(run)
    if store.is_remote(run):
        with lease.held(run, _holder_info(command),
                        lambda who: _refuse(run, who)) as info:
            yield info
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(run)
    except OSError as err:
        raise UserInputError(f"cannot write to {run} ({err.strerror}): free disk space, fix its "
                             "permissions or pass another --artifacts-dir") from None
    if fd is None:
        raise RunLocked(_describe(run, _read_holder(run / LOCK_FILE)))
    try:
        info = _holder_info(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield info
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a stale name must not outlive the lock
        os.close(fd)
