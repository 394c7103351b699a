"""The test session's environment, and the fixtures several test modules use. Helpers (data,
made-up runs, processes, servers) are in :mod:`tests.helpers`."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's database, results and settings for this test session only: never the user's.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="vae-tests-prefect-")

# Prefect binds its console log handler to sys.stderr when first imported; importing it here,
# before any test captures stderr, keeps that handler off pytest's short-lived capture streams.
import prefect  # noqa: E402,F401

from tests.helpers.data import synthetic_arrays, write_tiny_dataset  # noqa: E402


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A directory of four small gzip IDX files, accepted by the loader as the canonical set."""
    from vae_model.model import data

    directory = tmp_path / "fashion"
    monkeypatch.setattr(data, "CANONICAL", write_tiny_dataset(directory))
    monkeypatch.setenv("FASHION_MNIST_DIR", str(directory))
    return directory


@pytest.fixture(scope="module")
def harness():
    """Prefect's test harness (a temporary server and database) for one test module's flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The default MLP, trained 3 epochs on the synthetic arrays (seeded: the same weights
    whichever module asks first). Tests read it and must not change it."""
    from vae_model import training
    from vae_model.model.config import ModelConfig

    arrays = synthetic_arrays()
    config = ModelConfig(batch_size=32, epochs=3)
    return training.fit(config, arrays["train_images"], arrays["test_images"],
                        tmp_path_factory.mktemp("model")).model


@pytest.fixture
def clear_stop():
    """Withdraws the stop request a test made, so that it stops nothing after the test."""
    from vae_model.runs import stopping

    yield
    stopping.reset()


@pytest.fixture
def past_runs(tmp_path):
    """An artifacts root holding a series of runs written by hand (fake_runs.write_series)."""
    from tests.helpers import fake_runs

    return fake_runs.write_series(tmp_path / "artifacts")


@pytest.fixture(scope="session")
def real_server(tmp_path_factory):
    """A real Prefect server (SQLite in its own home) on a free loopback port: (api url, env for
    the clients). Started once for the integration modules that run the command line against
    it (test_server, test_ui_artifacts), so tests pick out their own flow runs."""
    from tests.helpers.servers import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as (api, env):
        yield api, env


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
