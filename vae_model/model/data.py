"""Fashion-MNIST from its four canonical IDX files, each verified before use.

Sources, first hit wins: an explicit directory or object-store URL (``--data-dir`` /
``FASHION_MNIST_DIR``; a store's files are copied into a private cache first), the Keras
cache, Debian's ``dataset-fashion-mnist`` package, else a download of the canonical files into the
Keras cache. A source that is present but holds a wrong file is an error, never skipped: silently
falling back would hide a corrupt cache.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_model import UserInputError
from vae_model.runs import storage, store

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SHAPE = (28, 28)
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


@dataclass(frozen=True)
class FileSpec:
    filename: str  # the name without .gz
    count: int
    sha256: str  # of the decompressed bytes

    @property
    def is_images(self) -> bool:
        return "images" in self.filename


CANONICAL = {
    "train_images": FileSpec("train-images-idx3-ubyte", 60000,
                             "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": FileSpec("train-labels-idx1-ubyte", 60000,
                             "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": FileSpec("t10k-images-idx3-ubyte", 10000,
                            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": FileSpec("t10k-labels-idx1-ubyte", 10000,
                            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

_FIX = ("delete it and rerun to fetch the canonical file, or install Debian's "
        "dataset-fashion-mnist and point --data-dir at /usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, 28, 28) (see :func:`to_float`), labels as uint8 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path | str  # the directory, or the store URL the files were copied from
    sha256: dict


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 intensities in [0, 1]."""
    return images.astype(np.float32) / 255.0


def load(data_dir: str | os.PathLike | None = None, spec: dict | None = None,
         download: bool = True) -> Dataset:
    """Find, verify and read the four files (see the module docstring for the search order)."""
    spec = spec or CANONICAL
    directory = locate(data_dir, spec, download)
    explicit = data_dir or os.environ.get("FASHION_MNIST_DIR")
    source = explicit.rstrip("/") if store.is_url(str(explicit or "")) else directory
    files = tuple((key, fs, _file_in(directory, fs)) for key, fs in spec.items())
    # Several stages of one run load the same files in one process: verify them once, and
    # again whenever a file's size or modification time says it may have changed.
    stamps = tuple((path.stat().st_size, path.stat().st_mtime_ns) for _, _, path in files)
    return _read_verified(source, files, stamps)


@functools.lru_cache(maxsize=2)
def _read_verified(source: Path | str, files: tuple, stamps: tuple) -> Dataset:
    del stamps  # part of the cache key only
    arrays = {key: read_idx(path, fs) for key, fs, path in files}
    return Dataset(**{k: a for k, (a, _) in arrays.items()}, source=source,
                   sha256={fs.filename: arrays[key][1] for key, fs, _ in files})


def cache_home() -> Path:
    """This machine's cache of data copied from an object store."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vae-pipeline"


def copy_from_store(url: str, spec: dict | None = None, fetch: bool = True) -> Path:
    """A local copy of the four files under the store ``url``, in :func:`cache_home`: each
    downloaded when missing or when the store's object changed, then verified by SHA-256 as
    any local file (a wrong object is an error, not silently re-fetched). ``fetch=False``
    only checks that the store has them."""
    spec = spec or CANONICAL
    remote = store.location(url)
    store.check(remote)
    local = cache_home() / "data" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    local.mkdir(parents=True, exist_ok=True)
    for fs in spec.values():
        for name in (f"{fs.filename}.gz", fs.filename):
            stamp = store.fingerprint(remote / name)
            if stamp is None:
                continue
            target, record = local / name, local / f".{name}.etag"
            if fetch and not (target.is_file() and record.is_file()
                    and record.read_text() == str(stamp)):
                _download(remote / name, target)
                storage.write_text(record, str(stamp))
            break
        else:
            raise UserInputError(f"{url}: {fs.filename}(.gz) is missing: upload the four "
                                 "Fashion-MNIST files there, or pass another --data-dir")
    return local


def _download(remote, target: Path) -> None:
    """Download ``remote`` to ``target`` through a temporary name (never a partial file)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        remote.fs.get_file(remote.path, tmp)
        os.chmod(tmp, storage.FILE_MODE)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def locate(data_dir=None, spec: dict | None = None, download: bool = True) -> Path:
    spec = spec or CANONICAL
    explicit = data_dir or os.environ.get("FASHION_MNIST_DIR")
    if explicit and store.is_url(str(explicit)):  # without download: only check they are there
        return copy_from_store(str(explicit), spec, fetch=download)
    if explicit:
        path = Path(explicit).expanduser()
        _require_all(path, spec)
        return path
    for candidate in (KERAS_CACHE, DEBIAN_DIR):
        if _has_any(candidate, spec):
            _require_all(candidate, spec)
            return candidate
    if not download:
        raise UserInputError(_not_found_message(spec, "downloads are off"))
    try:
        fetch_canonical(KERAS_CACHE, spec)
    except OSError as err:
        raise UserInputError(_not_found_message(spec, f"download failed: {err}")) from None
    return KERAS_CACHE


def fetch_canonical(cache_dir: Path, spec: dict | None = None, url: str | None = None) -> None:
    """Download each missing file, verify it, then move it into place (never a partial file)."""
    spec, url = spec or CANONICAL, url or DOWNLOAD_URL
    cache_dir.mkdir(parents=True, exist_ok=True)
    for fs in spec.values():
        target = cache_dir / f"{fs.filename}.gz"
        if target.exists():
            continue
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{fs.filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
                    url + target.name, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            read_idx(Path(tmp), fs, shown_name=target.name)
            os.chmod(tmp, storage.FILE_MODE)  # mkstemp's 0600 would hide it from other users
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def read_idx(path: Path, fs: FileSpec, shown_name: str | None = None) -> tuple[np.ndarray, str]:
    """Read one IDX file (gzip or raw) after checking its header, size and SHA-256."""
    name = shown_name or str(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except PermissionError:
        raise UserInputError(f"{name}: not readable (permission denied): fix its permissions "
                             "or pass another --data-dir") from None
    except (EOFError, OSError, zlib.error) as err:
        raise UserInputError(f"{name}: corrupt or truncated gzip ({err}): {_FIX}") from None
    header_len = 16 if fs.is_images else 8
    if len(raw) < header_len:
        raise UserInputError(f"{name}: truncated ({len(raw)} bytes, no IDX header): {_FIX}")
    magic, count = struct.unpack(">II", raw[:8])
    expected_magic = _IMAGES_MAGIC if fs.is_images else _LABELS_MAGIC
    if magic != expected_magic:
        raise UserInputError(f"{name}: IDX magic {magic:#010x}, expected {expected_magic:#010x} "
                             f"for {fs.filename}: wrong file, {_FIX}")
    shape = (count,)
    if fs.is_images:
        shape += struct.unpack(">II", raw[8:16])
        if shape[1:] != IMAGE_SHAPE:
            raise UserInputError(f"{name}: images are {shape[1]}x{shape[2]}, expected 28x28: "
                                 f"wrong file, {_FIX}")
    if count != fs.count:
        raise UserInputError(f"{name}: header says {count} items, expected {fs.count}: {_FIX}")
    if len(raw) != header_len + int(np.prod(shape)):
        raise UserInputError(f"{name}: {len(raw)} bytes do not match the header's shape "
                             f"{shape} (truncated?): {_FIX}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != fs.sha256:
        raise UserInputError(f"{name}: SHA-256 of its decompressed bytes is {digest[:12]}..., "
                             f"expected {fs.sha256[:12]}...: {_FIX}")
    return np.frombuffer(raw, np.uint8, offset=header_len).reshape(shape), digest


def _file_in(directory: Path, fs: FileSpec) -> Path:
    for name in (f"{fs.filename}.gz", fs.filename):
        if (directory / name).is_file():
            return directory / name
    raise UserInputError(f"{directory}: {fs.filename}(.gz) is missing: add it, or pass a "
                         "--data-dir that holds all four Fashion-MNIST files")


def _has_any(directory: Path, spec: dict) -> bool:
    try:
        return any((directory / n).is_file() for fs in spec.values()
                   for n in (f"{fs.filename}.gz", fs.filename))
    except PermissionError:
        return True  # present but unreadable: _require_all says so


def _require_all(directory: Path, spec: dict) -> None:
    if not directory.is_dir():
        raise UserInputError(f"data directory {directory} does not exist: pass a --data-dir "
                             "that holds the four Fashion-MNIST IDX files")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise UserInputError(f"data directory {directory} is not readable: fix its "
                             "permissions or pass another --data-dir")
    for fs in spec.values():
        _file_in(directory, fs)


def _not_found_message(spec: dict, why: str) -> str:
    return (f"Fashion-MNIST not found in {KERAS_CACHE} or {DEBIAN_DIR}, and {why}: run "
            "'apt-get install dataset-fashion-mnist', or put the four canonical .gz files "
            "in a directory and pass --data-dir (or set FASHION_MNIST_DIR)")
