"""The reference evaluation kernels: the Keras model with TFP's distributions, one compiled call
per batch (XLA where the network gains from it). :mod:`.fast` has the same three functions for
the MLP with Bernoulli pixels; :mod:`.heldout` picks one of the two per model."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_model.model.networks import compiled_for_model
from vae_model.model.objectives import negative_elbo_terms


@compiled_for_model
def _elbo_terms(model, images, seed):
    x = tf.cast(images, tf.float32) / 255.0
    return negative_elbo_terms(model, x, "analytic", seed)


def elbo_terms(model, batches: list[np.ndarray], seeds) -> tuple[np.ndarray, np.ndarray]:
    """Per image (analytic KL, -log p(x|z)) for the uint8 images of batches[i], drawn with
    seeds[i]."""
    terms = [_elbo_terms(model, batch, seed) for batch, seed in zip(batches, seeds)]
    return (np.concatenate([t[0].numpy() for t in terms]),
            np.concatenate([t[1].numpy() for t in terms]))


@compiled_for_model
def _log_mean_weight_terms(model, images, n_samples, seed):
    """logsumexp over ``n_samples`` draws z ~ q(z|x) of log p(x|z) + log p(z) - log q(z|x)."""
    x = tf.cast(images, tf.float32) / 255.0
    q = model.encode(x)
    z = q.sample(n_samples, seed=seed)  # (samples, batch, latent)
    log_weights = model.decode(z).log_prob(x) + model.prior.log_prob(z) - q.log_prob(z)
    return tf.reduce_logsumexp(log_weights, axis=0)


def iwae_log_sums(model, images: np.ndarray, seeds: np.ndarray, samples: int) -> list:
    """Per chunk of ``samples`` draws made with seeds[c]: the logsumexp of each image's log
    weights."""
    return [_log_mean_weight_terms(model, images, samples, tf.constant(seed)).numpy()
            for seed in seeds]


def _flat_gradient(target, variables, tape):
    gradients = tape.gradient(target, variables, unconnected_gradients="zero")
    return tf.cast(tf.concat([tf.reshape(g, [-1]) for g in gradients], 0), tf.float64)


@compiled_for_model
def _gradient_moments(model, x, estimator, seeds):
    """Over draws: the summed per-parameter variance of the loss gradient and of its KL term's
    gradient, and the squared norm of the mean loss gradient (moments in float64, so that
    E[g^2] - E[g]^2 does not cancel)."""
    variables = model.variables_to_train
    size = sum(int(np.prod(v.shape)) for v in variables)
    moments = [tf.zeros([size], tf.float64) for _ in range(4)]
    for i in tf.range(tf.shape(seeds)[0]):
        with tf.GradientTape(persistent=True) as tape:
            kl, reconstruction = negative_elbo_terms(model, x, estimator, seeds[i])
            kl = tf.reduce_mean(kl)
            loss = kl + tf.reduce_mean(reconstruction)
        g_loss, g_kl = _flat_gradient(loss, variables, tape), _flat_gradient(kl, variables, tape)
        moments = [moments[0] + g_loss, moments[1] + g_loss * g_loss,
                   moments[2] + g_kl, moments[3] + g_kl * g_kl]
    draws = tf.cast(tf.shape(seeds)[0], tf.float64)
    unbiased = draws / (draws - 1.0)

    def total_variance(first, second):
        mean = first / draws
        return tf.reduce_sum(tf.maximum(second / draws - mean * mean, 0.0)) * unbiased

    mean_loss = moments[0] / draws
    return (total_variance(moments[0], moments[1]), total_variance(moments[2], moments[3]),
            tf.reduce_sum(mean_loss * mean_loss))


def gradient_moments(model, images: np.ndarray, estimator: str, seeds: np.ndarray):
    """For one batch of uint8 images: (total variance of the loss gradient, of its KL term's,
    squared norm of the mean loss gradient) over one draw of z per seeds[d]."""
    x = tf.cast(images, tf.float32) / 255.0
    return _gradient_moments(model, x, estimator, seeds)
