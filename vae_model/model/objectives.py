"""The negative ELBO, in nats per image, with the KL term estimated one of two ways."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def analytic_kl(q: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor) -> tf.Tensor:
    """KL(q || p) in closed form (z is unused: no sampling noise)."""
    del z
    return tfd.kl_divergence(q, prior)


def monte_carlo_kl(q: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor) -> tf.Tensor:
    """Single-sample estimate log q(z) - log p(z), on the same z that feeds the decoder."""
    return q.log_prob(z) - prior.log_prob(z)


KL_ESTIMATORS = {"analytic": analytic_kl, "monte_carlo": monte_carlo_kl}


def kl_estimator(name: str):
    try:
        return KL_ESTIMATORS[name]
    except KeyError:
        from vae_model import UserInputError
        raise UserInputError(f"unknown estimator {name!r}: choose one of "
                             f"{', '.join(KL_ESTIMATORS)}") from None


def negative_elbo_terms(model, x: tf.Tensor, estimator: str, seed: tf.Tensor):
    """Per-image (KL estimate, -log p(x|z)) for one reparameterised draw z ~ q(z|x)."""
    q = model.encode(x)
    z = q.sample(seed=seed)
    return kl_estimator(estimator)(q, model.prior, z), -model.decode(z).log_prob(x)


def negative_elbo(model, x: tf.Tensor, estimator: str, seed: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of KL - log p(x|z): the loss both estimators minimise."""
    kl, reconstruction = negative_elbo_terms(model, x, estimator, seed)
    return tf.reduce_mean(kl + reconstruction)
