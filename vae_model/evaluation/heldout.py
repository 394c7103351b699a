"""Held-out scores of a trained model, in nats per image.

Every model is scored with the analytic KL whatever estimator trained it, so the comparison is
fair. The functions here batch the images and seed the draws; the arithmetic is done by one of
two sets of kernels with the same three functions, chosen once per model (:func:`_kernels`):
:mod:`.plain`, the reference (Keras model, TFP distributions), or :mod:`.fast`, the same
estimators and draws written out for the MLP with Bernoulli pixels.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from vae_model import UserInputError
from vae_model.evaluation import fast, plain
from vae_model.model import fast_math
from vae_model.model.config import require_positive_int
from vae_model.model.objectives import kl_estimator
from vae_model.runs import stopping


def _kernels(model):
    """The evaluation kernels for ``model``: the fast ones where it has a fast path."""
    return fast if fast_math.supports(model) else plain


def heldout_per_image(model, images: np.ndarray, seed: int = 0,
                      batch_size: int = 2000) -> dict[str, np.ndarray]:
    """Per image: the single-sample -ELBO and its two terms, KL (analytic) and reconstruction
    -log p(x|z), as float64 arrays in test-set order (kept so that two models can be compared
    image by image). Batch i is drawn with the seed (seed, i)."""
    batches = [images[start:start + batch_size] for start in range(0, len(images), batch_size)]
    seeds = [tf.constant([seed, i], tf.int32) for i in range(len(batches))]
    kl, reconstruction = _kernels(model).elbo_terms(model, batches, seeds)
    kl, reconstruction = kl.astype(np.float64), reconstruction.astype(np.float64)
    return {"neg_elbo": kl + reconstruction, "kl": kl, "reconstruction": reconstruction}


def heldout_terms(model, images: np.ndarray, seed: int = 0, batch_size: int = 2000) -> dict:
    """Mean single-sample -ELBO per image, split into KL (analytic) and reconstruction."""
    per_image = heldout_per_image(model, images, seed, batch_size)
    return {name: float(np.mean(values)) for name, values in per_image.items()}


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
    kernels = _kernels(model)
    per_image = []
    for b, start in enumerate(range(0, len(images), batch_size)):
        stopping.check()  # IWAE-5000 takes minutes
        batch = images[start:start + batch_size]
        sizes = [min(samples_per_call, k - drawn) for drawn in range(0, k, samples_per_call)]
        seeds = np.stack([np.random.default_rng([seed, b, c]).integers(0, 2**31 - 1, 2,
                                                                         dtype=np.int32)
                          for c in range(len(sizes))])
        full = k // samples_per_call  # the full chunks of draws in one call, then the last
        parts = list(kernels.iwae_log_sums(model, batch, seeds[:full], sizes[0])) if full else []
        if full < len(sizes):
            parts += list(kernels.iwae_log_sums(model, batch, seeds[full:], sizes[-1]))
        log_sum = np.full(len(batch), -np.inf)
        for part in parts:
            log_sum = np.logaddexp(log_sum, part.astype(np.float64))
        per_image.append(math.log(k) - log_sum)
    return np.concatenate(per_image)


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
    total, kl_term, mean_sq_norm = _kernels(model).gradient_moments(model, images, estimator,
                                                                    seeds)
    return {"total_variance": float(total), "kl_term_variance": float(kl_term),
            "mean_gradient_sq_norm": float(mean_sq_norm), "draws": draws,
            "batch_size": len(images)}
