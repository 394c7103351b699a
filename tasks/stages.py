"""One task per pipeline stage."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.logging import get_run_logger
from prefect.runtime import task_run

from tasks import guard
from tasks.caching import policy
from vae_model import UserInputError, stages
from vae_model.evaluation import plan
from vae_model.evaluation.decision import DEFAULT_MARGIN
from vae_model.model.config import ModelConfig
from vae_model.results import facets, report
from vae_model.runs import storage, store
from vae_model.runs.directory import PLAN_FILE

# No task carries tags: Prefect 3.8.8 asks the server for tag concurrency slots whenever a tagged
# task starts, and on the default SQLite server that request, racing the other worker's writes,
# now and then failed ("database is locked", 503) and was retried 2 s later: a worker idle for
# ~2 s at a task start, several times a run.

# the modules each stage runs; the cache key also covers every vae_model module they import
TRAINING_MODULES = ("training", "results.tensorboard", "model.data", "stages")


def _model_name() -> str:
    return ModelConfig.from_dict(task_run.parameters["settings"]).name


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow only [a-z0-9-]."""
    return "-".join(parts).lower().replace("_", "-").replace(".", "-")


def _not_a_user_error(task, task_run, state) -> bool:
    """Retry transient failures (a download), never a bad file or path: it would fail again."""
    return not isinstance(state.result(raise_on_failure=False), UserInputError)


@task(on_failure=[guard.note_stage], name="verify-data", task_run_name="verify-data",
      retries=2, retry_delay_seconds=5, retry_condition_fn=_not_a_user_error)
def verify_data(data_dir: str | None = None) -> dict:
    """Locate the four Fashion-MNIST files and verify their SHA-256 (never cached: cheap, and
    the files may have changed since the last run)."""
    facts = stages.verify_data(data_dir)
    get_run_logger().info("data verified: %d train and %d test images in %s",
                          facts["train_images"], facts["test_images"], facts["data_dir"])
    return facts


@task(on_failure=[guard.note_stage], task_run_name=lambda: f"train-{_model_name()}",
      cache_policy=policy(*TRAINING_MODULES), persist_result=True)
def train_model(settings: dict, data_facts: dict, run_dir: str) -> str:
    """Train one model (resuming from its last complete epoch); returns its directory."""
    logger = get_run_logger()
    config = ModelConfig.from_dict(settings)
    progress_id = create_progress_artifact(
        0.0, key=artifact_key("train-progress", config.name),
        description=f"Training {config.name}: {config.epochs} epochs")
    # Each update is a request to the server (~10 ms): sent from a thread of its own, in order,
    # while training goes on (in the training thread, 2.5 s of a default run's workers).
    # A failed update is said once, not every 1.5 s while the server is away.
    failing = False
    def warn_if_failed(sent):
        nonlocal failing
        error = sent.exception()
        if error is not None and not failing:
            logger.warning("progress artifact not updated: %s (training goes on)", error)
        elif error is None and failing:
            logger.info("progress artifact updated again")
        failing = error is not None

    with ThreadPoolExecutor(1, thread_name_prefix="progress") as sender:
        def on_progress(p):
            done = ((p.epoch - 1) * p.steps_per_epoch + p.step) / (p.epochs * p.steps_per_epoch)
            sender.submit(update_progress_artifact, progress_id,
                          100.0 * done).add_done_callback(warn_if_failed)
            logger.info("epoch %d/%d step %d/%d: train -ELBO %.2f nats (%.0f img/s)", p.epoch,
                        p.epochs, p.step, p.steps_per_epoch, p.train_neg_elbo,
                        p.images_per_second)

        with guard.heeding_stop(store.location(run_dir)):
            directory = stages.train(config, data_facts["data_dir"], run_dir, on_progress)
    update_progress_artifact(progress_id, 100.0)
    return str(directory)


@task(on_failure=[guard.note_stage], task_run_name="evaluate-{model_name}",
      cache_policy=policy("evaluation.heldout", "reference", "training", "model.data", "stages"),
      persist_result=True)
def evaluate_model(model_name: str, checkpoint_dir: str, data_facts: dict, iwae_k: int,
                   gradient_draws: int) -> str:
    """Score one trained model on the test set (its draws seeded by the model's own seed, so
    the two estimators' models of one seed see the same random numbers)."""
    with guard.heeding_stop(store.location(checkpoint_dir).parent.parent):
        path = stages.evaluate(checkpoint_dir, data_facts["data_dir"], iwae_k, gradient_draws)
    heldout = storage.read_json(path)["heldout"]
    reference = (f", reference NLL {heldout['reference_nll']:.2f} "
                 f"(± {heldout['reference_nll_error']:.3f} numerical)"
                 if "reference_nll" in heldout else "")
    get_run_logger().info(
        "held-out -ELBO %.2f ± %.2f (KL %.2f, reconstruction %.2f), IWAE-%d %.2f%s nats per "
        "image", heldout["neg_elbo"], heldout["neg_elbo_stderr"], heldout["kl"],
        heldout["reconstruction"], iwae_k, heldout["iwae_nll"], reference)
    return str(path)


@task(on_failure=[guard.note_stage], name="plan-seeds", task_run_name="plan-seeds")
def plan_seeds(run_dir: str, checkpoint_dirs: list[str], parameters: dict) -> list[dict]:
    """Stage 2 of a two-stage plan: from the pilot's evaluated models, per configuration the
    seeds to add ({"configuration", "seeds"}); records the plan's settings in the run's
    plan.json (from then on they are fixed) and logs each plan (never cached: it reads only
    what the pilot's stages return)."""
    comparison = report.collect_metrics(checkpoint_dirs, parameters["equivalence_margin"],
                                        pilot=plan.pilot(parameters))["comparison"]
    storage.write_json(store.location(run_dir) / PLAN_FILE, plan.settings(parameters))
    additions, logger = [], get_run_logger()
    for block in comparison["configurations"]:
        for pair in block["paired"][:1]:  # two estimators: one pair per configuration
            seeds = plan.stage_two_seeds(pair["plan"])
            additions.append({"configuration": block["configuration"], "seeds": seeds})
            logger.info("plan for %s: %s; stage 2 %s", facets.title(block["configuration"]),
                        plan.summary({**pair["plan"], "seeds_run": plan.target(pair["plan"])}),
                        f"adds {len(seeds)} seed{'s' * (len(seeds) != 1)} "
                        f"({plan.seed_ranges(seeds)})" if seeds
                        else "adds no seeds: the pilot is enough")
    return additions


@task(on_failure=[guard.note_stage], name="render-figures", task_run_name="render-figures",
      cache_policy=policy("results.figures", "training", "model.data", "stages"),
      persist_result=True)
def render_figures(checkpoint_dirs: list[str], evaluation_paths: list[str], data_facts: dict,
                   run_dir: str, seed: int, all_models: bool = False,
                   equivalence_margin: float = DEFAULT_MARGIN,
                   pilot: dict | None = None) -> list[str]:
    """The run's figures; per-model image figures for one seed per configuration and estimator
    unless ``all_models``; the equivalence margin as a band in the differences figure, whose
    intervals are the plan's when there is one (``pilot``)."""
    paths = stages.render_figures(checkpoint_dirs, data_facts["data_dir"], run_dir, seed,
                                  all_models=all_models, margin=equivalence_margin, pilot=pilot)
    get_run_logger().info("%d figures in %s", len(paths), store.location(run_dir) / "figures")
    return [str(p) for p in paths]


@task(on_failure=[guard.note_stage], name="write-report", task_run_name="write-report",
      cache_policy=policy("results.report", "stages"), persist_result=True)
def write_report(run_dir: str, checkpoint_dirs: list[str], evaluation_paths: list[str],
                 figure_paths: list[str], parameters: dict, data_facts: dict) -> str:
    timings = {store.location(p).parent.name: storage.read_json(store.location(p))["timings"]
               for p in evaluation_paths}
    path = report.write_report(store.location(run_dir), checkpoint_dirs, parameters, data_facts,
                               figure_paths, timings)
    return str(path)


@task(on_failure=[guard.note_stage], name="publish-results", task_run_name="publish-results")
def publish_results(run_dir: str, artifacts_dir: str, report_path: str) -> str:
    """``artifacts/latest`` -> this run, ``artifacts/index.html``, and Prefect artifacts with
    stable keys (versions accumulate across scheduled runs): ``vae-report`` (the report with
    its figures inline), ``vae-run-summary`` (verdict and per-estimator table),
    ``vae-estimator-comparison`` (table) and ``vae-history`` (this configuration's series).
    Not cached: each flow run publishes its own."""
    from tasks import publish

    run_path = store.location(run_dir)
    latest = report.mark_latest(artifacts_dir, run_path)
    content = publish.build(run_path, artifacts_dir)
    name = run_path.name
    create_markdown_artifact(content["report"], key="vae-report",
                             description=f"Report of run {name}, figures inline")
    create_markdown_artifact(content["summary"], key="vae-run-summary",
                             description=f"Verdict and per-estimator summary, run {name}")
    create_table_artifact(content["table"], key="vae-estimator-comparison",
                          description=f"Held-out scores per estimator over seeds, run {name}")
    create_markdown_artifact(content["history"], key="vae-history",
                             description=f"Runs of this configuration up to {name}")
    flagged = [r["id"] for r in content["series"][-1:]
               if any(c["flag"] == "regression" for m in r.get("changes", {}).values()
                      for c in m.values())]
    logger = get_run_logger()
    if flagged:
        logger.warning("held-out scores moved beyond the seed noise since the previous run of "
                       "this configuration: see the vae-history artifact")
    logger.info("run complete: %s (latest -> %s; all runs: %s)", report_path, latest,
                content["index"])
    return report_path
