"""The guard over the runs being written (tasks.guard): abandoning them, as the API watcher does
before ending the process, marks them failed and stops their stages."""

import pytest

from tasks import guard
from vae_model.runs import directory, stopping, storage


def test_abandoning_marks_the_runs_being_written_failed_and_stops_their_stages(
        tmp_path, clear_stop):
    """What the API watcher does before ending the process: not the run already written."""
    busy, done = directory.run_dir(tmp_path, "busy"), directory.run_dir(tmp_path, "done")
    with guard.writing(done, {"seeds": [0]}):
        pass
    with guard.writing(busy, {"seeds": [1]}):
        abandoned, finished = guard.abandon("the API went away")
        with pytest.raises(stopping.Stopped):
            stopping.check()
    assert abandoned == [busy] and done in finished and busy not in finished
    manifest = storage.read_json(busy / "manifest.json")
    assert (manifest["status"], manifest["stage"], manifest["error"]) == (
        "failed", "flow", "the API went away")
    assert manifest["parameters"] == {"seeds": [1]}
    assert not (done / "manifest.json").exists()
