"""The recipe every flow shares: train each model, score it, draw, report, publish."""

from __future__ import annotations

import datetime
from pathlib import Path

from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from flows.grid import with_seeds
from tasks import (evaluate_model, plan_seeds, publish_results, render_figures, train_model,
                   write_report)
from tasks.caching import results_beside
from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.model.config import ModelConfig


def default_run_id() -> str:
    """``<created>-<flow-run name>``: distinct between scheduled runs, and stable across retries
    of one flow run (a retry reschedules the run but keeps its creation time and name), so a
    retry resumes in the same directory."""
    run = FlowRunContext.get().flow_run
    created = run.created or datetime.datetime.now(datetime.timezone.utc)
    return f"{created:%Y%m%d-%H%M%S}-{run.name}"


def compare_models(models: list[ModelConfig], data: dict, run_path: Path, artifacts_dir: str,
                   iwae_k: int, gradient_draws: int, all_model_figures: bool = False,
                   equivalence_margin: float = DEFAULT_MARGIN, pilot: dict | None = None) -> str:
    """Train the models concurrently (as the flow's task runner allows), evaluate each as soon as
    it is trained; with a ``pilot`` (a two-stage plan), train and evaluate the seeds the plan
    adds; then figures, report and Prefect artifacts. Returns report.md's path."""
    train, evaluate, draw, report_on = results_beside(
        artifacts_dir, train_model, evaluate_model, render_figures, write_report)

    def train_and_evaluate(batch: list[ModelConfig]) -> tuple[list, list]:
        trained = [train.submit(m.to_dict(), data, str(run_path)) for m in batch]
        # Named per model: a task run whose training failed never gets its run name rendered
        # (Prefect names it before resolving its inputs), and would show as "evaluate_model-7ce"
        evaluated = [evaluate.with_options(name=f"evaluate-{m.name}").submit(
                         m.name, t, data, iwae_k, gradient_draws)
                     for m, t in zip(batch, trained)]
        return [t.result() for t in trained], [e.result() for e in evaluated]

    # the same test images and prior draws in every model's figures, and in a rerun's
    figure_seed = min(m.seed for m in models)
    checkpoints, evaluations = train_and_evaluate(models)
    if pilot is not None:  # stage 2: the seeds the pilot's spread asks for, decided at the end
        added = with_seeds(models, plan_seeds(str(run_path), checkpoints,
                                              dict(flow_run.parameters)))
        more_checkpoints, more_evaluations = train_and_evaluate(added)
        checkpoints, evaluations = checkpoints + more_checkpoints, evaluations + more_evaluations
    figures = draw(checkpoints, evaluations, data, str(run_path), figure_seed,
                   all_model_figures, equivalence_margin, pilot)
    report = report_on(str(run_path), checkpoints, evaluations, figures,
                       dict(flow_run.parameters), data)
    return publish_results(str(run_path), artifacts_dir, report)
