"""The pipeline: verify the data, train one model per KL estimator, score each on the held-out
set, draw the figures, write the report."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.parameters import (Architecture, Draws, Estimator, LearningRate, Likelihood,
                              PositiveInt, RunId)
from flows.recipe import compare_models, default_run_id
from tasks import verify_data
from vae_model import run
from vae_model.config import ModelConfig


@flow(name="vae-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def vae_pipeline(
    estimators: list[Estimator] = ["analytic", "monte_carlo"],
    architecture: Architecture = "mlp",
    likelihoods: list[Likelihood] = ["bernoulli"],
    latent_size: PositiveInt = 2,
    epochs: PositiveInt = 10,
    batch_size: PositiveInt = 64,
    learning_rate: LearningRate = 1e-3,
    seed: int = 0,
    iwae_k: PositiveInt = 100,
    gradient_draws: Draws = 100,
    train_limit: PositiveInt | None = None,
    data_dir: str | None = None,
    artifacts_dir: str = "artifacts",
    run_id: RunId = None,
) -> str:
    """Train the seed notebook's VAE on Fashion-MNIST under each KL estimator (and each pixel
    likelihood asked for) and compare them on the 10,000 test images; returns the path of the
    run's report.md."""
    run_path = run.ensure_writable(run.run_dir(artifacts_dir, run_id or default_run_id()))
    data = verify_data(data_dir)
    models = [ModelConfig(estimator, architecture, likelihood, latent_size, epochs, batch_size,
                          learning_rate, seed, train_limit).validate(data["train_images"])
              for likelihood in dict.fromkeys(likelihoods)
              for estimator in dict.fromkeys(estimators)]
    return compare_models(models, data, run_path, artifacts_dir, iwae_k, gradient_draws, seed)
