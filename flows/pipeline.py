"""The pipeline: verify the data, train one model per KL estimator, score each on the held-out
set, draw the figures, write the report."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.parameters import (Architecture, Draws, Estimator, LearningRate, Likelihood,
                              PositiveInt, RunId)
from tasks import (evaluate_model, publish_results, render_figures, train_model, verify_data,
                   write_report)
from vae_model import run
from vae_model.config import ModelConfig


def default_run_id() -> str:
    """Stable across retries of one flow run (so a retry resumes in the same directory), and
    distinct between scheduled runs."""
    return f"{flow_run.scheduled_start_time:%Y%m%d-%H%M%S}-{flow_run.name}"


@flow(name="vae-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def vae_pipeline(
    estimators: list[Estimator] = ["analytic", "monte_carlo"],
    architecture: Architecture = "mlp",
    likelihood: Likelihood = "bernoulli",
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
    """Train the seed notebook's VAE on Fashion-MNIST under each KL estimator and compare them
    on the 10,000 test images; returns the path of the run's report.md."""
    parameters = dict(flow_run.parameters)
    run_path = run.ensure_writable(run.run_dir(artifacts_dir, run_id or default_run_id()))
    data = verify_data(data_dir)
    models = [ModelConfig(estimator, architecture, likelihood, latent_size, epochs, batch_size,
                          learning_rate, seed, train_limit).validate(data["train_images"])
              for estimator in dict.fromkeys(estimators)]

    trained = [train_model.submit(m.to_dict(), data, str(run_path)) for m in models]
    evaluated = [evaluate_model.submit(m.name, t, data, iwae_k, gradient_draws, seed)
                 for m, t in zip(models, trained)]
    checkpoints, evaluations = [t.result() for t in trained], [e.result() for e in evaluated]
    figures = render_figures(checkpoints, evaluations, data, str(run_path), seed)
    report = write_report(str(run_path), checkpoints, evaluations, figures,
                          parameters, data)
    return publish_results(str(run_path), artifacts_dir, report)

