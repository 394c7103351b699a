"""The one place that turns a run's settings into its models: every combination of the axes
(configuration-major, then seed, then estimator, so the models of one comparison are adjacent).
No Prefect import: the CLI validates the same grid before a flow starts."""

from __future__ import annotations

import dataclasses
import itertools

from vae_model.model.config import ModelConfig

# Axes are lists (one model per value); the rest of a ModelConfig is shared by every model.
AXES = {"architectures": "architecture", "likelihoods": "likelihood",
        "latent_sizes": "latent_size", "seeds": "seed", "estimators": "estimator"}
SHARED = ("epochs", "batch_size", "learning_rate", "train_limit")


def model_grid(settings: dict, n_train: int | None = None) -> list[ModelConfig]:
    """Validated models for ``settings`` (the flow's parameters: the AXES as lists, SHARED as
    values; anything else is ignored). Repeated axis values count once."""
    axes = [dict.fromkeys(settings[plural]) for plural in AXES]
    shared = {name: settings[name] for name in SHARED}
    return [ModelConfig(**dict(zip(AXES.values(), values)), **shared).validate(n_train)
            for values in itertools.product(*axes)]


def with_seeds(models: list[ModelConfig], additions: list[dict]) -> list[ModelConfig]:
    """The models a plan's stage 2 adds: for each {"configuration", "seeds"}, the models of
    that configuration (every estimator) under the new seeds, seed-major."""
    added = []
    for addition in additions:
        members = [m for m in models if m.configuration == addition["configuration"]]
        estimators = list(dict.fromkeys(m.estimator for m in members))
        template = members[0]
        added += [dataclasses.replace(template, estimator=e, seed=s)
                  for s in addition["seeds"] for e in estimators]
    return added
