"""The Prefect flows (flows.pipeline, flows.rerun) end to end on tiny data, against Prefect's
test harness: a run, its cache, single stages rerun, parameters checked before the flow runs."""

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.pipeline import vae_pipeline
from flows.rerun import rerun_stage
from vae_model.runs import storage

TINY = dict(epochs=2, batch_size=32, iwae_k=5, gradient_draws=3, seeds=[0])


def task_states(flow_state) -> dict:
    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs}


def test_pipeline_runs_caches_and_reruns_single_stages(harness, tiny_data, tmp_path):
    root = str(tmp_path / "artifacts")
    first = vae_pipeline(**TINY, artifacts_dir=root, run_id="t1", return_state=True)
    assert first.is_completed(), first
    run = tmp_path / "artifacts" / "runs" / "t1"
    metrics = storage.read_json(run / "metrics.json")
    assert set(metrics["models"]) == {"analytic-s0", "monte_carlo-s0"}
    assert (tmp_path / "artifacts" / "latest").resolve() == run
    states = task_states(first)
    assert states["train-analytic-s0"] == states["train-monte_carlo-s0"] == "Completed"
    assert states["evaluate-analytic-s0"] == "Completed"

    again = vae_pipeline(**TINY, artifacts_dir=root, run_id="t1", return_state=True)
    states = task_states(again)
    for stage in ("train-analytic-s0", "train-monte_carlo-s0", "evaluate-analytic-s0",
                  "evaluate-monte_carlo-s0", "render-figures", "write-report"):
        assert states[stage] == "Cached", (stage, states)

    # seeds added to the run, as an inconclusive verdict advises: the earlier seed is reused
    more = vae_pipeline(**{**TINY, "seeds": [0, 1]}, artifacts_dir=root, run_id="t1",
                        return_state=True)
    states = task_states(more)
    for stage in ("train-analytic-s0", "train-monte_carlo-s0", "evaluate-analytic-s0",
                  "evaluate-monte_carlo-s0"):
        assert states[stage] == "Cached", (stage, states)
    assert states["train-analytic-s1"] == states["evaluate-monte_carlo-s1"] == "Completed"
    pair = storage.read_json(run / "metrics.json")["comparison"]["paired"][0]
    assert pair["seeds"] == [0, 1] and pair["decision"] in ("better", "equivalent",
                                                            "inconclusive")

    other_k = vae_pipeline(**{**TINY, "iwae_k": 7}, artifacts_dir=root, run_id="t1",
                           return_state=True)
    states = task_states(other_k)
    assert states["train-analytic-s0"] == "Cached" and states["evaluate-analytic-s0"] == "Completed"
    heldout = storage.read_json(run / "metrics.json")["models"]["analytic-s0"]["heldout"]
    assert heldout["iwae_k"] == 7

    figures_before = (run / "figures" / "curves.png").stat().st_mtime_ns
    cached = rerun_stage("figures", "t1", artifacts_dir=root, return_state=True)
    assert task_states(cached)["render-figures"] == "Cached"
    forced = rerun_stage("figures", "t1", artifacts_dir=root, force=True, return_state=True)
    assert task_states(forced)["render-figures"] == "Completed"
    assert (run / "figures" / "curves.png").stat().st_mtime_ns > figures_before
    assert "train-analytic-s0" not in task_states(forced)

    evaluated = rerun_stage("evaluate", "t1", artifacts_dir=root, iwae_k=9, return_state=True)
    assert task_states(evaluated)["evaluate-analytic-s0"] == "Completed"
    heldout = storage.read_json(run / "metrics.json")["models"]["monte_carlo-s0"]["heldout"]
    assert heldout["iwae_k"] == 9


def test_bad_parameters_are_rejected_before_the_flow_runs(harness, tiny_data, tmp_path):
    from prefect.exceptions import ParameterTypeError
    for bad in (dict(estimators=["exact"]), dict(epochs=0), dict(seeds=[]), dict(seeds=[-1]),
                dict(learning_rate=float("nan")),
                dict(iwae_k=0), dict(run_id="../../etc")):
        with pytest.raises(ParameterTypeError):
            vae_pipeline(**{**TINY, **bad}, artifacts_dir=str(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_a_bad_data_dir_fails_verify_data_once_without_retries(harness, tmp_path):
    state = vae_pipeline(**TINY, data_dir=str(tmp_path / "missing"),
                         artifacts_dir=str(tmp_path / "artifacts"), return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        (task_run,) = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert task_run.name == "verify-data" and task_run.run_count == 1
    assert list((tmp_path / "artifacts" / "runs").glob("*/models")) == []  # nothing trained


def test_until_decided_adds_the_planned_seeds_to_the_pilot_in_the_same_run(harness, tiny_data,
                                                                          tmp_path):
    from vae_model import UserInputError

    root, run = str(tmp_path / "artifacts"), tmp_path / "artifacts" / "runs" / "plan"
    pilot = {**TINY, "seeds": [0, 1], "equivalence_margin": 0.01}
    assert vae_pipeline(**pilot, artifacts_dir=root, run_id="plan", return_state=True) \
        .is_completed()
    # a margin this narrow asks for far more seeds than the bound: stage 2 adds seed 2 only
    planned = vae_pipeline(**pilot, until_decided=True, max_seeds=3, artifacts_dir=root,
                           run_id="plan", return_state=True)
    assert planned.is_completed(), planned
    states = task_states(planned)
    for stage in ("train-analytic-s0", "train-monte_carlo-s1", "evaluate-analytic-s1",
                  "evaluate-monte_carlo-s0"):
        assert states[stage] == "Cached", (stage, states)
    assert states["plan-seeds"] == "Completed"
    assert states["train-analytic-s2"] == states["evaluate-monte_carlo-s2"] == "Completed"
    metrics = storage.read_json(run / "metrics.json")
    assert set(metrics["models"]) == {f"{e}-s{s}" for e in ("analytic", "monte_carlo")
                                      for s in (0, 1, 2)}
    pair = metrics["comparison"]["paired"][0]
    assert pair["seeds"] == [0, 1, 2]
    assert pair["plan"]["pilot_seeds"] == [0, 1] and pair["plan"]["seeds_run"] == 3
    assert pair["plan"]["capped"] is True and pair["plan"]["seeds_planned"] > 3
    assert "capped at 3 seeds" in metrics["comparison"]["verdict"]
    assert "pilot 2 seeds" in (run / "report.md").read_text()
    assert storage.read_json(run / "plan.json") == {"seeds": [0, 1], "equivalence_margin": 0.01,
                                                    "max_seeds": 3}

    # the plan is fixed once made: another margin, or no plan, is refused; the run stays
    for changed in ({**pilot, "equivalence_margin": 0.5, "until_decided": True}, pilot):
        refused = vae_pipeline(**changed, max_seeds=3, artifacts_dir=root, run_id="plan",
                               return_state=True)
        assert refused.is_failed()
        with pytest.raises(UserInputError, match="plan was made with --seeds 0-1 "
                                                 "--equivalence-margin 0.01 --max-seeds 3"):
            refused.result()
    assert storage.read_json(run / "manifest.json")["status"] == "complete"
    assert storage.read_json(run / "metrics.json")["comparison"]["paired"][0]["plan"]
