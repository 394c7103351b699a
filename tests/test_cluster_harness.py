"""The cluster harness (:mod:`tests.helpers.cluster`) really isolates: workers see nothing of
the host's or each other's hidden directories, reach the object store through their
environment alone, and a killed worker is gone until started again."""

import os
import sys
import time

import botocore.exceptions
import cloudpickle
import pytest
import s3fs

from tests.helpers.cluster import can_isolate, dask_cluster, object_store

# Pytest imports this file under a name the workers cannot import: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BUCKET = "vae-harness"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with object_store(tmp_path_factory.mktemp("store")) as store:
        store.make_bucket(BUCKET)
        yield store


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """The host's directories: three hidden from the workers, one shared with them."""
    root = tmp_path_factory.mktemp("cluster")
    return {"artifacts": root / "artifacts", "datasets": root / "usr" / "share" / "datasets",
            "prefect": root / "prefect", "shared": root / "shared", "logs": root / "logs"}


@pytest.fixture(scope="module")
def cluster(store, dirs):
    ok, reason = can_isolate()
    if not ok:
        pytest.skip(reason)
    env = {**store.env, "PREFECT_HOME": str(dirs["prefect"] / "home")}
    hidden = [dirs["artifacts"], dirs["datasets"], dirs["prefect"]]
    with dask_cluster(env, hidden, logs=dirs["logs"]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    return cluster.client()


def _write(path, text):
    with open(path, "w") as out:
        out.write(text)
    return path


def _read_from_environment(path):
    return s3fs.S3FileSystem().cat(path)  # endpoint and credentials: AWS_* variables only


def _wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _addresses(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


@pytest.mark.integration
def test_hidden_directories_are_empty_on_workers(client, dirs):
    hidden = [dirs["artifacts"] / "x.txt", dirs["datasets"] / "train-images.gz"]
    shared = dirs["shared"] / "y.txt"
    for path in [*hidden, shared]:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, "from the host")
    assert len(_addresses(client)) == 2
    for path in hidden:
        assert os.path.exists(path)
        assert list(client.run(os.path.exists, str(path)).values()) == [False, False]
        assert list(client.run(os.listdir, str(path.parent)).values()) == [[], []]
    assert list(client.run(os.path.exists, str(shared)).values()) == [True, True]


@pytest.mark.integration
def test_a_workers_hidden_files_are_its_own(client, dirs):
    a, b = _addresses(client)
    path = str(dirs["artifacts"] / "from-worker-a.txt")
    client.run(_write, path, "worker a", workers=[a])
    assert client.run(os.path.exists, path) == {a: True, b: False}
    assert not os.path.exists(path)
    homes = client.run(os.path.expanduser, "~")
    assert homes[a] == homes[b] and not os.path.exists(homes[a])  # same path, private tmpfs
    client.run(_write, os.path.join(homes[a], "cache-a"), "a", workers=[a])
    seen = client.run(os.path.exists, os.path.join(homes[a], "cache-a"))
    assert seen == {a: True, b: False}


@pytest.mark.integration
def test_workers_reach_the_store_through_their_environment(store, client):
    store.fs().pipe(f"{BUCKET}/hello.txt", b"from the host")
    read = client.run(_read_from_environment, f"{BUCKET}/hello.txt")
    assert list(read.values()) == [b"from the host", b"from the host"]


@pytest.mark.integration
def test_wrong_credentials_are_refused(store):
    store.fs().pipe(f"{BUCKET}/secret.txt", b"x")
    for key, secret in [(store.env["AWS_ACCESS_KEY_ID"], "wrong"), ("NOSUCHKEY", "wrong")]:
        wrong = s3fs.S3FileSystem(key=key, secret=secret, endpoint_url=store.endpoint,
                                  skip_instance_cache=True)
        with pytest.raises(PermissionError):
            wrong.cat(f"{BUCKET}/secret.txt")


@pytest.mark.integration
def test_the_store_goes_down_and_comes_back_with_its_data(store):
    store.fs().pipe(f"{BUCKET}/durable.txt", b"kept")
    store.stop()
    try:
        down = store.fs(config_kwargs={"connect_timeout": 2, "retries": {"max_attempts": 1}})
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            down.cat(f"{BUCKET}/durable.txt")
        assert time.monotonic() - started < 15
    finally:
        store.start()
    assert store.fs().cat(f"{BUCKET}/durable.txt") == b"kept"


@pytest.mark.integration
def test_a_killed_worker_is_gone_until_started_again(cluster, client, dirs):
    name = cluster.workers[0]
    by_name = {info["name"]: address for address, info
               in client.scheduler_info(n_workers=-1)["workers"].items()}
    assert set(by_name) == set(cluster.workers)
    pid = client.run(os.getpid, workers=[by_name[name]])[by_name[name]]
    cluster.kill(name)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    _wait_for(lambda: cluster.names() == set(cluster.workers) - {name})
    cluster.start(name)
    assert cluster.names() == set(cluster.workers)
    (dirs["artifacts"] / "after.txt").write_text("host")
    assert list(client.run(os.path.exists, str(dirs["artifacts"] / "after.txt")).values()) \
        == [False, False]
