"""Atomic writes: a reader sees the old file or the new one, never half of one (on a disk or
in an object store, see :mod:`vae_model.runs.store`). Files get the
mode any other program would give them under the process's umask (0644 under the usual 022),
not mkstemp's private 0600, so a colleague or a web server can read a report."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _read_umask() -> int:
    """The umask, read once at import. /proc shows it without changing it; setting it to read
    it back (the fallback) is process-wide, so a thread creating a file meanwhile would get
    a wrong mode: done once, here, rather than on every write."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open(path, "w") would create


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path``: on a disk through a temporary file renamed over it; in an
    object store (a ``UPath``) as one PUT, which is atomic there."""
    if not isinstance(path, (str, Path)) and hasattr(path, "fs"):
        path.fs.pipe_file(path.path, data)
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike):
    path = path if hasattr(path, "read_text") else Path(path)
    return json.loads(path.read_text(encoding="utf-8"))
