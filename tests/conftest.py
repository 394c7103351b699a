import gzip
import hashlib
import os
import struct
import tempfile

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's database, results and settings for this test session only: never the user's.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="vae-tests-prefect-")

# Prefect binds its console log handler to sys.stderr when first imported; importing it here,
# before any test captures stderr, keeps that handler off pytest's short-lived capture streams.
import prefect  # noqa: E402,F401

N_TRAIN, N_TEST = 256, 64


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    return struct.pack(">II", magic, len(array)) + b"".join(
        struct.pack(">I", d) for d in array.shape[1:]) + array.astype(np.uint8).tobytes()


def synthetic_arrays(seed=0):
    """Blobby 28x28 'garments': a class-dependent rectangle plus noise, so models can learn."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 4 + c:24, 6:22 - c] += 180
        arrays[f"{split}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    return arrays


def write_tiny_dataset(directory) -> dict:
    """Four small gzip IDX files in ``directory``; returns the spec that accepts them."""
    from vae_model.model import data

    directory.mkdir(parents=True, exist_ok=True)
    spec = {}
    for key, array in synthetic_arrays().items():
        raw = idx_bytes(array)
        name = data.CANONICAL[key].filename
        (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        spec[key] = data.FileSpec(name, len(array), hashlib.sha256(raw).hexdigest())
    return spec


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A directory of four small gzip IDX files, accepted by the loader as the canonical set."""
    from vae_model.model import data

    directory = tmp_path / "fashion"
    monkeypatch.setattr(data, "CANONICAL", write_tiny_dataset(directory))
    monkeypatch.setenv("FASHION_MNIST_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True, scope="session")
def stop_temporary_prefect_servers():
    """Stop the temporary Prefect servers that in-process flow runs started, while the test
    session's output is still open: Prefect stops them at interpreter exit, and its "Stopping
    temporary server" line then hit a closed stream (a "Logging error" traceback after the
    summary)."""
    yield
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    for worker in (APILogWorker, EventsWorker):  # what they still hold needs the server
        worker.drain_all(timeout=10)
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
