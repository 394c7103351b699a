"""The pipeline: verify the data, train a model per KL estimator and seed (and per configuration
of a grid), score each on the held-out set, compare the estimators, draw the figures, write the
report. ``vae_sweep`` is the same recipe on a Dask cluster, for larger grids."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.grid import model_grid
from flows.parameters import (Architecture, Draws, Estimator, LearningRate, Likelihood, Margin,
                              NonEmpty, PositiveInt, RunId, Seed)
from flows.recipe import compare_models, default_run_id
from tasks import guard, verify_data
from vae_model.evaluation import plan
from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.runs import directory


@flow(name="vae-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def vae_pipeline(
    estimators: NonEmpty[Estimator] = ["analytic", "monte_carlo"],
    seeds: NonEmpty[Seed] = [0, 1, 2],
    architectures: NonEmpty[Architecture] = ["mlp"],
    likelihoods: NonEmpty[Likelihood] = ["bernoulli"],
    latent_sizes: NonEmpty[PositiveInt] = [2],
    epochs: PositiveInt = 10,
    batch_size: PositiveInt = 64,
    learning_rate: LearningRate = 1e-3,
    iwae_k: PositiveInt = 100,
    gradient_draws: Draws = 100,
    train_limit: PositiveInt | None = None,
    all_model_figures: bool = False,
    data_dir: str | None = None,
    artifacts_dir: str = "artifacts",
    run_id: RunId = None,
    equivalence_margin: Margin = DEFAULT_MARGIN,
    until_decided: bool = False,
    max_seeds: PositiveInt = plan.DEFAULT_MAX_SEEDS,
) -> str:
    """Train the seed notebook's VAE on Fashion-MNIST under each KL estimator, for each seed
    (and each architecture, likelihood and latent size listed), and compare the estimators on
    the 10,000 test images; returns the path of the run's report.md. ``until_decided``: the
    seeds are a pilot, and a second stage adds the seeds its spread asks for (Stein's plan),
    at most ``max_seeds`` in all per configuration."""
    parameters = dict(flow_run.parameters)
    run_path = directory.run_dir(artifacts_dir, run_id or default_run_id())
    plan.check(parameters, directory.recorded_plan(run_path))  # before a failure record
    with guard.writing(run_path, parameters):  # one writer; failures recorded
        directory.ensure_writable(run_path)
        data = verify_data(data_dir)
        models = model_grid(parameters, data["train_images"])
        return compare_models(models, data, run_path, artifacts_dir, iwae_k, gradient_draws,
                              all_model_figures, equivalence_margin, plan.pilot(parameters))
