"""Locations on a disk and in a store (fsspec's in-memory filesystem stands in for S3 here; the
real S3 server is in test_cluster.py): the Mirror a stage works in, fingerprints, the lease,
and the registry, the latest pointer and the stage records over a store."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tasks import outputs
from vae_model import UserInputError
from vae_model.runs import lease, lock, registry, storage, store


@pytest.fixture
def root():
    """A fresh store prefix of its own."""
    path = store.location(f"memory://bucket-{uuid.uuid4().hex[:8]}/artifacts")
    yield path
    store.remove_tree(path)


def test_locations_are_paths_on_a_disk_and_upaths_in_a_store(tmp_path):
    assert store.location(str(tmp_path)) == tmp_path.resolve()
    assert store.location(f"file://{tmp_path}") == tmp_path.resolve()
    remote = store.location("memory://b/a/")
    assert store.is_remote(remote) and str(remote) == "memory://b/a"
    assert store.location(remote) is remote
    assert not store.is_remote(tmp_path)


def test_a_mirror_uploads_what_changed_committing_file_last_and_deletes_what_went(root):
    target = root / "runs" / "r" / "models" / "m"
    storage.write_text(target / "epoch-0001" / "ckpt", "one")
    storage.write_text(target / "state.json", '{"epoch": 1}')
    with store.mirrored(target) as mirror:
        local = mirror.local
        assert (local / "epoch-0001" / "ckpt").read_text() == "one"
        assert mirror.push() == []  # nothing changed since the pull
        (local / "epoch-0002").mkdir()
        (local / "epoch-0002" / "ckpt").write_text("two")
        (local / "state.json").write_text('{"epoch": 2}')
        (local / ".epoch-0003.tmp").mkdir()  # hidden: never uploaded
        (local / ".epoch-0003.tmp" / "ckpt").write_text("partial")
        for old in (local / "epoch-0001").iterdir():
            old.unlink()
        uploaded = mirror.push(last=("state.json",), delete=True)
    assert [store.relative(p, target) for p in uploaded] == ["epoch-0002/ckpt", "state.json"]
    assert store.files(target) == ["epoch-0002/ckpt", "state.json"]
    assert not local.exists()  # the scratch copy is gone


def test_a_local_mirror_is_the_directory_itself(tmp_path):
    with store.mirrored(tmp_path) as mirror:
        assert mirror.local == tmp_path and mirror.push() == []


def test_fingerprints_change_with_content_and_are_none_when_missing(root, tmp_path):
    storage.write_text(root / "a.txt", "one")
    first = store.fingerprint(root / "a.txt")
    storage.write_text(root / "a.txt", "two")
    assert store.fingerprint(root / "a.txt") != first
    assert store.fingerprint(root / "missing") is None
    (tmp_path / "b").write_text("x")
    assert store.fingerprint(tmp_path / "b")["bytes"] == 1
    assert store.fingerprint(tmp_path / "none") is None


def test_the_lease_admits_one_writer_and_is_taken_over_only_once_expired(root):
    run = root / "runs" / "r"
    first = lease.acquire(run, {"pid": 1, "host": "a"}, ttl=60)
    assert first is not None
    assert lease.acquire(run, {"pid": 2, "host": "b"}, ttl=60) is None
    assert lease.holder(run)["host"] == "a"
    body = json.loads((run / ".lock").read_text())
    storage.write_text(run / ".lock", json.dumps({**body, "expires": time.time() - 1}))
    assert lease.holder(run) is None  # its holder stopped renewing: expired
    assert lease.acquire(run, {"pid": 2, "host": "b"}, ttl=60) is not None
    assert lease.holder(run)["host"] == "b"


def test_holding_a_store_run_refuses_a_second_writer_and_releases(root):
    run = root / "runs" / "r"
    with lock.hold(run, command="first"):
        assert lock.holder(run)["command"] == "first"
        with pytest.raises(lock.RunLocked, match="being written by pid"):
            with lock.hold(run):
                pass
    assert lock.holder(run) is None and not (run / ".lock").exists()


def test_runs_latest_and_prune_work_in_a_store(root):
    for name, day in (("old", 1), ("new", 2)):
        run = root / "runs" / name
        storage.write_json(run / "manifest.json", {
            "status": "complete", "finished_at": f"2026-12-0{day}T00:00:00+00:00",
            "models": {}})
        storage.write_text(run / "models" / "m" / "state.json", "{}")
        storage.write_text(run / ".stages" / "train.json", "{}")  # hidden objects go too
    registry.point_latest(root, root / "runs" / "new")
    runs = registry.list_runs(str(root))
    assert [(r["id"], r["status"], r["latest"]) for r in runs] == [
        ("old", "complete", False), ("new", "complete", True)]
    assert registry.latest_run(root) == root / "runs" / "new"
    removed = registry.prune(str(root), keep=1)
    assert [r["id"] for r in removed] == ["old"]
    assert [p.name for p in (root / "runs").iterdir()] == ["new"]
    assert not (root / "runs" / "old" / ".stages" / "train.json").exists()


def test_a_failed_store_run_moves_latest_to_the_last_complete_one(root):
    for name, day in (("a", 1), ("b", 2)):
        storage.write_json(root / "runs" / name / "manifest.json", {
            "status": "complete", "finished_at": f"2026-12-0{day}T00:00:00+00:00",
            "models": {}})
    registry.point_latest(root, root / "runs" / "b")
    registry.record_failure(root / "runs" / "b", "train-x", "boom")
    assert registry.latest_run(root) == root / "runs" / "a"


def test_stage_records_in_a_store_see_a_deleted_or_changed_object(root):
    run = root / "runs" / "r"
    model = run / "models" / "m"
    storage.write_text(model / "state.json", "{}")
    storage.write_text(model / "epoch-0001" / "ckpt", "weights")
    storage.write_text(model / "evaluation.json", "{}")  # the evaluate stage's, not training's
    record = {"files": outputs.snapshot(str(model), run)}
    assert sorted(record["files"]) == ["models/m/epoch-0001/ckpt", "models/m/state.json"]
    assert outputs.changed(record, run) == []
    assert outputs.run_of({"x": [str(model)]}) == run
    storage.write_text(model / "epoch-0001" / "ckpt", "other weights")
    assert outputs.changed(record, run) == ["models/m/epoch-0001/ckpt"]
    (model / "state.json").unlink()
    assert "models/m/state.json" in outputs.changed(record, run)


def test_a_store_that_refuses_or_lacks_the_bucket_is_one_line(monkeypatch):
    path = store.location("memory://nowhere/x")

    def refuse(*args, **kwargs):
        raise PermissionError("Access Denied")

    monkeypatch.setattr(type(path.fs), "ls", refuse)
    with pytest.raises(UserInputError, match="refused the credentials for memory://nowhere"):
        store.check(path)

    def missing(*args, **kwargs):
        raise FileNotFoundError("NoSuchBucket")

    monkeypatch.setattr(type(path.fs), "ls", missing)
    with pytest.raises(UserInputError, match="bucket memory://nowhere does not exist"):
        store.check(path)
    store.check(Path("/tmp"))  # a disk needs no check


def test_store_data_is_copied_once_verified_and_reported_by_its_url(root, tmp_path,
                                                                    monkeypatch):
    from tests.helpers.data import write_tiny_dataset
    from vae_model.model import data

    spec = write_tiny_dataset(tmp_path / "files")
    for file in (tmp_path / "files").iterdir():
        storage.write_bytes(root / "data" / file.name, file.read_bytes())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"{root}/data"
    dataset = data.load(url, spec=spec)
    assert dataset.source == url and len(dataset.train_images) > 0
    copied = sorted(p.name for p in (tmp_path / "cache").rglob("*.gz"))
    assert len(copied) == 4
    storage.write_bytes(root / "data" / copied[0], b"not gzip at all")
    with pytest.raises(UserInputError):  # a changed object is fetched again, and checked
        data.load(url, spec=spec)
