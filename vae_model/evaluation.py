"""Held-out scores of a trained model, in nats per image.

Every model is scored with the analytic KL whatever estimator trained it, so the comparison is
fair. Each function runs batches of images through one compiled call. The MLP with Bernoulli
pixels is evaluated by :mod:`vae_model.fast_evaluation` (same estimators, same seeds, written
for speed); the functions here are the reference, and evaluate every other model.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from vae_model import UserInputError, fast_evaluation, stopping
from vae_model.config import require_positive_int
from vae_model.networks import compiled_for_model
from vae_model.objectives import kl_estimator, negative_elbo_terms


@compiled_for_model
def _elbo_terms(model, images, seed):
    x = tf.cast(images, tf.float32) / 255.0
    return negative_elbo_terms(model, x, "analytic", seed)


def heldout_per_image(model, images: np.ndarray, seed: int = 0,
                      batch_size: int = 2000) -> dict[str, np.ndarray]:
    """Per image: the single-sample -ELBO and its two terms, KL (analytic) and reconstruction
    -log p(x|z), as float64 arrays in test-set order (kept so that two models can be compared
    image by image). Batch i is drawn with the seed (seed, i)."""
    batches = [images[start:start + batch_size] for start in range(0, len(images), batch_size)]
    seeds = [tf.constant([seed, i], tf.int32) for i in range(len(batches))]
    if fast_evaluation.supports(model):
        kl, reconstruction = fast_evaluation.elbo_terms(model, batches, seeds)
    else:
        terms = [_elbo_terms(model, batch, batch_seed) for batch, batch_seed in zip(batches, seeds)]
        kl = np.concatenate([t[0].numpy() for t in terms])
        reconstruction = np.concatenate([t[1].numpy() for t in terms])
    kl, reconstruction = kl.astype(np.float64), reconstruction.astype(np.float64)
    return {"neg_elbo": kl + reconstruction, "kl": kl, "reconstruction": reconstruction}


def heldout_terms(model, images: np.ndarray, seed: int = 0, batch_size: int = 2000) -> dict:
    """Mean single-sample -ELBO per image, split into KL (analytic) and reconstruction."""
    per_image = heldout_per_image(model, images, seed, batch_size)
    return {name: float(np.mean(values)) for name, values in per_image.items()}


@compiled_for_model
def _log_mean_weight_terms(model, images, n_samples, seed):
    """logsumexp over ``n_samples`` draws z ~ q(z|x) of log p(x|z) + log p(z) - log q(z|x)."""
    x = tf.cast(images, tf.float32) / 255.0
    q = model.encode(x)
    z = q.sample(n_samples, seed=seed)  # (samples, batch, latent)
    log_weights = model.decode(z).log_prob(x) + model.prior.log_prob(z) - q.log_prob(z)
    return tf.reduce_logsumexp(log_weights, axis=0)


def iwae_nll(model, images: np.ndarray, k: int, seed: int = 0, batch_size: int = 500,
             samples_per_call: int = 100) -> float:
    """Mean over images of :func:`iwae_per_image`."""
    return float(np.mean(iwae_per_image(model, images, k, seed, batch_size, samples_per_call)))


def iwae_per_image(model, images: np.ndarray, k: int, seed: int = 0, batch_size: int = 500,
                   samples_per_call: int = 100) -> np.ndarray:
    """IWAE-k estimate of -log p(x) for each image: -(logsumexp_k log w_k - log k) (Burda et
    al., 2016). It is an upper bound on the NLL that tightens as k grows and is never above the
    -ELBO in expectation. Draws are made ``samples_per_call`` at a time and combined with
    logaddexp, so memory stays at batch_size * samples_per_call decoded images for any k."""
    require_positive_int("IWAE k", k)
    fast = fast_evaluation.supports(model)
    per_image = []
    for b, start in enumerate(range(0, len(images), batch_size)):
        stopping.check()  # IWAE-5000 takes minutes
        batch = images[start:start + batch_size]
        sizes = [min(samples_per_call, k - drawn) for drawn in range(0, k, samples_per_call)]
        seeds = np.stack([np.random.default_rng([seed, b, c]).integers(0, 2**31 - 1, 2,
                                                                         dtype=np.int32)
                          for c in range(len(sizes))])
        if fast:  # the full chunks in one call, then the smaller last one if any
            full = k // samples_per_call
            parts = list(fast_evaluation.iwae_log_sums(model, batch, seeds[:full], sizes[0])
                         if full else [])
            if full < len(sizes):
                parts += list(fast_evaluation.iwae_log_sums(model, batch, seeds[full:],
                                                            sizes[-1]))
        else:
            parts = [_log_mean_weight_terms(model, batch, size, tf.constant(draw_seed)).numpy()
                     for size, draw_seed in zip(sizes, seeds)]
        log_sum = np.full(len(batch), -np.inf)
        for part in parts:
            log_sum = np.logaddexp(log_sum, part.astype(np.float64))
        per_image.append(math.log(k) - log_sum)
    return np.concatenate(per_image)


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


def gradient_variance(model, images: np.ndarray, estimator: str, draws: int = 100,
                      seed: int = 0) -> dict:
    """At fixed weights and for one fixed batch, how much the gradient varies across ``draws``
    repeated samples of z: the trace of its covariance (unbiased) for the whole loss and for
    the KL term alone (zero for the analytic KL), and the squared norm of the mean gradient
    for scale. This is what separates the two KL estimators."""
    if draws < 2:
        raise UserInputError(f"gradient variance needs at least 2 draws, got {draws}")
    kl_estimator(estimator)  # an unknown name fails here, whichever path runs
    seeds = np.random.default_rng([seed, 7]).integers(0, 2**31 - 1, (draws, 2), dtype=np.int32)
    if fast_evaluation.supports(model):
        total, kl_term, mean_sq_norm = fast_evaluation.gradient_moments(model, images,
                                                                        estimator, seeds)
    else:
        x = tf.cast(images, tf.float32) / 255.0
        total, kl_term, mean_sq_norm = _gradient_moments(model, x, estimator, seeds)
    return {"total_variance": float(total), "kl_term_variance": float(kl_term),
            "mean_gradient_sq_norm": float(mean_sq_norm), "draws": draws,
            "batch_size": len(images)}
