"""The data loader (vae_model.model.data) on a tiny set of IDX files: verified, each kind of
damage refused in one line, found in the Keras cache or Debian's package, downloaded
atomically, and what to do when it is nowhere."""

import gzip

import numpy as np
import pytest

from tests.helpers.data import N_TEST, N_TRAIN, idx_bytes
from vae_model import UserInputError
from vae_model.model import data


def test_loads_and_verifies_all_four_files(tiny_data):
    dataset = data.load()
    assert dataset.train_images.shape == (N_TRAIN, 28, 28)
    assert dataset.test_labels.shape == (N_TEST,)
    assert dataset.source == tiny_data
    assert set(dataset.sha256) == {fs.filename for fs in data.CANONICAL.values()}
    scaled = data.to_float(dataset.train_images)
    assert scaled.dtype == np.float32 and 0.0 <= scaled.min() and scaled.max() <= 1.0


def _corrupt(directory, key, new_bytes):
    (directory / f"{data.CANONICAL[key].filename}.gz").write_bytes(new_bytes)


def _raw(directory, key):
    return gzip.decompress((directory / f"{data.CANONICAL[key].filename}.gz").read_bytes())


@pytest.mark.parametrize("damage, message", [
    (lambda raw: gzip.compress(raw)[:-20], "corrupt or truncated gzip"),
    (lambda raw: b"\x1f\x8b" + b"garbage" * 10, "corrupt or truncated gzip"),
    (lambda raw: gzip.compress(raw[:-100]), "do not match the header"),
    (lambda raw: gzip.compress(raw[:5]), "no IDX header"),
    (lambda raw: gzip.compress(b"\x00\x00\x08\x01" + raw[4:]), "IDX magic"),
    (lambda raw: gzip.compress(raw[:8] + b"\x00\x00\x00\x20" + raw[12:]), "expected 28x28"),
    (lambda raw: gzip.compress(raw[:16] + bytes([raw[16] ^ 0xFF]) + raw[17:]), "SHA-256"),
])
def test_bad_image_file_is_refused_with_one_line(tiny_data, damage, message):
    _corrupt(tiny_data, "train_images", damage(_raw(tiny_data, "train_images")))
    with pytest.raises(UserInputError) as err:
        data.load()
    text = str(err.value)
    assert message in text and "train-images-idx3-ubyte" in text and "\n" not in text


def test_wrong_count_in_labels_is_refused(tiny_data):
    raw = _raw(tiny_data, "test_labels")
    _corrupt(tiny_data, "test_labels", gzip.compress(raw[:4] + (7).to_bytes(4, "big") + raw[8:15]))
    with pytest.raises(UserInputError, match="header says 7 items"):
        data.load()


def test_uncompressed_files_are_accepted(tiny_data):
    path = tiny_data / "t10k-labels-idx1-ubyte.gz"
    (tiny_data / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    assert data.load().test_labels.shape == (N_TEST,)


def test_missing_file_names_it(tiny_data):
    (tiny_data / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UserInputError, match="t10k-images-idx3-ubyte.*missing"):
        data.load()


def test_missing_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(UserInputError, match="does not exist"):
        data.load(tmp_path / "nowhere")


def test_data_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UserInputError, match="does not exist"):
        data.load(path)


def test_search_order_keras_cache_before_debian(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR")
    monkeypatch.setattr(data, "KERAS_CACHE", tiny_data)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    assert data.locate() == tiny_data
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "empty-cache")
    monkeypatch.setattr(data, "DEBIAN_DIR", tiny_data)
    assert data.locate() == tiny_data


def test_download_writes_verified_files_atomically(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR")
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "KERAS_CACHE", cache)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "DOWNLOAD_URL", tiny_data.as_uri() + "/")
    dataset = data.load()
    assert dataset.source == cache and len(dataset.train_images) == N_TRAIN
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{fs.filename}.gz" for fs in data.CANONICAL.values())


def test_download_of_a_wrong_file_leaves_nothing_behind(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR")
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "KERAS_CACHE", cache)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    _corrupt(tiny_data, "train_labels", gzip.compress(idx_bytes(np.zeros(N_TRAIN, np.uint8))))
    monkeypatch.setattr(data, "DOWNLOAD_URL", tiny_data.as_uri() + "/")
    with pytest.raises(UserInputError, match="train-labels-idx1-ubyte.gz: SHA-256"):
        data.load()
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not list(cache.glob(".*part"))


def test_offline_without_data_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "DOWNLOAD_URL", (tmp_path / "offline").as_uri() + "/")
    with pytest.raises(UserInputError, match="apt-get install dataset-fashion-mnist"):
        data.load()


def test_unreadable_directory_is_refused(tiny_data, monkeypatch):
    # root reads anything, so the permission check is exercised through os.access
    monkeypatch.setattr(data.os, "access", lambda path, mode: False)
    with pytest.raises(UserInputError, match="is not readable"):
        data.load()
