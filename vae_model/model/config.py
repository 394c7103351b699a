"""The settings of one model's training, validated before any work starts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from vae_model import UserInputError

ESTIMATORS = ("analytic", "monte_carlo")
ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli")


def estimator_order(estimators) -> list[str]:
    """Known estimators in ``ESTIMATORS`` order (analytic first), then any others as first
    seen: the order of every table, figure and paired difference."""
    present = list(dict.fromkeys(estimators))
    return [e for e in ESTIMATORS if e in present] + [e for e in present if e not in ESTIMATORS]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a trained model (and so its checkpoint)."""

    estimator: str = "analytic"
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    latent_size: int = 2
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    train_limit: int | None = None  # first N training images only, for smoke runs

    @property
    def name(self) -> str:
        """Model name used in metrics, files and Prefect task names, e.g. ``analytic-s0`` or
        ``monte_carlo-conv-cb-z8-s1``: estimator and seed always, the rest only where it differs
        from the defaults."""
        parts = [self.estimator]
        if self.architecture != "mlp":
            parts.append(self.architecture)
        if self.likelihood != "bernoulli":
            parts.append("cb")
        if self.latent_size != 2:
            parts.append(f"z{self.latent_size}")
        parts.append(f"s{self.seed}")
        return "-".join(parts)

    @property
    def configuration(self) -> dict:
        """The settings that define a configuration: everything but the estimator and the seed.
        Models of one configuration differ only in those two, so they are compared pairwise
        (same seed) and pooled over seeds."""
        return {k: v for k, v in self.to_dict().items() if k not in ("estimator", "seed")}

    def validate(self, n_train: int | None = None) -> "ModelConfig":
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        for field in ("latent_size", "epochs", "batch_size"):
            require_positive_int(field, getattr(self, field))
        if self.train_limit is not None:
            require_positive_int("train_limit", self.train_limit)
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise UserInputError(
                f"learning_rate must be a finite number > 0, got {self.learning_rate!r}: "
                "pass e.g. --learning-rate 1e-3")
        available = n_train if self.train_limit is None else min(n_train or self.train_limit,
                                                                  self.train_limit)
        if available is not None and self.batch_size > available:
            fix = "lower --batch-size" + (" or raise --train-limit" if self.train_limit else "")
            raise UserInputError(f"batch_size {self.batch_size} is larger than the {available} "
                                 f"training images: {fix}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserInputError(f"unknown model setting(s) {unknown}: known are {sorted(known)}")
        return cls(**values)


def _choice(field: str, value, choices) -> None:
    if value not in choices:
        raise UserInputError(f"unknown {field} {value!r}: choose one of {', '.join(choices)}")


def require_positive_int(field: str, value) -> None:
    """Refuse anything but a whole number > 0 (bools too), naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserInputError(f"{field} must be a whole number > 0, got {value!r}")
