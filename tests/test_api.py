"""The command line's Prefect API plumbing (flows.cli.api): an unreachable API is one line
naming the URL and both fixes; the watchdog's grace is a positive number of seconds; giving up
on the API ends the process in one line, a failed run only while the flow was working."""

import subprocess
import sys

import pytest

from flows.cli import api
from tests.helpers.processes import ROOT, run_cli
from vae_model import UserInputError
from vae_model.runs import directory, storage


def test_an_unreachable_prefect_api_is_one_line_naming_the_url_and_both_fixes(tmp_path):
    done = run_cli(tmp_path, "run", "--epochs", "1", "--artifacts-dir", str(tmp_path / "a"),
                   PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "vae-pipeline: error: cannot reach the Prefect API at http://127.0.0.1:9/api "
        "(ConnectError): start that server (prefect server start), or unset PREFECT_API_URL "
        "to use a temporary local one")


@pytest.mark.parametrize("value, expected", [(None, 60.0), ("", 60.0), ("12.5", 12.5),
                                             ("soon", None), ("0", None), ("-5", None),
                                             ("nan", None), ("inf", None)])
def test_the_api_grace_is_a_positive_number_of_seconds_or_one_line(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("VAE_PIPELINE_API_GRACE_SECONDS", raising=False)
    else:
        monkeypatch.setenv("VAE_PIPELINE_API_GRACE_SECONDS", value)
    if expected is not None:
        assert api.api_grace_seconds() == expected
    else:
        with pytest.raises(UserInputError, match=f"VAE_PIPELINE_API_GRACE_SECONDS must be a "
                           f"number of seconds > 0, got '{value}'"):
            api.api_grace_seconds()


GIVE_UP = """
import sys
from flows.cli import api
from tasks import guard
with guard.writing(sys.argv[1]):
    if sys.argv[2] == "during":
        api._give_up("the API went away")
api._give_up("the API went away")
"""


@pytest.mark.parametrize("when", ["during", "after"])
def test_giving_up_on_the_api_ends_the_process_in_one_line(tmp_path, when):
    """During the flow's work: the run is marked failed, rc 1. After it: the results stand,
    a warning, rc 0 (the Prefect UI only lacks the flow run's end)."""
    run_path = directory.run_dir(tmp_path, "r")
    done = subprocess.run([sys.executable, "-c", GIVE_UP, str(run_path), when], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    lines = done.stderr.strip().splitlines()
    if when == "during":
        assert done.returncode == 1, done.stderr
        assert lines[-1] == (f"vae-pipeline: error: the API went away; what was finished is "
                             f"kept in {run_path}: once the server is back, rerun with "
                             "--run-id r to resume")
        assert storage.read_json(run_path / "manifest.json")["status"] == "failed"
    else:
        assert done.returncode == 0, done.stderr
        assert lines[-1] == (f"vae-pipeline: warning: the API went away after the run "
                             f"finished: its results are in {run_path}, but the Prefect UI "
                             "will not show the flow run's end")
        assert not (run_path / "manifest.json").exists()


@pytest.mark.parametrize("dask, prefect, refused", [
    (None, None, False),  # a local cluster: a temporary server is fine
    ("tcp://127.0.0.1:8786", None, False),  # a scheduler on this machine
    ("tcp://10.0.0.5:8786", None, True),  # remote workers, temporary server
    ("tcp://10.0.0.5:8786", "http://127.0.0.1:4200/api", True),
    ("tcp://10.0.0.5:8786", "http://localhost:4200/api", True),
    ("tcp://[::1]:8786", "http://[::1]:4200/api", False),
    ("tcp://scheduler:8786", "http://10.0.0.2:4200/api", False),
])
def test_a_remote_dask_cluster_needs_an_api_its_workers_reach(dask, prefect, refused):
    if refused:
        with pytest.raises(UserInputError, match="cannot report to a Prefect API"):
            api.check_reachable_by_workers(dask, prefect)
    else:
        api.check_reachable_by_workers(dask, prefect)
