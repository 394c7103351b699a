"""Interruptions, unwritable outputs, and other faults a scheduled pipeline meets."""

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flows.cli.command import main
from tests.conftest import synthetic_arrays
from tests.processes import temporary_server_env
from vae_model import UserInputError, training
from vae_model.model.config import ModelConfig
from vae_model.runs import directory, storage

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(batch_size=32, epochs=8, seed=1)
TRAINER = """
import sys, numpy as np
from tests.conftest import synthetic_arrays
from vae_model import training
from vae_model.model.config import ModelConfig
arrays = synthetic_arrays()
train = np.tile(arrays["train_images"], (20, 1, 1))  # slow enough to be killed mid-run
training.fit(ModelConfig(**{config}), train, arrays["test_images"], sys.argv[1],
             steps_per_chunk=20)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_training_resumes_from_its_last_complete_epoch(tmp_path, sig):
    process = subprocess.Popen([sys.executable, "-c", TRAINER.format(config=CONFIG),
                                str(tmp_path)], cwd=ROOT)
    state = tmp_path / "state.json"
    deadline = time.monotonic() + 240
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline, "training never reached epoch 2"
        time.sleep(0.02)
    process.send_signal(sig)
    assert process.wait(timeout=60) != 0
    killed_at = storage.read_json(state)["epoch"]
    assert killed_at < CONFIG["epochs"], "the kill came too late to test anything"

    arrays = synthetic_arrays()
    train = np.tile(arrays["train_images"], (20, 1, 1))
    resumed = training.fit(ModelConfig(**CONFIG), train, arrays["test_images"], tmp_path)
    assert resumed.resumed_from_epoch == killed_at
    assert [h["epoch"] for h in resumed.history] == list(range(1, CONFIG["epochs"] + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0008", "state.json"]


def test_unwritable_artifacts_dir_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["run", "--artifacts-dir", str(blocker / "artifacts"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to" in err and err.count("\n") == 1


def test_full_disk_is_a_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import os

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(UserInputError, match="No space left on device"):
        directory.ensure_writable(tmp_path / "artifacts")
    with pytest.raises(OSError):
        storage.write_text(tmp_path / "metrics.json", "{}")
    assert not (tmp_path / "metrics.json").exists()
    assert not list(tmp_path.glob(".metrics.json.*"))


def test_an_existing_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import os
    target = storage.write_json(tmp_path / "metrics.json", {"old": True})

    def crash(src, dst):
        raise KeyboardInterrupt  # as if killed between writing and renaming
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        storage.write_json(target, {"new": True})
    assert storage.read_json(target) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_data_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    from vae_model.model import data
    with pytest.raises(UserInputError, match="does not exist"):
        data.load(path)


def test_a_checkpoint_of_another_configuration_is_not_loaded(tmp_path):
    arrays = synthetic_arrays()
    training.fit(ModelConfig(batch_size=32, epochs=1), arrays["train_images"],
                 arrays["test_images"], tmp_path)
    state = storage.read_json(tmp_path / "state.json")
    state["config"]["latent_size"] = 3  # e.g. copied from another run
    storage.write_json(tmp_path / "state.json", state)
    with pytest.raises(Exception, match="latent|shape"):
        training.load_model(tmp_path)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """Not mkstemp's private 0600: a colleague or a web server must be able to read a report."""
    import os
    target = tmp_path / "sub" / "report.html"
    code = "import sys; from vae_model import storage; storage.write_text(sys.argv[1], 'x')"
    subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, check=True,
                   preexec_fn=lambda: os.umask(umask))
    assert target.stat().st_mode & 0o777 == mode
    assert target.parent.stat().st_mode & 0o777 == 0o777 & ~umask


def _cli(tmp_path, *args, **env):
    environment = temporary_server_env(tmp_path / "prefect-home", **env)
    return subprocess.run([str(Path(sys.executable).parent / "vae-pipeline"), *args],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)


def test_an_unreachable_prefect_api_is_one_line_naming_the_url_and_both_fixes(tmp_path):
    done = _cli(tmp_path, "run", "--epochs", "1", "--artifacts-dir", str(tmp_path / "a"),
                PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "vae-pipeline: error: cannot reach the Prefect API at http://127.0.0.1:9/api "
        "(ConnectError): start that server (prefect server start), or unset PREFECT_API_URL "
        "to use a temporary local one")


def test_a_corrupt_file_found_through_the_environment_is_one_line_and_a_failed_run(tmp_path):
    """Found inside the flow (verify-data), not by the CLI's --data-dir check: the terminal
    gets Prefect's log lines but no traceback, then the error; the run records the failure."""
    from vae_model.model import data
    corrupt = tmp_path / "fashion"
    corrupt.mkdir()
    for spec in data.CANONICAL.values():
        (corrupt / f"{spec.filename}.gz").write_bytes(b"not gzip")
    done = _cli(tmp_path, "run", "--epochs", "1", "--run-id", "bad", "--artifacts-dir",
                str(tmp_path / "a"), FASHION_MNIST_DIR=str(corrupt))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (last,) = [line for line in done.stderr.splitlines() if line.startswith("vae-pipeline:")]
    assert last.startswith("vae-pipeline: error: ") and "truncated" in last
    manifest = storage.read_json(tmp_path / "a" / "runs" / "bad" / "manifest.json")
    assert (manifest["status"], manifest["stage"]) == ("failed", "verify-data")
    assert manifest["error"] == last.removeprefix("vae-pipeline: error: ")
