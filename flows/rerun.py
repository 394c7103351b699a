"""Rerun one stage of an existing run directory as its own flow run; the other stages' outputs
are left as they are. ``evaluate`` and ``figures`` end by refreshing the report that
summarises them."""

from __future__ import annotations

from typing import Literal

from prefect import flow

import tasks
from flows.parameters import Draws, PositiveInt
from tasks import guard, publish_results
from tasks.caching import results_beside
from vae_model.evaluation import plan
from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.runs import directory, store

Stage = Literal["evaluate", "figures", "report"]


@flow(name="vae-rerun-stage", flow_run_name="rerun-{stage}-{run_id}")
def rerun_stage(stage: Stage, run_id: str, artifacts_dir: str = "artifacts",
                iwae_k: PositiveInt | None = None, gradient_draws: Draws | None = None,
                force: bool = False) -> str:
    """Rerun ``stage`` of run ``run_id``; ``force`` ignores the stage's cached result."""
    run_path = directory.run_dir(artifacts_dir, run_id)
    # before the lock, which would create the directory
    manifest = directory.load_manifest(run_path)
    with guard.writing(run_path):  # one writer; a failure is recorded in the manifest
        parameters, data = dict(manifest["parameters"]), manifest["data"]
        checkpoints = list(manifest["models"].values())
        evaluations = [str(store.location(c) / directory.EVALUATION_FILE) for c in checkpoints]
        figures = sorted(str(p) for p in (run_path / "figures").glob("*.png"))
        evaluate_model, render_figures, write_report = results_beside(
            artifacts_dir, tasks.evaluate_model, tasks.render_figures, tasks.write_report)

        if stage == "evaluate":
            parameters["iwae_k"] = iwae_k or parameters["iwae_k"]
            parameters["gradient_draws"] = gradient_draws or parameters["gradient_draws"]
            evaluate = evaluate_model.with_options(refresh_cache=force)
            evaluations = [evaluate(name, c, data, parameters["iwae_k"],
                                    parameters["gradient_draws"])
                           for name, c in manifest["models"].items()]
        elif stage == "figures":
            figures = render_figures.with_options(refresh_cache=force)(
                checkpoints, evaluations, data, str(run_path), min(parameters["seeds"]),
                parameters.get("all_model_figures", False),
                parameters.get("equivalence_margin", DEFAULT_MARGIN), plan.pilot(parameters))
        report = write_report.with_options(refresh_cache=force or stage != "report")(
            str(run_path), checkpoints, evaluations, figures, parameters, data)
        return publish_results(str(run_path), artifacts_dir, report)
