"""Where runs and data live: a local directory, or a prefix in an object store (any fsspec URL:
``s3://bucket/prefix``, ``gs://...``; ``file://`` and plain paths are local).

Every location in the code is a :func:`location`: a ``pathlib.Path`` for a local directory (as
before, at the same speed) or a universal-pathlib ``UPath`` for a store. TensorFlow and
matplotlib write local files only, so a stage works in a :class:`Mirror`: a private scratch
copy of the objects it reads, whose new files it uploads, each object one PUT (atomic in an
object store), the file that commits a unit of work last. Credentials and the endpoint come
from the store's standard places (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, fsspec's
config), never from us.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from vae_model import UserInputError

LOCAL_PROTOCOLS = ("", "file", "local")


def is_url(value: str | os.PathLike) -> bool:
    return isinstance(value, str) and "://" in value


def location(value: str | os.PathLike):
    """A local ``Path`` (absolute) or, for a store URL, a ``UPath`` that always asks the store
    (no listing cache: other machines write the same prefix)."""
    if not isinstance(value, (str, Path)) and hasattr(value, "protocol"):
        return value  # already a UPath
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"not a path or URL: {value!r}")
    if is_url(value):
        from upath import UPath

        path = UPath(value.rstrip("/"))
        if path.protocol in LOCAL_PROTOCOLS:
            return Path(path.path).expanduser().resolve()
        return UPath(value.rstrip("/"), use_listings_cache=False)
    return Path(value).expanduser().resolve()


def is_remote(path) -> bool:
    """True for a location in an object store (not a ``pathlib.Path``)."""
    return not isinstance(path, Path)


def relative(path, root) -> str:
    """``path`` below ``root`` as a POSIX string."""
    return PurePosixPath(str(path)).relative_to(PurePosixPath(str(root))).as_posix()


def files(directory) -> list[str]:
    """Every file below ``directory`` (relative POSIX paths, sorted), hidden names (``.x``) and
    what lies below them left out."""
    if not is_remote(directory):
        found = []
        for root, dirs, names in os.walk(directory):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [relative(Path(root) / n, directory) for n in names if not n.startswith(".")]
        return sorted(found)
    fs, base = directory.fs, directory.path
    try:
        found = fs.find(base)
    except FileNotFoundError:
        return []
    out = []
    for name in found:
        rel = relative(name, base) if name != base else ""
        if rel and not any(part.startswith(".") for part in rel.split("/")):
            out.append(rel)
    return sorted(out)


def fingerprint(path) -> dict | None:
    """What identifies a file's content: ``{"bytes", "sha256"}`` on a disk, ``{"bytes",
    "etag"}`` in a store (no download); None if it is not there."""
    if not is_remote(path):
        try:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}
        except (IsADirectoryError, FileNotFoundError, NotADirectoryError):
            return None
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return None
    if info.get("type") != "file":
        return None
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("md5")
    if tag is None:  # a filesystem that keeps no content tag: read the content itself
        return {"bytes": int(info.get("size") or 0),
                "sha256": hashlib.sha256(path.fs.cat_file(path.path)).hexdigest()}
    return {"bytes": int(info.get("size") or 0), "etag": str(tag).strip('"')}


def remove_tree(path) -> None:
    """Delete ``path`` and everything below it (nothing if it is not there)."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        path.fs.rm(path.path, recursive=True)


class Mirror:
    """A local directory standing for ``target``: ``target`` itself on a disk (then
    :meth:`pull` and :meth:`push` do nothing), else a scratch directory whose files are
    downloaded by :meth:`pull` and uploaded by :meth:`push`."""

    def __init__(self, target, scratch: Path | None = None):
        self.target = target
        self.remote = is_remote(target)
        self.local = Path(scratch) if self.remote else target
        self._sent: dict[str, tuple[int, int]] = {}  # rel -> (size, mtime_ns) in the store

    def _stamp(self, rel: str) -> tuple[int, int]:
        stat = (self.local / rel).stat()
        return stat.st_size, stat.st_mtime_ns

    def pull(self, *parts: str) -> None:
        """Download the files below ``parts`` (all of ``target`` without parts)."""
        if not self.remote:
            return
        for part in parts or ("",):
            source = self.target / part if part else self.target
            for rel in files(source):
                full = f"{part}/{rel}" if part else rel
                local = self.local / full
                local.parent.mkdir(parents=True, exist_ok=True)
                self.target.fs.get_file((source / rel).path, str(local))
                self._sent[full] = self._stamp(full)

    def push(self, last: tuple[str, ...] = (), delete: bool = False, under: str = "") -> list:
        """Upload the files that are new or changed since the last pull or push, the names in
        ``last`` after all others (the file that commits the rest); with ``delete``, then
        remove the objects below ``under`` that the local copy no longer has. Returns the
        locations uploaded."""
        if not self.remote:
            return []
        base = self.local / under if under else self.local
        current = [f"{under}/{r}" if under else r for r in files(base)]
        changed = [r for r in current if self._sent.get(r) != self._stamp(r)]
        ordered = ([r for r in changed if PurePosixPath(r).name not in last]
                   + [r for r in changed if PurePosixPath(r).name in last])
        uploaded = []
        for rel in ordered:
            destination = self.target / rel
            self.target.fs.put_file(str(self.local / rel), destination.path)
            self._sent[rel] = self._stamp(rel)
            uploaded.append(destination)
        if delete:
            keep = set(current)
            stored = self.target / under if under else self.target
            for rel in files(stored):
                full = f"{under}/{rel}" if under else rel
                if full not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        self.target.fs.rm_file((stored / rel).path)
                    self._sent.pop(full, None)
        return uploaded


@contextlib.contextmanager
def mirrored(target, pull: tuple[str, ...] | bool = True):
    """A :class:`Mirror` of ``target`` for the block (``pull``: download everything, or the
    parts named); a store's scratch copy is deleted afterwards. Nothing is uploaded unless the
    block calls :meth:`Mirror.push`."""
    target = location(target)
    if not is_remote(target):
        yield Mirror(target)
        return
    with tempfile.TemporaryDirectory(prefix="vae-scratch-") as scratch:
        mirror = Mirror(target, Path(scratch))
        if pull is True:
            mirror.pull()
        elif pull:
            mirror.pull(*pull)
        yield mirror


def check(root) -> None:
    """Fail in one line, with the fix, if the store behind ``root`` does not answer, refuses
    the credentials, or has no such bucket. Nothing is written."""
    if not is_remote(root):
        return
    bucket = root.path.lstrip("/").split("/")[0]
    where = f"{root.protocol}://{bucket}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("FSSPEC_S3_ENDPOINT_URL")
    at = f" at {endpoint}" if endpoint and root.protocol in ("s3", "s3a") else ""
    try:
        root.fs.ls(root.path[: root.path.index(bucket) + len(bucket)], detail=False)
    except PermissionError:
        raise UserInputError(
            f"the object store{at} refused the credentials for {where}: set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the store's own variables) to a "
            "key that may read and write it") from None
    except FileNotFoundError:
        raise UserInputError(f"bucket {where} does not exist{at}: create it, or pass an "
                             "--artifacts-dir / --data-dir in an existing bucket") from None
    except Exception as err:  # connection refused, DNS, timeouts: any client's own types
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserInputError(f"the object store{at} does not answer for {where} ({reason}): "
                             "start it, or check AWS_ENDPOINT_URL") from None
