"""A failed run is recorded, not left as an empty directory (issue 9, case 6): its manifest says
failed, which stage, and the one-line error; ``latest`` never points at it; a later run of the
same id completes it. A failure found inside the flow's run of the command line is one line on
the terminal, and a failed run."""

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from flows.cli.console import quiet_user_tracebacks
from flows.pipeline import vae_pipeline
from tests.helpers.processes import run_cli
from vae_model import UserInputError, stages
from vae_model.runs import registry, storage

TINY = dict(epochs=1, batch_size=32, iwae_k=2, gradient_draws=2, seeds=[0],
            estimators=["analytic"])


def ui_logs(flow_run_id) -> list[str]:
    """The flow run's log messages as the Prefect UI shows them (sent in the background)."""
    APILogHandler().flush()
    for _ in range(60):
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        if any("UserInputError" in log.message for log in logs):
            break
        time.sleep(1)
    return [log.message for log in logs]


def test_a_corrupt_file_found_through_the_environment_is_one_line_and_a_failed_run(tmp_path):
    """Found inside the flow (verify-data), not by the CLI's --data-dir check: the terminal
    gets Prefect's log lines but no traceback, then the error; the run records the failure."""
    from vae_model.model import data
    corrupt = tmp_path / "fashion"
    corrupt.mkdir()
    for spec in data.CANONICAL.values():
        (corrupt / f"{spec.filename}.gz").write_bytes(b"not gzip")
    done = run_cli(tmp_path, "run", "--epochs", "1", "--run-id", "bad", "--artifacts-dir",
                   str(tmp_path / "a"), FASHION_MNIST_DIR=str(corrupt))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (last,) = [line for line in done.stderr.splitlines() if line.startswith("vae-pipeline:")]
    assert last.startswith("vae-pipeline: error: ") and "truncated" in last
    manifest = storage.read_json(tmp_path / "a" / "runs" / "bad" / "manifest.json")
    assert (manifest["status"], manifest["stage"]) == ("failed", "verify-data")
    assert manifest["error"] == last.removeprefix("vae-pipeline: error: ")


def test_a_failed_stage_is_recorded_and_a_later_run_completes_the_run(harness, tiny_data,
                                                                      tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    good = vae_pipeline(**TINY, artifacts_dir=str(root), run_id="good", return_state=True)
    assert good.is_completed()

    def broken(*args, **kwargs):
        raise UserInputError("the evaluation data is unusable: fix it")
    quiet_user_tracebacks()  # as the CLI does: off the console, not out of the UI's logs
    with monkeypatch.context() as patch:
        patch.setattr(stages, "evaluate", broken)
        state = vae_pipeline(**TINY, artifacts_dir=str(root), run_id="r", return_state=True)
    assert state.is_failed()
    manifest = storage.read_json(root / "runs" / "r" / "manifest.json")
    assert manifest["status"] == "failed"
    assert manifest["stage"] == "evaluate-analytic-s0"
    assert manifest["error"] == "the evaluation data is unusable: fix it"
    assert manifest["parameters"]["run_id"] == "r" and manifest["started_at"]
    assert (root / "latest").resolve() == root / "runs" / "good"
    listed = {r["id"]: r for r in registry.list_runs(root)}
    assert listed["r"]["status"] == "failed" and listed["r"]["locked"] is None
    assert "Traceback" in "".join(ui_logs(state.state_details.flow_run_id))

    again = vae_pipeline(**TINY, artifacts_dir=str(root), run_id="r", return_state=True)
    assert again.is_completed()
    manifest = storage.read_json(root / "runs" / "r" / "manifest.json")
    assert manifest["status"] == "complete" and "error" not in manifest
    assert (root / "latest").resolve() == root / "runs" / "r"
