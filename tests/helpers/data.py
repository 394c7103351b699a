"""Synthetic Fashion-MNIST-shaped data: arrays for the model's tests, and a tiny set of gzip IDX
files the loader accepts as the canonical ones; and the skip for tests that need the real files."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

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


def require_real_data() -> None:
    """Skips the calling test where the canonical Fashion-MNIST files are not installed (the
    test command installs Debian's dataset-fashion-mnist where apt is available)."""
    from vae_model import UserInputError
    from vae_model.model import data

    try:
        data.locate(download=False)
    except UserInputError as err:
        pytest.skip(f"canonical Fashion-MNIST not installed here: {err}")
