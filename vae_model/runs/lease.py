"""One writer per run in an object store: a lease, the object ``<run>/.lock``.

Taking it is a conditional create (``If-None-Match: *``: the store refuses it if the object
exists), so of two machines starting together exactly one wins. The holder renews it every
``TTL / 4`` seconds with a conditional replace (``If-Match`` its own ETag); a holder that dies
(SIGKILL, a lost machine) stops renewing, and after ``TTL`` seconds the lease may be taken over,
again conditionally, so that two waiting writers cannot both take it. Expiry is judged by the
clocks of the machines involved: they must agree to well within ``TTL`` (NTP does).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

from vae_model import UserInputError

LOCK_FILE = ".lock"
TTL_SECONDS = 60.0


class Conflict(Exception):
    """A conditional write found the object other than expected."""


def _s3_put(path, body: bytes, **condition) -> str:
    """PUT ``body`` to ``path`` under an S3 precondition; returns the new ETag."""
    bucket, _, key = path.path.partition("/")
    try:
        answer = path.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, **condition)
    except OSError as err:  # s3fs maps 412 Precondition Failed (and 409) to OSError
        if "pre-condition" in str(err).lower() or "precondition" in str(err).lower() or (
                "conflict" in str(err).lower()):
            raise Conflict(str(err)) from None
        raise
    return answer["ETag"]


def _memory_put(path, body: bytes, **condition) -> str:
    """The same over fsspec's in-memory store (one process: a lock makes it atomic)."""
    with _memory_lock:
        current = _etag(path)
        if condition.get("IfNoneMatch") == "*" and current is not None:
            raise Conflict("exists")
        if "IfMatch" in condition and current != condition["IfMatch"]:
            raise Conflict("changed")
        path.fs.pipe_file(path.path, body)
        _memory_versions[path.path] = _memory_versions.get(path.path, 0) + 1
        return _etag(path)


_memory_lock = threading.Lock()
_memory_versions: dict[str, int] = {}


def _etag(path) -> str | None:
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return None
    if path.protocol == "memory":
        return f"v{_memory_versions.get(path.path, 0)}"
    return info.get("ETag")


def _put(path, body: bytes, **condition) -> str:
    if path.protocol in ("s3", "s3a"):
        return _s3_put(path, body, **condition)
    if path.protocol == "memory":
        return _memory_put(path, body, **condition)
    raise UserInputError(f"{path.protocol}:// has no conditional writes here, so two writers of "
                         "one run could not be kept apart: use an s3:// store (S3, MinIO, "
                         "SeaweedFS, Ceph...) or a local --artifacts-dir")


def read(run) -> tuple[dict, str] | None:
    """The lease of ``run`` and its ETag, or None if there is none."""
    path = run / LOCK_FILE
    try:
        info = path.fs.info(path.path)
        body = path.fs.cat_file(path.path)
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(body or b"{}")
    except ValueError:
        holder = {}
    return holder, info.get("ETag") or _etag(path)


def holder(run) -> dict | None:
    """Who holds an unexpired lease on ``run``, or None."""
    found = read(run)
    if found is None or found[0].get("expires", 0) < time.time():
        return None
    return found[0]


def _body(info: dict, ttl: float) -> bytes:
    return json.dumps({**info, "expires": time.time() + ttl}).encode()


def acquire(run, info: dict, ttl: float = TTL_SECONDS) -> str | None:
    """Take the lease (creating it, or taking over an expired one); its ETag, or None if a
    live holder has it."""
    path = run / LOCK_FILE
    try:
        return _put(path, _body(info, ttl), IfNoneMatch="*")
    except Conflict:
        pass
    found = read(run)
    if found is None:  # released meanwhile: try once more from the start
        with contextlib.suppress(Conflict):
            return _put(path, _body(info, ttl), IfNoneMatch="*")
        return None
    current, etag = found
    if current.get("expires", 0) >= time.time():
        return None
    try:  # expired: replace exactly the object we read, so one of several takers wins
        return _put(path, _body(info, ttl), IfMatch=etag)
    except Conflict:
        return None


@contextlib.contextmanager
def held(run, info: dict, on_refused, ttl: float = TTL_SECONDS):
    """Hold ``run``'s lease for the block, renewing it in a thread; ``on_refused(holder)``
    raises when another live writer has it. Released (deleted) at the end."""
    etag = acquire(run, info, ttl)
    if etag is None:
        on_refused(holder(run) or {})
    path, done, state = run / LOCK_FILE, threading.Event(), {"etag": etag, "lost": False}

    def renew():
        while not done.wait(ttl / 4):
            try:
                state["etag"] = _put(path, _body(info, ttl), IfMatch=state["etag"])
            except Conflict:  # taken over after we failed to renew in time: stop claiming it
                state["lost"] = True
                return
            except Exception:  # the store is away for a moment: try again next round
                continue

    renewer = threading.Thread(target=renew, name="run-lease", daemon=True)
    renewer.start()
    try:
        yield info
    finally:
        done.set()
        renewer.join()
        if not state["lost"]:
            with contextlib.suppress(Exception):  # an unreachable store: the lease expires
                found = read(run)
                if found and found[1] == state["etag"]:
                    path.fs.rm_file(path.path)
