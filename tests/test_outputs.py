"""A stage is Cached only while the files it wrote are there, unchanged (issue 9, cases 1 and 2):
delete or modify each stage's output, rerun, and check which stages ran and that the run is
whole again."""

import re
import shutil

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.pipeline import vae_pipeline
from tasks import outputs
from vae_model.runs import storage

TINY = dict(epochs=2, batch_size=32, iwae_k=5, gradient_draws=3, seeds=[0])
CACHED_STAGES = ("train-", "evaluate-", "render-figures", "write-report")


def ran(state) -> set:
    """The cached stages that ran (rather than coming back Cached) in this flow run."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    states = {r.name: r.state.name for r in runs if r.name.startswith(CACHED_STAGES)}
    assert set(states.values()) <= {"Completed", "Cached"}, states
    return {name for name, s in states.items() if s == "Completed"}


def assert_whole(run):
    """Every file the run's summary names is there, and each stage's record matches its files."""
    manifest = storage.read_json(run / "manifest.json")
    assert manifest["status"] == "complete"
    for name in manifest["models"]:
        for file in ("state.json", "evaluation.json"):
            assert (run / "models" / name / file).is_file()
    report = (run / "report.md").read_text()
    images = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert images and all((run / i).is_file() for i in images), images
    records = list((run / outputs.RECORDS_DIR).glob("*.json"))
    assert records
    current = [r for r in map(storage.read_json, records) if not outputs.changed(r, run)]
    assert {r["task"] for r in current} >= {"render-figures", "write-report"}


def test_deleted_or_modified_outputs_rerun_their_stage_and_what_depends_on_it(
        harness, tiny_data, tmp_path):
    root = str(tmp_path / "artifacts")
    run = tmp_path / "artifacts" / "runs" / "stale"

    def again():
        state = vae_pipeline(**TINY, artifacts_dir=root, run_id="stale", return_state=True)
        assert state.is_completed(), state
        assert_whole(run)
        return ran(state)

    first = again()
    assert {"train-analytic-s0", "train-monte_carlo-s0", "evaluate-analytic-s0",
            "render-figures", "write-report"} <= first
    assert again() == set()  # nothing changed: everything Cached

    shutil.rmtree(run / "figures")  # case 2: every PNG gone
    assert again() == {"render-figures"}  # same PNGs again, so the report stands

    png = sorted((run / "figures").glob("*.png"))[0]
    png.write_bytes(png.read_bytes() + b"edited")
    assert again() == {"render-figures"}

    (run / "manifest.json").unlink()
    assert again() == {"write-report"}
    (run / "report.html").write_text("<p>edited</p>")
    assert again() == {"write-report"}

    evaluation = run / "models" / "monte_carlo-s0" / "evaluation.json"
    storage.write_json(evaluation, {**storage.read_json(evaluation), "edited": True})
    stages = again()  # its timings differ, so what reads it reruns too
    assert "evaluate-monte_carlo-s0" in stages and not stages & {
        "train-analytic-s0", "train-monte_carlo-s0", "evaluate-analytic-s0"}

    checkpoint = next((run / "models" / "analytic-s0").glob("epoch-*/ckpt.data-*"))
    checkpoint.write_bytes(checkpoint.read_bytes()[::-1])  # same size, other content
    stages = again()
    assert {"train-analytic-s0", "evaluate-analytic-s0"} <= stages
    assert "train-monte_carlo-s0" not in stages
    state = storage.read_json(run / "models" / "analytic-s0" / "state.json")
    assert [h["epoch"] for h in state["history"]] == [1, 2]  # retrained, not resumed

    shutil.rmtree(run / "models" / "monte_carlo-s0")
    stages = again()
    assert {"train-monte_carlo-s0", "evaluate-monte_carlo-s0"} <= stages
    assert "train-analytic-s0" not in stages

    shutil.rmtree(run)  # case 1: the whole run directory gone
    assert again() >= first


def test_outputs_of_another_parameter_set_are_not_taken_for_this_one(harness, tiny_data,
                                                                      tmp_path):
    """evaluation.json of IWAE k=7 must not be served as the cached result of k=5."""
    root = str(tmp_path / "artifacts")
    evaluation = tmp_path / "artifacts" / "runs" / "k" / "models" / "analytic-s0" / \
        "evaluation.json"
    for k, expect_ran in ((5, True), (7, True), (5, True), (5, False)):
        state = vae_pipeline(**{**TINY, "iwae_k": k, "estimators": ["analytic"]},
                             artifacts_dir=root, run_id="k", return_state=True)
        assert ("evaluate-analytic-s0" in ran(state)) == expect_ran, k
        assert storage.read_json(evaluation)["heldout"]["iwae_k"] == k
