"""A grid of models (estimator x seed x latent size x architecture x likelihood) trained on a
Dask cluster and compared in one table and figure set. By default a local ``distributed``
cluster of two single-threaded worker processes; any scheduler with ``--dask-address``."""

from __future__ import annotations

import itertools

from prefect import flow
from prefect_dask import DaskTaskRunner

from flows.parameters import (Architecture, Draws, Estimator, LearningRate, Likelihood,
                              PositiveInt, RunId)
from flows.recipe import compare_models, default_run_id
from tasks import verify_data
from vae_model import run
from vae_model.config import ModelConfig

LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}


def dask_runner(address: str | None = None, n_workers: int = 2) -> DaskTaskRunner:
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, "n_workers": n_workers})


@flow(name="vae-sweep", task_runner=dask_runner(), log_prints=True)
def vae_sweep(
    estimators: list[Estimator] = ["analytic", "monte_carlo"],
    seeds: list[int] = [0, 1],
    latent_sizes: list[PositiveInt] = [2],
    architectures: list[Architecture] = ["mlp"],
    likelihoods: list[Likelihood] = ["bernoulli"],
    epochs: PositiveInt = 10,
    batch_size: PositiveInt = 64,
    learning_rate: LearningRate = 1e-3,
    iwae_k: PositiveInt = 100,
    gradient_draws: Draws = 100,
    train_limit: PositiveInt | None = None,
    data_dir: str | None = None,
    artifacts_dir: str = "artifacts",
    run_id: RunId = None,
) -> str:
    """Train every combination and compare them; returns the path of the run's report.md."""
    run_path = run.ensure_writable(run.run_dir(artifacts_dir, run_id or default_run_id()))
    data = verify_data(data_dir)
    grid = itertools.product(dict.fromkeys(architectures), dict.fromkeys(likelihoods),
                             dict.fromkeys(latent_sizes), dict.fromkeys(seeds),
                             dict.fromkeys(estimators))
    models = [ModelConfig(estimator, architecture, likelihood, latent, epochs, batch_size,
                          learning_rate, seed, train_limit).validate(data["train_images"])
              for architecture, likelihood, latent, seed, estimator in grid]
    return compare_models(models, data, run_path, artifacts_dir, iwae_k, gradient_draws,
                          seed=min(seeds))
