"""Made-up but plausible per-model records (metrics.json's shape) and model directories, so
that figures and the report can be tested for any grid without training anything; and run
directories of a series of runs (manifest.json, metrics.json), written by hand, for the history
and the published artifacts."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from vae_model.model.config import ModelConfig
from vae_model.runs import storage

N_IMAGES = 200


def configs(seeds=(0, 1, 2), latent_sizes=(2,), architectures=("mlp",),
            likelihoods=("bernoulli",), epochs=3) -> list[ModelConfig]:
    grid = itertools.product(architectures, likelihoods, latent_sizes, seeds,
                             ("analytic", "monte_carlo"))
    return [ModelConfig(estimator=e, architecture=a, likelihood=lik, latent_size=z, seed=s,
                        epochs=epochs) for a, lik, z, s, e in grid]


DEFAULT_RUN = configs(seeds=(0, 1, 2))  # one configuration, 6 models
ISSUE_13_SWEEP = configs(seeds=(0,), latent_sizes=(2, 8), architectures=("mlp", "conv"),
                         likelihoods=("bernoulli", "continuous_bernoulli"), epochs=1)
HUGE_SWEEP = configs(seeds=(0,), latent_sizes=(2, 3, 4, 5, 6, 8, 16, 32),
                     architectures=("mlp", "conv"),
                     likelihoods=("bernoulli", "continuous_bernoulli"))


def _heldout(config: ModelConfig, rng, with_stderr: bool = True) -> dict:
    base = 260.0 if config.likelihood == "bernoulli" else -900.0
    neg_elbo = base - 3.0 * np.log2(config.latent_size) + (config.architecture == "conv") * 4 + \
        (config.estimator == "monte_carlo") * 1.0 + rng.normal(0, 0.4)
    heldout = {"neg_elbo": neg_elbo, "kl": 6.4 + rng.normal(0, 0.1),
               "iwae_nll": neg_elbo - 1.7 + rng.normal(0, 0.1), "iwae_k": 10}
    heldout["reconstruction"] = neg_elbo - heldout["kl"]
    if config.latent_size == 2:
        heldout["reference_nll"] = heldout["iwae_nll"] - 0.3
        heldout["reference_nll_error"] = 0.01
    if with_stderr:
        for key in ("neg_elbo", "kl", "reconstruction", "iwae_nll"):
            heldout[f"{key}_stderr"] = 0.8 if key != "kl" else 0.03
    return {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in heldout.items()}


def _history(config: ModelConfig, final: float, rng) -> list[dict]:
    return [{"epoch": e, "train_neg_elbo": final + 40.0 / e + 5, "heldout_neg_elbo":
             final + 30.0 / e - 30.0 / config.epochs + rng.normal(0, 0.3),
             "heldout_kl": 6.0, "heldout_reconstruction": final - 6.0, "train_seconds": 3.0,
             "images_per_second": 40000.0} for e in range(1, config.epochs + 1)]


def _gradient_variance(config: ModelConfig) -> dict:
    return {"analytic": {"total_variance": 2192.0, "kl_term_variance": 5e-15},
            "monte_carlo": {"total_variance": 2197.0, "kl_term_variance": 0.125}}


def records(model_configs: list[ModelConfig], with_stderr: bool = True) -> dict:
    """name -> {"estimator", "seed", "configuration", "history", "heldout", "gradient_variance"}"""
    result = {}
    for i, config in enumerate(model_configs):
        rng = np.random.default_rng(i)
        heldout = _heldout(config, rng, with_stderr)
        result[config.name] = {
            "estimator": config.estimator, "seed": config.seed,
            "configuration": config.configuration, "heldout": heldout,
            "history": _history(config, heldout["neg_elbo"], rng),
            "gradient_variance": _gradient_variance(config)}
    return result


def paired_models(differences) -> dict:
    """One configuration, a model per estimator and seed, whose held-out scores differ (analytic
    minus Monte-Carlo) by ``differences[seed]`` (statistics.compare's input)."""
    models = {}
    for seed, d in enumerate(differences):
        for estimator, value in (("analytic", 260.0 + d), ("monte_carlo", 260.0)):
            models[f"{estimator}-s{seed}"] = {
                "estimator": estimator, "seed": seed, "configuration": {},
                "heldout": {"neg_elbo": value, "kl": 6.0, "reconstruction": value - 6.0,
                            "iwae_nll": value - 2.0, "iwae_k": 100}}
    return models


def write_model_dirs(run, model_configs: list[ModelConfig], with_evaluation_extras=True) -> list:
    """``models/<name>/`` with state.json, evaluation.json and (optionally) per_image.csv, as
    training and evaluation write them; returns the directories as strings."""
    directories = []
    for name, record in records(model_configs, with_evaluation_extras).items():
        config = next(c for c in model_configs if c.name == name)
        directory = run / "models" / name
        storage.write_json(directory / "state.json", {
            "config": config.to_dict(), "history": record["history"], "train_seconds": 9.0})
        storage.write_json(directory / "evaluation.json", {
            "heldout": record["heldout"], "gradient_variance": record["gradient_variance"],
            "timings": {"heldout_seconds": 1.0}})
        if with_evaluation_extras:
            # image difficulty shared by the models of a seed, plus each model's own noise
            shared = np.random.default_rng(config.seed).normal(0.0, 10.0, N_IMAGES)
            own = np.random.default_rng(len(directories)).normal(0.0, 2.0, N_IMAGES)
            per_image = record["heldout"]["neg_elbo"] + shared + own
            storage.write_text(directory / "per_image.csv", pd.DataFrame({
                "index": np.arange(N_IMAGES), "neg_elbo": per_image,
                "iwae_nll": per_image - 1.5}).to_csv(index=False))
        directories.append(str(directory))
    return directories


# A series of runs of one configuration, as the history reads them.
PARAMETERS = {"estimators": ["analytic", "monte_carlo"], "seeds": [0, 1, 2], "epochs": 10,
              "iwae_k": 100, "run_id": None, "artifacts_dir": "artifacts", "data_dir": None}


def series_metrics(analytic: float, monte_carlo: float, std: float = 0.3) -> dict:
    """metrics.json for three seeds per estimator, scores centre - std, centre, centre + std
    (so the sample std over seeds is ``std``), with the comparison block statistics writes."""
    from vae_model.evaluation import statistics

    models = {}
    for estimator, centre in (("analytic", analytic), ("monte_carlo", monte_carlo)):
        for seed, value in enumerate([centre - std, centre, centre + std]):
            models[f"{estimator}-s{seed}"] = {
                "estimator": estimator, "seed": seed, "train_seconds": 10.0,
                "configuration": {"latent_size": 2, "epochs": 10}, "images_per_second": 4e4,
                "heldout": {"neg_elbo": value, "kl": 6.4, "reconstruction": value - 6.4,
                            "iwae_nll": value - 1.5, "iwae_k": 100}}
    return {"models": models, "comparison": statistics.compare(models)}


def write_series_run(root, run_id, finished, metrics=None, status="complete", report=True,
                     processor=None, **changes):
    """``root/runs/<run_id>`` with a manifest (unless ``status`` is None, as a killed run
    leaves it), metrics.json and report.html; ``changes`` to PARAMETERS."""
    run = root / "runs" / run_id
    run.mkdir(parents=True)
    parameters = {**PARAMETERS, "run_id": run_id, **changes}
    if status:
        storage.write_json(run / "manifest.json", {
            "run_id": run_id, "status": status, "finished_at": finished,
            "parameters": parameters, "packages": {"tensorflow": "2.21.0", "prefect": "3.8.8"},
            **({"processor": processor} if processor else {})})
    if metrics:
        storage.write_json(run / "metrics.json", metrics)
    if report:
        (run / "report.html").write_text("<html></html>")
    return run


def write_series(root):
    """Five runs under ``root``: three of PARAMETERS (the last, on another processor, 2.6
    nats worse for the analytic KL), one of another configuration, one killed."""
    write_series_run(root, "a-first", "2026-11-20T03:01:00+00:00", series_metrics(258.7, 259.9))
    write_series_run(root, "b-other-config", "2026-11-21T03:01:00+00:00",
                     series_metrics(250.0, 251.0), epochs=20)
    write_series_run(root, "c-second", "2026-11-21T03:02:00+00:00", series_metrics(259.1, 259.5))
    write_series_run(root, "d-killed", None, status=None, report=False)
    write_series_run(root, "e-upgrade", "2026-11-23T03:01:00+00:00", series_metrics(261.7, 260.0),
                     processor={"model": "AMD EPYC", "cores": 2, "family": "25/1",
                                "instructions": ["avx2", "fma"]})
    return root
