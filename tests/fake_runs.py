"""Made-up but plausible per-model records (metrics.json's shape) and model directories, so
that figures and the report can be tested for any grid without training anything."""

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
